import { parseLockoutChange } from '../store/changes.js';

// Who is locked out right now, held in memory so a warm check (a credential verified recently) reads no table.
// Kept current by the lockouts channel (store/changes.ts); expiry needs no message, the time is in the entry.
//
// Trusted only while `ready` (LISTEN is in place and the current lockouts have been read) and while the LISTEN
// connection stays up (the caller checks that); otherwise the caller asks the store. A message that arrives while the
// current lockouts are being read wins over the read (it is newer).
export class LockMirror {
  private readonly until = new Map<string, number>();
  private heardDuringLoad: Set<string> | undefined;
  private isReady = false;

  constructor(private readonly now: () => number = Date.now) {}

  get ready(): boolean {
    return this.isReady;
  }

  get size(): number {
    return this.until.size;
  }

  // LISTEN is (again) in place: forget everything until `loaded`.
  reset(): void {
    this.isReady = false;
    this.until.clear();
    this.heardDuringLoad = new Set();
  }

  // The lockouts read after `reset`.
  loaded(rows: Array<{ subject: string; untilMs: number }>): void {
    const heard = this.heardDuringLoad ?? new Set<string>();
    for (const { subject, untilMs } of rows) if (!heard.has(subject)) this.set(subject, untilMs);
    this.heardDuringLoad = undefined;
    this.isReady = true;
  }

  apply(payload: string): void {
    const change = parseLockoutChange(payload);
    if (change?.kind === 'all') this.until.clear();
    else if (change) {
      this.heardDuringLoad?.add(change.subject);
      this.set(change.subject, change.untilMs);
    }
  }

  // A lockout this process caused, known before its own message comes back.
  set(subject: string, untilMs: number): void {
    if (untilMs > this.now()) this.until.set(subject, untilMs);
    else this.until.delete(subject);
  }

  // Every subject locked now (expired entries dropped).
  lockedNow(): string[] {
    return this.locked([...this.until.keys()]);
  }

  locked(subjects: readonly string[]): string[] {
    const now = this.now();
    const locked: string[] = [];
    for (const subject of subjects) {
      const until = this.until.get(subject);
      if (until === undefined) continue;
      if (until > now) locked.push(subject);
      else this.until.delete(subject);
    }
    return locked;
  }
}
