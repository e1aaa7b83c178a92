// Tenant isolation under churn: a load generator asks a real Apache /app/whoami for random users while a
// churner changes those users (add, move, move to no group, disable/enable, delete, re-add) through the CLI and
// through plain SQL. Every change is recorded in a per-user timeline; every response is then checked against it.
//
// Used by test/apache/churn.test.ts (short CI run) and, through it, by `npm run soak` (bench/src/soak.ts).
//
// Time is performance.now() in ms, relative to the driver's start. A change is recorded with two instants:
// `since`, just before the statement/CLI starts, and `at`, right after it returns (the commit happened in
// between). A user's state ("servable in group G", or null = absent, disabled or without a group) therefore
// holds from its change's `since` to the next change's `at` — both ends counted generously, because the exact
// commit instant is unknown inside that interval.
//
// The propagation window W (default 1 s): the map is allowed to lag a committed change by up to W. A response
// to a request sent at `sent` and received at `received` was routed at some instant in [sent, received] from
// the map's view, which may be up to W old; so the states it may reflect are every state the user held during
// [sent - W, received]. A 200 whose JSON group is not one of them is a WRONG-TENANT response.
// Staleness of a 200: 0 when its group held at some instant of [sent, received]; otherwise sent minus the
// recorded commit (`at`) of the change that ended that group — how long the map had been behind.
import bcrypt from 'bcryptjs';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import type pg from 'pg';
import type { RunResult } from './plexer.js';

export type State = string | null;
type Cli = (args: string[], input?: string) => Promise<RunResult>;

interface Change {
  since: number;
  at: number;
  state: State;
  op: string;
}

export class Timeline {
  private readonly changes = new Map<string, Change[]>();

  record(user: string, change: Change): void {
    let list = this.changes.get(user);
    if (!list) this.changes.set(user, (list = [{ since: -Infinity, at: -Infinity, state: null, op: 'initial' }]));
    list.push(change);
  }

  private segments(user: string): Array<{ from: number; to: number; state: State }> {
    const list = this.changes.get(user) ?? [{ since: -Infinity, at: -Infinity, state: null, op: 'initial' }];
    return list.map((c, i) => ({ from: c.since, to: list[i + 1]?.at ?? Infinity, state: c.state }));
  }

  // Every state the user held at some instant of [a, b].
  statesDuring(user: string, a: number, b: number): State[] {
    const states = new Set<State>();
    for (const s of this.segments(user)) if (s.from <= b && s.to >= a) states.add(s.state);
    return [...states];
  }

  // For a group that held within the window but not during [sent, received]: how long before `sent` it ended.
  staleness(user: string, group: string, sent: number, received: number): number {
    if (this.statesDuring(user, sent, received).includes(group)) return 0;
    let latestEnd = -Infinity;
    for (const s of this.segments(user)) if (s.state === group && s.to < sent) latestEnd = Math.max(latestEnd, s.to);
    return sent - latestEnd;
  }

  changeCount(): number {
    let n = 0;
    for (const list of this.changes.values()) n += list.length - 1;
    return n;
  }
}

export interface ChurnOptions {
  baseUrl: string;
  sql: pg.Pool; // search_path = plexer
  cli: Cli;
  groups: string[];
  users: number; // present at the start
  spareNames: number; // names that start absent and get added (and deleted, re-added) during the run
  seconds: number;
  clients: number; // concurrent sequential clients; even ones keep-alive, odd ones a fresh connection per request
  churnEveryMs: [number, number];
  absentShare: number; // share of requests for names that are absent at the moment (0..1)
  windowMs: number;
  // Called every ~500 ms during the load (e.g. to sample processes).
  onTick?: () => void;
}

export interface Sample {
  user: string;
  client: number;
  sent: number;
  received: number;
  status: number;
  group?: string;
  jsonUser?: string;
  error?: string;
}

export interface ChurnReport {
  seconds: number;
  clients: number;
  windowMs: number;
  requests: number;
  byStatus: Record<string, number>;
  ok200: number;
  wrongTenant: number; // 200 from a group the user did not hold within the window (includes the next line)
  servedWhileBlocked: number; // 200 although absent/disabled/without group for the whole window
  wrongUser: number; // 200 whose REMOTE_USER is not the user who asked
  unexpected401: number; // 401 for a user who was servable the whole window (mod_authnz_external spurious 401)
  unexpected403: number; // 403 for a user who was servable the whole window (map answered NULL)
  unexpectedOther: number; // 5xx (or anything else) for a user not mid-change; non-401/403/503 for one mid-change
  networkErrors: number;
  maxStalenessMs: number;
  staleResponses: number; // 200s served by a group that had already been replaced when the request was sent
  changes: { total: number; byOp: Record<string, number>; cli: number; sql: number; failed: number; cliMsP50: number; sqlMsP50: number };
  examples: string[]; // the first violations, for the failure message
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)] as T;
const between = ([lo, hi]: [number, number]) => lo + Math.random() * (hi - lo);
const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : 0);

export const passwordOf = (user: string) => `${user}-pw`;

function get(url: string, user: string, agent: http.Agent | false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Basic ${Buffer.from(`${user}:${passwordOf(user)}`).toString('base64')}` };
    const request = http.get(url, { headers, agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.setTimeout(30_000, () => request.destroy(new Error('timeout after 30 s')));
    request.on('error', reject);
  });
}

interface Account {
  present: boolean;
  group: string | null;
  disabled: boolean;
}
const stateOf = (a: Account): State => (a.present && !a.disabled ? a.group : null);

export async function runChurn(o: ChurnOptions): Promise<ChurnReport> {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const timeline = new Timeline();
  const names = Array.from({ length: o.users + o.spareNames }, (_, i) => `churn${String(i + 1).padStart(2, '0')}`);
  const accounts = new Map<string, Account>(names.map((n) => [n, { present: false, group: null, disabled: false }]));
  const hashes = new Map(names.map((n) => [n, bcrypt.hashSync(passwordOf(n), 4)]));

  // Seed: one SQL statement for the starting population, recorded like any other change.
  {
    const seeded = names.slice(0, o.users).map((n, i) => [n, o.groups[i % o.groups.length]!] as const);
    const since = now();
    await o.sql.query('INSERT INTO users (name, password_hash, daemon_group) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])', [
      seeded.map(([n]) => n),
      seeded.map(([n]) => hashes.get(n)!),
      seeded.map(([, g]) => g),
    ]);
    const at = now();
    for (const [n, g] of seeded) {
      Object.assign(accounts.get(n)!, { present: true, group: g, disabled: false });
      timeline.record(n, { since, at, state: g, op: 'seed' });
    }
  }

  // ---- churner ----
  const byOp: Record<string, number> = {};
  const cliMs: number[] = [];
  const sqlMs: number[] = [];
  let failed = 0;
  const failures: string[] = [];
  const busy = new Set<string>();
  const inFlight = new Set<Promise<void>>();

  const change = async (
    user: string,
    op: string,
    next: Account,
    viaCli: boolean,
    cliArgs: string[],
    input: string | undefined,
    sql: [string, unknown[]],
  ) => {
    busy.add(user);
    const since = now();
    try {
      if (viaCli) {
        const r = await o.cli(cliArgs, input);
        if (r.code !== 0) throw new Error(`plexer ${cliArgs.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
      } else {
        const r = await o.sql.query(sql[0], sql[1]);
        if (r.rowCount !== 1) throw new Error(`${sql[0]} ${JSON.stringify(sql[1])}: ${r.rowCount} rows`);
      }
      const at = now();
      (viaCli ? cliMs : sqlMs).push(at - since);
      accounts.set(user, next);
      timeline.record(user, { since, at, state: stateOf(next), op: `${op}/${viaCli ? 'cli' : 'sql'}` });
      byOp[op] = (byOp[op] ?? 0) + 1;
    } catch (error) {
      failed++;
      if (failures.length < 5) failures.push(String(error));
      // The outcome is unknown: the user may hold either state from now on.
      timeline.record(user, { since, at: now(), state: stateOf(next), op: `${op}/failed` });
    } finally {
      busy.delete(user);
    }
  };

  const churnOnce = () => {
    const free = names.filter((n) => !busy.has(n));
    const present = free.filter((n) => accounts.get(n)!.present);
    const absent = free.filter((n) => !accounts.get(n)!.present);
    const presentCount = names.filter((n) => accounts.get(n)!.present).length;
    const viaCli = Math.random() < 0.5;
    const roll = Math.random();
    let op: string;
    if (absent.length > 0 && (presentCount < o.users * 0.85 || roll < 0.15)) op = 'add';
    else if (roll < 0.5) op = 'move';
    else if (roll < 0.6) op = 'move-none';
    else if (roll < 0.8) op = 'disable-toggle';
    else op = 'del';
    if (op !== 'add' && present.length === 0) return;
    const user = op === 'add' ? pick(absent) : pick(present);
    const a = accounts.get(user)!;
    let p: Promise<void>;
    switch (op) {
      case 'add': {
        const group = Math.random() < 0.1 ? null : pick(o.groups);
        p = change(
          user,
          'add',
          { present: true, group, disabled: false },
          viaCli,
          ['user', 'add', user, '--group', group ?? 'none', '--password-stdin'],
          `${passwordOf(user)}\n`,
          ['INSERT INTO users (name, password_hash, daemon_group) VALUES ($1, $2, $3)', [user, hashes.get(user), group]],
        );
        break;
      }
      case 'move':
      case 'move-none': {
        const group = op === 'move-none' ? (a.group === null ? pick(o.groups) : null) : pick(o.groups.filter((g) => g !== a.group));
        p = change(user, op, { ...a, group }, viaCli, ['user', 'move', user, '--group', group ?? 'none'], undefined, [
          'UPDATE users SET daemon_group = $2 WHERE name = $1',
          [user, group],
        ]);
        break;
      }
      case 'disable-toggle': {
        const disabled = !a.disabled;
        p = change(
          user,
          disabled ? 'disable' : 'enable',
          { ...a, disabled },
          viaCli,
          ['user', disabled ? 'disable' : 'enable', user],
          undefined,
          ['UPDATE users SET disabled = $2 WHERE name = $1', [user, disabled]],
        );
        break;
      }
      default: {
        p = change(user, 'del', { present: false, group: null, disabled: false }, viaCli, ['user', 'del', user], undefined, [
          'DELETE FROM users WHERE name = $1',
          [user],
        ]);
      }
    }
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  // ---- load ----
  const samples: Sample[] = [];
  const url = `${o.baseUrl}/app/whoami`;
  const endAt = now() + o.seconds * 1000;
  const client = async (id: number) => {
    const agent = id % 2 === 0 ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
    try {
      while (now() < endAt) {
        // Mostly users who exist: a request for an absent one forks the authenticator every time (failures are
        // not cached), which on 2 cores would turn the run into a fork benchmark.
        const absent = names.filter((n) => !accounts.get(n)!.present);
        const user =
          absent.length > 0 && Math.random() < o.absentShare ? pick(absent) : pick(names.filter((n) => accounts.get(n)!.present));
        const sent = now();
        try {
          const r = await get(url, user, agent);
          const s: Sample = { user, client: id, sent, received: now(), status: r.status };
          if (r.status === 200) {
            try {
              const j = JSON.parse(r.body) as { group?: string; user?: string };
              s.group = j.group;
              s.jsonUser = j.user;
            } catch {
              s.group = `(unparsable: ${r.body.slice(0, 60)})`;
            }
          }
          samples.push(s);
        } catch (error) {
          samples.push({ user, client: id, sent, received: now(), status: 0, error: String(error) });
        }
      }
    } finally {
      if (agent) agent.destroy();
    }
  };
  const churner = async () => {
    while (now() < endAt) {
      churnOnce();
      await sleep(between(o.churnEveryMs));
    }
    await Promise.all(inFlight);
  };
  const ticker = setInterval(() => o.onTick?.(), 500);
  try {
    await Promise.all([churner(), ...Array.from({ length: o.clients }, (_, i) => client(i))]);
  } finally {
    clearInterval(ticker);
  }

  return {
    seconds: o.seconds,
    clients: o.clients,
    changes: {
      total: cliMs.length + sqlMs.length,
      byOp,
      cli: cliMs.length,
      sql: sqlMs.length,
      failed,
      cliMsP50: median(cliMs),
      sqlMsP50: median(sqlMs),
    },
    ...judge(samples, timeline, o.windowMs, failures),
  };
}

// Checks every response against the timeline (rules at the top of this file).
export function judge(
  samples: Sample[],
  timeline: Timeline,
  windowMs: number,
  notes: string[] = [],
): Omit<ChurnReport, 'seconds' | 'clients' | 'changes'> {
  const report = {
    windowMs,
    requests: samples.length,
    byStatus: {} as Record<string, number>,
    ok200: 0,
    wrongTenant: 0,
    servedWhileBlocked: 0,
    wrongUser: 0,
    unexpected401: 0,
    unexpected403: 0,
    unexpectedOther: 0,
    networkErrors: 0,
    maxStalenessMs: 0,
    staleResponses: 0,
    examples: [...notes],
  };
  const example = (what: string, s: Sample, states: State[]) => {
    if (report.examples.length < 20) {
      report.examples.push(
        `${what}: ${s.user} client ${s.client} sent ${s.sent.toFixed(0)} ms received ${s.received.toFixed(0)} ms status ${s.status}` +
          ` group ${s.group ?? '-'} user ${s.jsonUser ?? '-'} allowed [${states.map((x) => x ?? 'none').join(',')}]${s.error ? ` ${s.error}` : ''}`,
      );
    }
  };
  for (const s of samples) {
    report.byStatus[s.status] = (report.byStatus[s.status] ?? 0) + 1;
    const states = timeline.statesDuring(s.user, s.sent - windowMs, s.received);
    const midChange = states.includes(null); // blocked (absent, disabled, no group) at some instant of the window
    switch (s.status) {
      case 200: {
        report.ok200++;
        if (s.jsonUser !== s.user) {
          report.wrongUser++;
          example('WRONG USER', s, states);
        }
        if (s.group === undefined || !states.includes(s.group)) {
          report.wrongTenant++;
          if (states.every((x) => x === null)) {
            report.servedWhileBlocked++;
            example('SERVED WHILE BLOCKED', s, states);
          } else example('WRONG TENANT', s, states);
        } else {
          const staleness = timeline.staleness(s.user, s.group, s.sent, s.received);
          if (staleness > 0) report.staleResponses++;
          report.maxStalenessMs = Math.max(report.maxStalenessMs, staleness);
        }
        break;
      }
      case 401:
      case 403:
        if (!midChange) {
          if (s.status === 401) report.unexpected401++;
          else report.unexpected403++;
          example(`unexpected ${s.status}`, s, states);
        }
        break;
      case 503:
        if (!midChange) {
          report.unexpectedOther++;
          example('unexpected 503', s, states);
        }
        break;
      case 0:
        report.networkErrors++;
        example('network error', s, states);
        break;
      default:
        report.unexpectedOther++;
        example(`unexpected ${s.status}`, s, states);
    }
  }
  return report;
}

// ---- processes, from /proc ----
export interface Proc {
  pid: number;
  ppid: number;
  startTicks: number;
  rssKiB: number;
  cmd: string;
}

export function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: the fields after it start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
    return { pid, ppid: Number(fields[1]), startTicks: Number(fields[19]), rssKiB: rss ? Number(rss[1]) : 0, cmd };
  } catch {
    return undefined; // gone
  }
}

export function childrenOf(parentPid: number): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const p = readProc(Number(entry));
    if (p && p.ppid === parentPid) out.push(p);
  }
  return out;
}

export interface ApacheSample {
  parent: Proc;
  workers: Proc[]; // Apache's own children (event MPM)
  wsgi: Proc[]; // mod_wsgi daemons, "(wsgi:NAME)"
  maps: Proc[]; // `plexer map …` programs
  others: Proc[]; // transient authenticators etc.
}

export function sampleApache(parentPid: number): ApacheSample {
  const parent = readProc(parentPid);
  if (!parent) throw new Error(`Apache parent ${parentPid} is gone`);
  const sample: ApacheSample = { parent, workers: [], wsgi: [], maps: [], others: [] };
  for (const p of childrenOf(parentPid)) {
    if (p.cmd.startsWith('(wsgi:')) sample.wsgi.push(p);
    else if (/ map (route|group|settings|backend)\b/.test(p.cmd)) sample.maps.push(p);
    else if (/ auth[nz]\b/.test(p.cmd)) sample.others.push(p);
    else sample.workers.push(p);
  }
  return sample;
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
const sum = (ps: Proc[]) => ps.reduce((n, p) => n + p.rssKiB, 0);

export function describeSample(s: ApacheSample): Record<string, string> {
  const out: Record<string, string> = {
    'apache parent': `${mib(s.parent.rssKiB)} (pid ${s.parent.pid})`,
    'apache workers': `${mib(sum(s.workers))} in ${s.workers.length}`,
    'wsgi daemons': `${mib(sum(s.wsgi))} in ${s.wsgi.length}`,
  };
  for (const m of s.maps) out[m.cmd.match(/ map (\w+)/)![0].trim()] = `${mib(m.rssKiB)} (pid ${m.pid})`;
  return out;
}

export function formatReport(r: ChurnReport, before?: ApacheSample, after?: ApacheSample): string {
  const rows: Array<[string, string]> = [
    ['load', `${r.seconds} s, ${r.clients} clients`],
    ['requests sent', String(r.requests)],
    [
      'by status',
      Object.entries(r.byStatus)
        .map(([k, v]) => `${k === '0' ? 'neterr' : k}: ${v}`)
        .join(', '),
    ],
    ['WRONG-TENANT 200s', `${r.wrongTenant} (of which served while blocked: ${r.servedWhileBlocked})`],
    ['200 with another REMOTE_USER', String(r.wrongUser)],
    ['401 for a servable user (spurious)', String(r.unexpected401)],
    ['403 for a servable user', String(r.unexpected403)],
    ['other unexpected statuses', String(r.unexpectedOther)],
    ['network errors', String(r.networkErrors)],
    ['propagation window allowed', `${r.windowMs} ms`],
    ['max staleness observed', `${r.maxStalenessMs.toFixed(1)} ms (${r.staleResponses} stale 200s)`],
    [
      'changes committed',
      `${r.changes.total} (cli ${r.changes.cli}, p50 ${r.changes.cliMsP50.toFixed(0)} ms; sql ${r.changes.sql}, p50 ${r.changes.sqlMsP50.toFixed(1)} ms; failed ${r.changes.failed})`,
    ],
    [
      'changes by op',
      Object.entries(r.changes.byOp)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
  ];
  if (before && after) {
    const b = describeSample(before);
    const a = describeSample(after);
    for (const key of Object.keys({ ...b, ...a })) rows.push([`RSS ${key}`, `${b[key] ?? '-'} → ${a[key] ?? '-'}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
