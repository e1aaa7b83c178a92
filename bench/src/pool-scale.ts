// `npm run bench:pool [-- ACCOUNTS SLOTS ACTIVE SECONDS CREATE]`: many accounts over few slots
// (test/apache/pool-scale.test.ts, which starts its own PostgreSQL, Apache and Django), at full size, then the figures as a
// table for bench/RESULTS.md. Defaults: 1,000 accounts, 20 slots, 8 asking at a time, 60 s, 100 accounts created.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const [accounts = 1000, slots = 20, active = 8, seconds = 60, create = 100] = process.argv.slice(2).map(Number);
for (const [name, value] of Object.entries({ accounts, slots, active, seconds, create })) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`usage: npm run bench:pool [-- ACCOUNTS SLOTS ACTIVE SECONDS CREATE]  (${name} must be a positive integer)`);
    process.exit(2);
  }
}
const dir = mkdtempSync(join(tmpdir(), 'plexer-pool-'));
const reportFile = join(dir, 'report.json');
const child = spawn(join(root, 'node_modules/.bin/vitest'), ['run', 'test/apache/pool-scale.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    PLEXER_POOL_ACCOUNTS: String(accounts),
    PLEXER_POOL_SLOTS: String(slots),
    PLEXER_POOL_ACTIVE: String(active),
    PLEXER_POOL_SECONDS: String(seconds),
    PLEXER_POOL_CREATE: String(create),
    PLEXER_POOL_REPORT: reportFile,
  },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
if (code !== 0) {
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
interface Latency {
  count: number;
  p50: number;
  p99: number;
}
const r = JSON.parse(readFileSync(reportFile, 'utf8')) as {
  accounts: number;
  slots: number;
  active: number;
  seconds: number;
  created: number;
  requests: number;
  turns: Latency & { accounts: number };
  arrivals: Latency & { gapMs: number };
  arrivalLoad: Latency & { askers: number };
  notOk: number[];
  wrong: number;
  bind: Latency;
  steady: Latency;
  quiet: Latency;
  duringCreation: Latency;
  quietAgain: Latency;
  duringSql: Latency;
  memoryKiB: { idleSlotMean: number; poolLoaded: number };
};
rmSync(dir, { recursive: true, force: true });
const ms = (n: number) => `${n.toFixed(1)} ms`;
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
console.log(
  `\n${r.accounts} accounts over ${r.slots} slots, ${r.active} users asking at a time, ${r.seconds} s; then ${r.created} accounts created\n`,
);
console.log('| measure | requests | p50 | p99 |\n|---|---:|---:|---:|');
console.log(
  `| turns: ${r.turns.accounts} accounts over ${r.slots} slots, one request at a time, logins cached: request that needed a binding | ${r.turns.count} | ${ms(r.turns.p50)} | ${ms(r.turns.p99)} |`,
);
console.log(
  `| arrivals under load: an account of those comes back every ${r.arrivals.gapMs / 1000} s, login cached: binding + first page | ${r.arrivals.count} | ${ms(r.arrivals.p50)} | ${ms(r.arrivals.p99)} |`,
);
console.log(
  `| the load meanwhile: ${r.arrivalLoad.askers} bound accounts asking without pause | ${r.arrivalLoad.count} | ${ms(r.arrivalLoad.p50)} | ${ms(r.arrivalLoad.p99)} |`,
);
console.log(
  `| rotation: ${r.active} at a time over the other accounts, first request (first login + binding + first page) | ${r.bind.count} | ${ms(r.bind.p50)} | ${ms(r.bind.p99)} |`,
);
console.log(`| later requests of a bound account | ${r.steady.count} | ${ms(r.steady.p50)} | ${ms(r.steady.p99)} |`);
console.log(`| bound accounts, before the creations (3 s) | ${r.quiet.count} | ${ms(r.quiet.p50)} | ${ms(r.quiet.p99)} |`);
console.log(
  `| bound accounts, while ${r.created} accounts are created (CLI) | ${r.duringCreation.count} | ${ms(r.duringCreation.p50)} | ${ms(r.duringCreation.p99)} |`,
);
console.log(
  `| bound accounts, before the SQL creations (3 s) | ${r.quietAgain.count} | ${ms(r.quietAgain.p50)} | ${ms(r.quietAgain.p99)} |`,
);
console.log(
  `| bound accounts, while ${r.created} accounts are created with plain SQL | ${r.duringSql.count} | ${ms(r.duringSql.p50)} | ${ms(r.duringSql.p99)} |`,
);
console.log(
  `\nanswers from another account: ${r.wrong}; not 200: ${r.notOk.length} (${[...new Set(r.notOk)].join(' ') || '-'}); no slot restarted and Apache the same during the creations (asserted); spares kept as by default (--slot-spares ${Math.max(1, Math.floor(r.slots / 8))}) --slot-spare-idle 0`,
);
console.log(
  `memory: the pool's ${r.slots} slots ${mib(r.memoryKiB.poolLoaded)} in all, loaded (a free slot ${mib(r.memoryKiB.idleSlotMean)}, Django imported); one daemon group per account: ${r.accounts} daemon processes`,
);
