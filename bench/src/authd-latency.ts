// node dist-bench/src/authd-latency.js [--cost N] [--quick]
// `plexer authd` alone (no Apache), against a private PostgreSQL, over FastCGI exactly as mod_authnz_fcgi
// talks to it (one connection per check). Prints:
//   - bcrypt's own time at the cost (bcryptjs, async API, in this process)
//   - cold check latency (credential not cached: store read + bcrypt + lockout bookkeeping)
//   - warm check latency (credential cached: lockout read only)
//   - warm checks while a flood of cold checks runs (the bcrypt cap keeps the event loop free)
//   - warm throughput with 16 concurrent clients
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import pg from 'pg';
import { formatConfig } from '../../dist/config.js';
import { createDatabase, startPrivateCluster } from '../../dist/demo/private-cluster.js';
import { authorizerRequest } from '../../dist/fastcgi/client.js';
import { verifyPassword } from '../../dist/password.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const argv = process.argv.slice(2);
const cost = Number(argv[argv.indexOf('--cost') + 1] ?? 10) || 10;
const quick = argv.includes('--quick');
const N = quick ? 20 : 100;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]) =>
  `p50 ${pct(xs, 50).toFixed(2)} ms  p90 ${pct(xs, 90).toFixed(2)} ms  p99 ${pct(xs, 99).toFixed(2)} ms  (n=${xs.length})`;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'plexer-bench-authd-'));
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  let daemon: ReturnType<typeof spawn> | undefined;
  try {
    const url = await createDatabase(cluster, 'bench');
    const configPath = join(dir, 'plexer.conf');
    writeFileSync(configPath, formatConfig({ database_url: url, bcrypt_cost: cost, authn_timeout_ms: 60000 }));
    const migrated = spawn(process.execPath, [join(ROOT, 'bin/plexer'), 'db', 'migrate', '--config', configPath], { stdio: 'inherit' });
    await new Promise((resolve) => migrated.on('exit', resolve));

    const sql = new pg.Pool({ connectionString: url, options: '-c search_path=plexer', max: 2 });
    const hash = await bcrypt.hash('pw', cost);
    await sql.query(`INSERT INTO daemon_groups (name) VALUES ('t1')`).catch(() => undefined);
    const users = Array.from({ length: N + 1 }, (_, i) => `user${i}`);
    for (const name of users) {
      await sql
        .query('INSERT INTO users (name, password_hash, daemon_group) VALUES ($1, $2, $3)', [name, hash, 't1'])
        .catch(() => sql.query('INSERT INTO users (name, password_hash) VALUES ($1, $2)', [name, hash]));
    }

    const port = await freePort();
    daemon = spawn(process.execPath, [join(ROOT, 'bin/plexer'), 'authd', '--listen', `127.0.0.1:${port}`, '--config', configPath], {
      env: {},
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      let log = '';
      daemon!.stderr!.on('data', (d) => {
        log += d;
        if (/ listening /.test(log)) resolve();
      });
      daemon!.on('exit', (code) => reject(new Error(`authd exited ${code}: ${log}`)));
    });
    const target = { host: '127.0.0.1', port };
    const check = async (user: string, password: string) => {
      const start = performance.now();
      const answer = await authorizerRequest(
        target,
        { FCGI_APACHE_ROLE: 'AUTHENTICATOR', REMOTE_USER: user, REMOTE_PASSWD: password, REMOTE_ADDR: '127.0.0.1' },
        120_000,
      );
      return { ms: performance.now() - start, status: answer.status };
    };

    const raw: number[] = [];
    for (let i = 0; i < Math.min(N, 30); i++) {
      const start = performance.now();
      await verifyPassword('pw', hash);
      raw.push(performance.now() - start);
    }
    const cold: number[] = [];
    for (const user of users.slice(1)) {
      const r = await check(user, 'pw');
      if (r.status !== 200) throw new Error(`cold check for ${user} answered ${r.status}`);
      cold.push(r.ms);
    }
    const warm: number[] = [];
    for (let i = 0; i < N * 10; i++) warm.push((await check(users[1 + (i % N)]!, 'pw')).ms);

    // Warm checks while 32 cold checks (wrong passwords) are queued behind the bcrypt cap.
    const flood = Array.from({ length: 32 }, (_, i) => check(users[1 + (i % N)]!, `wrong-${i}`));
    const warmUnderLoad: number[] = [];
    let flooding = true;
    const floodDone = Promise.all(flood).then((r) => ((flooding = false), r));
    const floodStart = performance.now();
    while (flooding) warmUnderLoad.push((await check(users[1]!, 'pw')).ms);
    const floodResults = await floodDone;
    const floodMs = performance.now() - floodStart;

    const concurrency = 16;
    const until = performance.now() + (quick ? 1_000 : 3_000);
    let done = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, c) => {
        while (performance.now() < until) {
          await check(users[1 + (c % N)]!, 'pw');
          done++;
        }
      }),
    );
    const rps = done / ((quick ? 1_000 : 3_000) / 1000);

    console.log(`plexer authd latency, bcrypt cost ${cost} (bcryptjs ${process.version}), one FastCGI connection per check:`);
    console.log(`  bcrypt verify alone (in-process)        ${fmt(raw)}`);
    console.log(`  cold check (store + bcrypt + lockout)   ${fmt(cold)}`);
    console.log(`  warm check (cached, lockout read)       ${fmt(warm)}`);
    console.log(
      `  warm check during 32 queued cold checks ${fmt(warmUnderLoad)}; the 32 took ${floodMs.toFixed(0)} ms, statuses ${[...new Set(floodResults.map((r) => r.status))].join(',')}`,
    );
    console.log(`  warm throughput, ${concurrency} concurrent clients: ${rps.toFixed(0)} checks/s`);
    await sql.end();
  } finally {
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
