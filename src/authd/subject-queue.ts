// Password checks that could count toward the same lockout run one after another. A check reads the lockout
// state before bcrypt and records its failure after it, so checks running side by side all read "not locked":
// 40 parallel guesses for one user got 27 wrong passwords checked with a limit of 10, and the right one in. In
// turn, each check reads a count that includes every failure before it, and the limit holds exactly.
//
// Keyed by the user name and by the address (a check holds both, taken in that order, so two checks never wait
// on each other in a cycle): the pair and the address limits hold exactly, the user's own limit (failures from
// many addresses) too. The address only for checks that count their refusals (service.ts turnKeys). Only cold checks (cache misses) queue; a warm check reads the lockouts from memory.
export class SubjectQueue {
  private readonly tails = new Map<string, Promise<void>>();

  get size(): number {
    return this.tails.size;
  }

  async run<T>(keys: readonly string[], task: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = [];
    try {
      for (const key of keys) releases.push(await this.take(key));
      return await task();
    } finally {
      for (const release of releases.reverse()) release();
    }
  }

  private async take(key: string): Promise<() => void> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    return () => {
      release();
      // The last one out leaves no entry behind: the map holds only keys with a check running or waiting.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}
