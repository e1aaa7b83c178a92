// npm run bench:map — the map program alone over a pipe, against a private PostgreSQL: warm-cache throughput
// (pipelined and one-at-a-time, as mod_rewrite sends), per-lookup latency, change propagation and RSS.
// Writes a Markdown table to bench/map-results.md and stdout.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { formatConfig } from '../../dist/config.js';
import { createDatabase, startPrivateCluster } from '../../dist/demo/private-cluster.js';

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

  constructor(configPath: string) {
    this.child = spawn(process.execPath, [join(ROOT, 'bin/plexer'), 'map', 'group', '--config', configPath], {
      env: {},
      stdio: ['pipe', 'pipe', 'inherit'],
    });
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
    await sql.connect();
    await sql.query(`INSERT INTO daemon_groups (name) SELECT 'tenant' || i FROM generate_series(1, 10) i`);
    await sql.query(
      `INSERT INTO users (name, password_hash, daemon_group)
       SELECT 'user' || i, '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu', 'tenant' || (1 + i % 10)
         FROM generate_series(1, $1::integer) i`,
      [USERS],
    );

    const map = new MapPipe(configPath);
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

    // One key at a time, waiting for each answer: what mod_rewrite does under its lock.
    const singles = quick ? 5_000 : 50_000;
    const latencies: number[] = [];
    const singleStart = performance.now();
    for (let i = 0; i < singles; i++) {
      const t = performance.now();
      await map.lookup([keys[(i * 7919) % keys.length]!]);
      latencies.push((performance.now() - t) * 1000);
    }
    const singlePerSecond = singles / ((performance.now() - singleStart) / 1000);
    latencies.sort((a, b) => a - b);

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

    const rows = [
      ['users in the store (all cached)', String(USERS)],
      ['cold fill from PostgreSQL (32 keys per write)', `${(USERS / (warmMs / 1000)).toFixed(0)} lookups/s`],
      ['warm, pipelined (5,000 keys per write)', `${pipelinedPerSecond.toFixed(0)} lookups/s`],
      ['warm, one key at a time (as mod_rewrite)', `${singlePerSecond.toFixed(0)} lookups/s`],
      ['one-at-a-time round trip p50 / p99', `${percentile(latencies, 50).toFixed(1)} µs / ${percentile(latencies, 99).toFixed(1)} µs`],
      [
        'propagation after COMMIT p50 / p99 / max',
        `${percentile(propagation, 50).toFixed(1)} ms / ${percentile(propagation, 99).toFixed(1)} ms / ${propagation.at(-1)!.toFixed(1)} ms`,
      ],
      ['map RSS at start / with all users cached', `${rssStart.toFixed(0)} MiB / ${rssWarm.toFixed(0)} MiB`],
    ];
    const table = [
      `# plexer map alone (${new Date().toISOString()})`,
      '',
      `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}${quick ? ', --quick' : ''}`,
      '',
      '| measure | result |',
      '|---|---|',
      ...rows.map(([k, v]) => `| ${k} | ${v} |`),
      '',
    ].join('\n');
    process.stdout.write(table);
    if (!quick) writeFileSync(join(ROOT, 'bench/map-results.md'), table);
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
