// bcrypt off the event loop. bcryptjs is pure JavaScript and its "async" API only yields every 100 ms
// (MAX_EXECUTION_TIME in bcryptjs): at cost 10 (~80 ms) one check runs in a single slice, so on the main thread
// every cold check would stall every cached check, role check and accept() behind it (measured: warm checks
// went from ~1 ms to ~400 ms p50 during a flood of cold ones). Here each hash runs in a worker thread; the
// main thread only compares the result in constant time.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { verifyPassword } from '../password.js';

// Inline (eval) so the same code runs from dist/ and from the TypeScript sources under vitest. CommonJS:
// bcryptjs's "require" build is loaded by absolute path.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptPath);
parentPort.on('message', (job) => {
  let reply;
  try {
    reply = { id: job.id, result: bcrypt.hashSync(job.password, job.saltOrCost) };
  } catch (error) {
    reply = { id: job.id, error: String((error && error.message) || error) };
  }
  parentPort.postMessage(reply);
});
`;

interface Job {
  id: number;
  password: string;
  saltOrCost: string | number;
  resolve: (hash: string) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

// The default leaves one core to the event loop (and Apache) on small machines.
export const defaultBcryptThreads = (): number => Math.max(1, Math.min(4, availableParallelism() - 1));

export class BcryptPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly bcryptPath = createRequire(import.meta.url).resolve('bcryptjs');
  private nextId = 1;
  private closed = false;

  constructor(readonly size = defaultBcryptThreads()) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  // bcrypt(password, salt) where salt is a full hash's first 29 characters, or a cost for a fresh salt.
  hash(password: string, saltOrCost: string | number): Promise<string> {
    if (this.closed) return Promise.reject(new Error('bcrypt pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, password, saltOrCost, resolve, reject });
      this.dispatch();
    });
  }

  // password.ts verifyPassword with bcrypt in a worker: the htpasswd formats too, which are cheap enough for
  // this thread.
  verify(password: string, hash: string): Promise<boolean> {
    return verifyPassword(password, hash, (plain, salt) => this.hash(plain, salt));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('bcrypt pool closed'));
    await Promise.allSettled(this.slots.map((slot) => slot.worker.terminate()));
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bcryptPath: this.bcryptPath } });
    // Idle workers must not keep a stopping process alive; pending jobs are waited for by their callers.
    worker.unref();
    const slot: Slot = { worker, job: undefined };
    worker.on('message', (reply: { id: number; result?: string; error?: string }) => {
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = undefined;
      if (reply.error !== undefined || reply.result === undefined) job.reject(new Error(`bcrypt failed: ${reply.error}`));
      else job.resolve(reply.result);
      this.dispatch();
    });
    const replace = (error: Error) => {
      slot.job?.reject(error);
      slot.job = undefined;
      if (this.closed) return;
      const index = this.slots.indexOf(slot);
      if (index !== -1) this.slots[index] = this.spawn();
      this.dispatch();
    };
    worker.on('error', (error) => replace(error));
    worker.on('exit', (code) => {
      if (!this.closed) replace(new Error(`bcrypt worker exited with ${code}`));
    });
    return slot;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.postMessage({ id: job.id, password: job.password, saltOrCost: job.saltOrCost });
    }
  }
}
