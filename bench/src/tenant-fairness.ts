// `npm run bench:fairness [-- SECONDS]`: one tenant's flood against another tenant's latency
// (test/apache/tenant-fairness.test.ts, which starts its own PostgreSQL, Apache and Django), run longer than CI's 4 s,
// then the figures as a table for bench/RESULTS.md.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const seconds = Number(process.argv[2] ?? 30);
if (!Number.isInteger(seconds) || seconds < 2) {
  console.error(`usage: npm run bench:fairness [-- SECONDS]  (an integer >= 2, got ${process.argv[2]})`);
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'plexer-fairness-'));
const reportFile = join(dir, 'report.json');
const child = spawn(join(root, 'node_modules/.bin/vitest'), ['run', 'test/apache/tenant-fairness.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PLEXER_FAIRNESS_SECONDS: String(seconds), PLEXER_FAIRNESS_REPORT: reportFile },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
if (code !== 0) {
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
interface Latency {
  requests: number;
  p50: number;
  p99: number;
}
const report = JSON.parse(readFileSync(reportFile, 'utf8')) as {
  seconds: number;
  bobAlone: Latency;
  bobDuringFlood: Latency;
  flood: { ok: number; other: number; perSecond: number };
};
rmSync(dir, { recursive: true, force: true });
const ms = (n: number) => `${n.toFixed(1)} ms`;
console.log(`\n| bob (tenant2), one request at a time | requests | p50 | p99 |\n|---|---:|---:|---:|`);
console.log(`| alone (${report.seconds / 2} s) | ${report.bobAlone.requests} | ${ms(report.bobAlone.p50)} | ${ms(report.bobAlone.p99)} |`);
console.log(
  `| while alice (tenant1) floods, 2 addresses x 20 connections (${report.seconds} s; ${report.flood.perSecond.toFixed(0)} of her requests/s, ${report.flood.other} not 200) | ${report.bobDuringFlood.requests} | ${ms(report.bobDuringFlood.p50)} | ${ms(report.bobDuringFlood.p99)} |`,
);
