import { LRUCache } from 'lru-cache';
import type { Subjects } from '../store/throttle.js';

// What `plexer lockout` expects a subject's failure count to be while the store has not answered yet: the last
// count the store gave, plus the failures sent and not yet answered. Only ever used to lock early — the
// store's own count decides, and its lockouts (or their absence) reach the lock files through the mirror.
export class FailureEstimate {
  private readonly known = new LRUCache<string, number>({ max: 100_000 });
  private readonly unanswered = new Map<string, number>();

  // One more failure for each subject; returns those whose expected count reaches their limit now.
  add(subjects: Subjects): string[] {
    const reached: string[] = [];
    for (const { subjects: group, maxFailures } of subjects.limits) {
      for (const subject of group) {
        const waiting = (this.unanswered.get(subject) ?? 0) + 1;
        this.unanswered.set(subject, waiting);
        if ((this.known.get(subject) ?? 0) + waiting >= maxFailures) reached.push(subject);
      }
    }
    return reached;
  }

  // The store's count for a subject, this failure included.
  counted(subject: string, failures: number): void {
    this.known.set(subject, failures);
    this.settle([subject]);
  }

  // Failures sent for a subject that the store has not answered yet.
  pending(subject: string): number {
    return this.unanswered.get(subject) ?? 0;
  }

  // Failures the store will not answer for (an error).
  settle(subjects: readonly string[]): void {
    for (const subject of subjects) {
      const waiting = (this.unanswered.get(subject) ?? 1) - 1;
      if (waiting > 0) this.unanswered.set(subject, waiting);
      else this.unanswered.delete(subject);
    }
  }
}
