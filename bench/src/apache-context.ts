// What one Apache benchmark run carries from start to report: its options, the wrong answers seen, the CPU
// accounting, what is running (for the cleanup) and the results. Passed to every step instead of module state.
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { Httpd } from '../../dist/demo/httpd.js';
import type { LoginCacheServer } from '../../dist/demo/login-cache-server.js';
import type { PrivateCluster } from '../../dist/demo/private-cluster.js';
import type { WrkResult } from './wrk.js';
import type { Variant } from './apache-variants.js';

export interface BenchOptions {
  quick: boolean; // CI: tiny runs, correctness checks only, the report to stdout and never to RESULTS.md
  userCounts: number[];
  durationS: number; // per wrk run
  rounds: number;
  threads: number; // wrk -t
  connections: number; // wrk -c
  warmUsers: number; // password section: the users that are checked again and again
  moves: number; // propagation: moves measured per variant
  keep: boolean; // keep the temp directory
  only?: string[]; // variant ids (development); references are always kept
}

export function parseBenchOptions(args: string[]): BenchOptions {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      users: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      keep: { type: 'boolean', default: false },
      only: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  return {
    quick,
    userCounts: (values.users ?? (quick ? '200' : '1000,100000')).split(',').map(Number),
    durationS: Number(values.duration ?? (quick ? 2 : 8)),
    rounds: Number(values.rounds ?? (quick ? 1 : 3)),
    threads: 2,
    connections: 16,
    warmUsers: quick ? 50 : 500,
    moves: quick ? 2 : 20,
    keep: values.keep === true,
    ...(values.only ? { only: values.only.split(',') } : {}),
  };
}

export interface Running {
  v: Variant;
  httpd: Httpd;
}

export interface Row {
  section: string;
  label: string;
  users: string;
  rps: number[];
  p50: number[];
  p99: number[];
  ref?: string; // id of the reference row in the same section
  id: string;
  note?: string | undefined;
}

export interface BenchResults {
  versions: string;
  rows: Row[];
  notes: string[];
  propagation: string[][]; // mode, moves, p50, p99, max, note
  warm: Map<string, WrkResult[]>; // passwords, per variant id
  coldLatency: Map<string, WrkResult>; // one connection, first request per user
  warmLatency: Map<string, WrkResult>;
  coldWrapped: string[]; // cold runs that had to reuse users
  bcryptMs: number[]; // bcrypt verify alone, bcryptjs in this process
  passwordVariants: Array<Pick<Variant, 'id' | 'label'>>;
}

export interface RunContext {
  options: BenchOptions;
  startedAt: number;
  failures: string[];
  // Where the CPU goes: these processes' time is counted apart from the variant's Apache tree.
  cpuRoots: { postmaster?: number; authd?: number; fcgiMin?: number; sync?: number; loginCache?: number };
  // Per run key: summed CPU ms per category and requests over the measured runs.
  cpuTotals: Map<string, { ms: Map<string, number>; requests: number }>;
  // What the cleanup must stop, whatever step failed.
  live: {
    cluster?: PrivateCluster;
    sync?: ChildProcess | undefined;
    authd?: ChildProcess | undefined;
    fcgiMin?: ChildProcess | undefined;
    loginCache?: LoginCacheServer | undefined;
    running: Running[];
  };
  results: BenchResults;
}

export function createRunContext(options: BenchOptions): RunContext {
  return {
    options,
    startedAt: Date.now(),
    failures: [],
    cpuRoots: {},
    cpuTotals: new Map(),
    live: { running: [] },
    results: {
      versions: '',
      rows: [],
      notes: [],
      propagation: [],
      warm: new Map(),
      coldLatency: new Map(),
      warmLatency: new Map(),
      coldWrapped: [],
      bcryptMs: [],
      passwordVariants: [],
    },
  };
}

export const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

export function fail(ctx: RunContext, msg: string): void {
  ctx.failures.push(msg);
  log(`WRONG: ${msg}`);
}

export const selected = (ctx: RunContext, vs: Variant[]) => {
  const only = ctx.options.only;
  return only ? vs.filter((v, i) => i === 0 || only.includes(v.id)) : vs;
};

export const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
