// `npm run bench:logins [-- USERS COST]`: logged-in users (Basic and the login page) and one graceful reload, with
// Apache's login cache in its shared memory (the default) and in memcached (--login-cache), side by side (test/apache/login-reload.test.ts, which
// starts its own PostgreSQL, Apaches and memcached), then the figures as a table for bench/RESULTS.md.
// Defaults: 1,000 users, bcrypt cost 10, 20 asking at a time, 2 other users asking one request after another.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const [users = 1000, cost = 10] = process.argv.slice(2).map(Number);
for (const [name, value] of Object.entries({ users, cost })) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`usage: npm run bench:logins [-- USERS COST]  (${name} must be a positive integer)`);
    process.exit(2);
  }
}
const dir = mkdtempSync(join(tmpdir(), 'plexer-logins-'));
const reportFile = join(dir, 'report.json');
const child = spawn(join(root, 'node_modules/.bin/vitest'), ['run', 'test/apache/login-reload.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PLEXER_LOGIN_USERS: String(users), PLEXER_LOGIN_COST: String(cost), PLEXER_LOGIN_REPORT: reportFile },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
const text = code === 0 ? readFileSync(reportFile, 'utf8') : '';
rmSync(dir, { recursive: true, force: true });
if (code !== 0) process.exit(code);
interface Run {
  ms: number;
  firstMs: number;
  failed: number;
}
interface Latency {
  requests: number;
  p50: number;
  p99: number;
  failed: number;
}
const r = JSON.parse(text) as {
  users: number;
  cost: number;
  atOnce: number;
  others: number;
  report: Record<string, { first: Run; warm: Run; afterReload: Run; othersWarm: Latency; othersDuringReload: Latency; cached: number }>;
};
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ms = (x: number) => `${x.toFixed(1)} ms`;
console.log(`\n${r.users} users (bcrypt cost ${r.cost}), ${r.atOnce} asking at a time; ${r.others} other users asking meanwhile\n`);
console.log(
  '| login | first logins, all served | logins/s | again, cached: all served (req/s) | after one graceful reload: first answer | all served again | others warm p50 / p99 | others during the reload p50 / p99 (failed) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const [mode, run] of Object.entries(r.report)) {
  const rate = ((r.users * 1000) / run.first.ms).toFixed(1);
  const warmRate = ((r.users * 1000) / run.warm.ms).toFixed(0);
  const ow = run.othersWarm;
  const od = run.othersDuringReload;
  console.log(
    `| ${mode} | ${s(run.first.ms)} | ${rate} | ${s(run.warm.ms)} (${warmRate}) | ${s(run.afterReload.firstMs)} | ${s(run.afterReload.ms)} | ${ms(ow.p50)} / ${ms(ow.p99)} | ${ms(od.p50)} / ${ms(od.p99)} (${od.failed}) |`,
  );
}
for (const [mode, run] of Object.entries(r.report)) {
  if (run.cached > 0)
    console.log(
      `${mode}: memcached held ${run.cached} of ${r.users} logins after the first round (mod_authn_socache skips a store while another child holds its mutex); none of them was checked again after the reload (asserted)`,
    );
}
