// bcrypt off the event loop. bcryptjs is pure JavaScript and its "async" API only yields every 100 ms
// (MAX_EXECUTION_TIME in bcryptjs): at cost 10 (~80 ms) one check runs in a single slice, so on the main thread
// every cold check would stall every cached check, role check and accept() behind it (measured: warm checks
// went from ~1 ms to ~400 ms p50 during a flood of cold ones). Here each hash runs in a worker thread; the
// main thread only compares the result in constant time. apr1 (htpasswd's MD5, imported users until their first
// login) runs here too: 1,000 rounds of plain JavaScript, milliseconds each.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { verifyPassword, type SlowHashes } from '../password.js';

// Inline (eval) so the same code runs from dist/ and from the TypeScript sources under vitest. CommonJS:
// bcryptjs's "require" build and apache-md5 are loaded by absolute path.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptPath);
const apr1 = require(workerData.apr1Path);
parentPort.on('message', (job) => {
  let reply;
  try {
    const result = job.scheme === 'apr1' ? apr1(job.password, job.saltOrCost) : bcrypt.hashSync(job.password, job.saltOrCost);
    reply = { id: job.id, result };
  } catch (error) {
    reply = { id: job.id, error: String((error && error.message) || error) };
  }
  parentPort.postMessage(reply);
});
`;

type Scheme = 'bcrypt' | 'apr1';

interface Job {
  id: number;
  scheme: Scheme;
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
  private readonly modulePaths = {
    bcryptPath: createRequire(import.meta.url).resolve('bcryptjs'),
    apr1Path: createRequire(import.meta.url).resolve('apache-md5'),
  };
  private readonly slowHashes: SlowHashes = {
    bcrypt: (password, salt) => this.run('bcrypt', password, salt),
    apr1: (password, salt) => this.run('apr1', password, salt),
  };
  private nextId = 1;
  private closed = false;

  constructor(readonly size = defaultBcryptThreads()) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  // bcrypt(password, salt) where salt is a full hash's first 29 characters, or a cost for a fresh salt.
  hash(password: string, saltOrCost: string | number): Promise<string> {
    return this.run('bcrypt', password, saltOrCost);
  }

  // password.ts verifyPassword, its slow hashes computed in a worker.
  verify(password: string, hash: string): Promise<boolean> {
    return verifyPassword(password, hash, this.slowHashes);
  }

  private run(scheme: Scheme, password: string, saltOrCost: string | number): Promise<string> {
    if (this.closed) return Promise.reject(new Error('bcrypt pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, scheme, password, saltOrCost, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('bcrypt pool closed'));
    await Promise.allSettled(this.slots.map((slot) => slot.worker.terminate()));
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: this.modulePaths });
    // Idle workers must not keep a stopping process alive; pending jobs are waited for by their callers.
    worker.unref();
    const slot: Slot = { worker, job: undefined };
    worker.on('message', (reply: { id: number; result?: string; error?: string }) => {
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = undefined;
      if (reply.error !== undefined || reply.result === undefined) job.reject(new Error(`${job.scheme} failed: ${reply.error}`));
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
      slot.worker.postMessage({ id: job.id, scheme: job.scheme, password: job.password, saltOrCost: job.saltOrCost });
    }
  }
}
