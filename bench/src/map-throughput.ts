// npm run bench:map — the map program alone over a pipe, against a private PostgreSQL: warm-cache throughput
// (pipelined and one-at-a-time, as mod_rewrite sends), per-lookup latency, change propagation and RSS.
// The one-at-a-time round trip is also measured, in the same harness, for the Apache bench's minimal Python
// and Node maps (references for the figures), and for all three with the map and this client pinned to one
// CPU: the share of a round trip that is waking an idle core on another CPU.
// Writes a Markdown table to bench/map-results.md and stdout.
import { machine, resultsTable } from './results-table.js';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { formatConfig } from '../../dist/config.js';
import { createDatabase, startPrivateCluster } from '../../dist/demo/private-cluster.js';
import { NODE_MAP, PY_MAP } from './apache-variants.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const USERS = Number(process.env.BENCH_USERS ?? 100_000);
const quick = process.argv.includes('--quick');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

class MapPipe {
  private readonly child;
  private buffer = '';
  private expected = 0;
  private received: string[] = [];
  private onDone: (() => void) | undefined;

  constructor(command: string, args: string[]) {
    this.child = spawn(command, args, { env: {}, stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdout.setEncoding('latin1');
    this.child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) !== -1) {
        this.received.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
      }
      if (this.received.length >= this.expected && this.onDone) this.onDone();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  lookup(keys: string[]): Promise<string[]> {
    this.received = [];
    this.expected = keys.length;
    return new Promise((resolve) => {
      this.onDone = () => {
        this.onDone = undefined;
        resolve(this.received);
      };
      this.child.stdin.write(keys.join('\n') + '\n');
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.stdin.end();
    });
  }
}

// taskset -a: every thread of the process (Node's event loop, libuv and V8 threads).
function affinity(pid: number): string {
  return /mask: ([0-9a-f]+)/.exec(execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' }))![1]!;
}
function setAffinity(pid: number, mask: string): void {
  execFileSync('taskset', ['-a', '-p', mask, String(pid)], { stdio: 'ignore' });
}

interface OneAtATime {
  perSecond: number;
  p50: number; // µs
  p99: number;
}

// One key at a time, waiting for each answer: what mod_rewrite does under its lock. Every answer is checked.
async function oneAtATime(map: MapPipe, keys: string[], n: number): Promise<OneAtATime> {
  const latencies: number[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const k = (i * 7919) % keys.length;
    const t = performance.now();
    const [answer] = await map.lookup([keys[k]!]);
    latencies.push((performance.now() - t) * 1000);
    if (answer !== `#user${k + 1}=tenant${1 + ((k + 1) % 10)}`) throw new Error(`wrong answer for user${k + 1}: ${answer}`);
  }
  const perSecond = n / ((performance.now() - start) / 1000);
  latencies.sort((a, b) => a - b);
  return { perSecond, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

// The same measurement with the map and this process on CPU 0 only; both affinities are restored after.
async function pinnedOneAtATime(map: MapPipe, keys: string[], n: number): Promise<OneAtATime> {
  const own = affinity(process.pid);
  const map0 = affinity(map.pid);
  setAffinity(map.pid, '1');
  setAffinity(process.pid, '1');
  try {
    await oneAtATime(map, keys, Math.min(n, 2_000)); // settle on the new CPU
    return await oneAtATime(map, keys, n);
  } finally {
    setAffinity(process.pid, own);
    setAffinity(map.pid, map0);
  }
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'plexer-bench-'));
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  try {
    const url = await createDatabase(cluster, 'bench');
    const configPath = join(dir, 'plexer.conf');
    writeFileSync(configPath, formatConfig({ database_url: url, cache_max: USERS * 2 }));
    const migrate = spawn(process.execPath, [join(ROOT, 'bin/plexer'), 'db', 'migrate', '--config', configPath], { stdio: 'inherit' });
    await new Promise((resolve) => migrate.on('exit', resolve));
    const sql = new pg.Client({ connectionString: url, options: '-c search_path=plexer' });
    // A failure below stops the cluster under this connection: its error must not hide the failure's own.
    sql.on('error', () => undefined);
    await sql.connect();
    await sql.query(`INSERT INTO daemon_groups (name) SELECT 'tenant' || i FROM generate_series(1, 10) i`);
    await sql.query(
      `INSERT INTO users (name, password_hash, daemon_group)
       SELECT 'user' || i, '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu', 'tenant' || (1 + i % 10)
         FROM generate_series(1, $1::integer) i`,
      [USERS],
    );

    const map = new MapPipe(process.execPath, [join(ROOT, 'bin/plexer'), 'map', 'group', '--config', configPath]);
    const keys = Array.from({ length: USERS }, (_, i) => `user${i + 1}`);
    const rssStart = rssMiB(map.pid);
    const warmStart = performance.now();
    // Misses beyond the map's in-flight bound are answered NULL at once by design, so fill in small batches.
    for (let i = 0; i < keys.length; i += 32) await map.lookup(keys.slice(i, i + 32));
    const warmMs = performance.now() - warmStart;
    const rssWarm = rssMiB(map.pid);

    // Pipelined: many keys per write, as a throughput ceiling of the per-line path.
    const rounds = quick ? 2 : 10;
    let answered = 0;
    const pipeStart = performance.now();
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < keys.length; i += 5000) {
        const answers = await map.lookup(keys.slice(i, i + 5000));
        answers.forEach((answer, j) => {
          if (answer !== `#user${i + j + 1}=tenant${1 + ((i + j + 1) % 10)}`)
            throw new Error(`wrong answer for user${i + j + 1}: ${answer}`);
        });
        answered += answers.length;
      }
    }
    const pipelinedPerSecond = answered / ((performance.now() - pipeStart) / 1000);

    const singles = quick ? 5_000 : 50_000;
    const single = await oneAtATime(map, keys, singles);
    // Before the propagation below moves users: every answer is still the one in the txt file.
    const singlePinned = await pinnedOneAtATime(map, keys, singles);

    // Propagation: commit a move with plain SQL, then ask until the new group is answered.
    const propagation: number[] = [];
    for (let i = 0; i < (quick ? 5 : 30); i++) {
      const user = `user${1 + i}`;
      const target = `tenant${1 + ((i + 5) % 10)}`;
      await sql.query('UPDATE users SET daemon_group = $2 WHERE name = $1', [user, target]);
      const committed = performance.now();
      while ((await map.lookup([user]))[0] !== `#${user}=${target}`) await new Promise((r) => setImmediate(r));
      propagation.push(performance.now() - committed);
    }
    propagation.sort((a, b) => a - b);
    await map.close();
    await sql.end();

    // The references: the Apache bench's minimal maps, keyed, over a txt file of the same users and groups.
    const txtMap = join(dir, 'group.txt');
    writeFileSync(txtMap, keys.map((k, i) => `${k} tenant${1 + ((i + 1) % 10)}`).join('\n') + '\n');
    writeFileSync(join(dir, 'map.py'), PY_MAP);
    writeFileSync(join(dir, 'map.cjs'), NODE_MAP);
    const references: Array<{ name: string; single: OneAtATime; pinned: OneAtATime }> = [];
    for (const [name, command, args] of [
      ['minimal Python', '/usr/bin/python3', [join(dir, 'map.py'), txtMap, 'keyed']],
      ['minimal Node', process.execPath, [join(dir, 'map.cjs'), txtMap]],
    ] as const) {
      const ref = new MapPipe(command, [...args]);
      await oneAtATime(ref, keys, Math.min(singles, 2_000)); // warm-up
      references.push({ name, single: await oneAtATime(ref, keys, singles), pinned: await pinnedOneAtATime(ref, keys, singles) });
      await ref.close();
    }
    const us = (r: OneAtATime) => `${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} µs`;
    const compare = (pick: (r: { single: OneAtATime; pinned: OneAtATime }) => OneAtATime) =>
      [`plexer ${us(pick({ single, pinned: singlePinned }))}`, ...references.map((r) => `${r.name} ${us(pick(r))}`)].join(', ');

    const rows = [
      ['users in the store (all cached)', String(USERS)],
      ['cold fill from PostgreSQL (32 keys per write)', `${(USERS / (warmMs / 1000)).toFixed(0)} lookups/s`],
      ['warm, pipelined (5,000 keys per write)', `${pipelinedPerSecond.toFixed(0)} lookups/s`],
      ['warm, one key at a time (as mod_rewrite)', `${single.perSecond.toFixed(0)} lookups/s`],
      ['one-at-a-time round trip p50 / p99', `${single.p50.toFixed(1)} µs / ${single.p99.toFixed(1)} µs`],
      ["one at a time p50 / p99, same harness: plexer vs the Apache bench's minimal keyed maps", compare((r) => r.single)],
      ['the same, map and client pinned to one CPU (`taskset -c 0`: no cross-CPU wake-up)', compare((r) => r.pinned)],
      [
        'one key at a time, lookups/s (unpinned / pinned)',
        [
          `plexer ${single.perSecond.toFixed(0)} / ${singlePinned.perSecond.toFixed(0)}`,
          ...references.map((r) => `${r.name} ${r.single.perSecond.toFixed(0)} / ${r.pinned.perSecond.toFixed(0)}`),
        ].join(', '),
      ],
      [
        'propagation after COMMIT p50 / p99 / max',
        `${percentile(propagation, 50).toFixed(1)} ms / ${percentile(propagation, 99).toFixed(1)} ms / ${propagation.at(-1)!.toFixed(1)} ms`,
      ],
      ['map RSS at start / with all users cached', `${rssStart.toFixed(0)} MiB / ${rssWarm.toFixed(0)} MiB`],
    ];
    const table = resultsTable(
      `# plexer map alone (${new Date().toISOString()})`,
      `Machine: ${machine()}${quick ? ', --quick' : ''}`,
      rows,
    );
    process.stdout.write(table);
    if (!quick) writeFileSync(join(ROOT, 'bench/map-results.md'), table);
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
