// `npm run soak [-- SECONDS]`: the tenant-isolation churn test (test/apache/churn.test.ts, driver in
// test/helpers/churn.ts) run for minutes instead of CI's 20 s, then a summary table.
//
// SECONDS: first argument, else PLEXER_SOAK_SECONDS, else 300. PLEXER_CHURN_CLIENTS sets the client count.
// Everything the test needs (private PostgreSQL, Apache, Django) is started and stopped by the test itself.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const seconds = Number(process.argv[2] ?? process.env['PLEXER_SOAK_SECONDS'] ?? 300);
if (!Number.isInteger(seconds) || seconds < 5) {
  console.error(`usage: npm run soak [-- SECONDS]  (an integer >= 5, got ${process.argv[2]})`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'plexer-soak-'));
const reportFile = join(dir, 'report.json');
console.log(`soak: ${seconds} s of churn and load against a real Apache (test/apache/churn.test.ts)`);
const child = spawn(join(root, 'node_modules/.bin/vitest'), ['run', 'test/apache/churn.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PLEXER_CHURN_SECONDS: String(seconds), PLEXER_CHURN_REPORT: reportFile },
});
const code: number = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));

interface Proc {
  pid: number;
  rssKiB: number;
  cmd: string;
}
interface Sample {
  parent: Proc;
  workers: Proc[];
  wsgi: Proc[];
  maps: Proc[];
}
interface Saved {
  report: {
    seconds: number;
    clients: number;
    windowMs: number;
    requests: number;
    byStatus: Record<string, number>;
    wrongTenant: number;
    servedWhileBlocked: number;
    wrongUser: number;
    unexpected401: number;
    unexpected403: number;
    unexpectedOther: number;
    networkErrors: number;
    maxStalenessMs: number;
    staleResponses: number;
    changes: { total: number; cli: number; sql: number; failed: number; byOp: Record<string, number> };
  };
  before: Sample;
  after: Sample;
  signal15: number;
  mapChanges: string[];
}

let saved: Saved | undefined;
try {
  saved = JSON.parse(readFileSync(reportFile, 'utf8')) as Saved;
} catch {
  console.error('soak: the test wrote no report (it failed before the load ran); see the output above');
}
if (saved) {
  const { report: r, before, after } = saved;
  const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
  const total = (ps: Proc[]) => ps.reduce((n, p) => n + p.rssKiB, 0);
  const mapRss = (s: Sample, kind: string) => {
    const m = s.maps.find((p) => p.cmd.includes(` map ${kind}`));
    return m ? `${mib(m.rssKiB)} (pid ${m.pid})` : 'not running';
  };
  const rows: Array<[string, string, string?]> = [
    ['duration / clients', `${r.seconds} s / ${r.clients}`],
    ['requests sent', `${r.requests} (${(r.requests / r.seconds).toFixed(1)}/s)`],
    ...Object.entries(r.byStatus)
      .sort()
      .map(([status, n]): [string, string] => [`  status ${status === '0' ? 'network error' : status}`, String(n)]),
    ['wrong-tenant 200s', `${r.wrongTenant} (served while blocked: ${r.servedWhileBlocked}; other REMOTE_USER: ${r.wrongUser})`],
    ['401 for a servable user', `${r.unexpected401} ("died on signal 15" in the error log: ${saved.signal15})`],
    ['403 for a servable user', String(r.unexpected403)],
    ['other unexpected / network errors', `${r.unexpectedOther} / ${r.networkErrors}`],
    ['max staleness (window)', `${r.maxStalenessMs.toFixed(1)} ms (${r.staleResponses} stale 200s; window ${r.windowMs} ms)`],
    ['changes committed', `${r.changes.total} (cli ${r.changes.cli}, sql ${r.changes.sql}, failed ${r.changes.failed})`],
    ['map restarts seen', saved.mapChanges.length === 0 ? 'none' : saved.mapChanges.join('; ')],
    ['', 'before', 'after'],
    ['RSS apache parent', mib(before.parent.rssKiB), mib(after.parent.rssKiB)],
    [
      'RSS apache children',
      `${mib(total(before.workers))} in ${before.workers.length}`,
      `${mib(total(after.workers))} in ${after.workers.length}`,
    ],
    ['RSS wsgi daemons', `${mib(total(before.wsgi))} in ${before.wsgi.length}`, `${mib(total(after.wsgi))} in ${after.wsgi.length}`],
    ['RSS map group', mapRss(before, 'group'), mapRss(after, 'group')],
    ['RSS map settings', mapRss(before, 'settings'), mapRss(after, 'settings')],
  ];
  const w0 = Math.max(...rows.map((row) => row[0].length));
  const w1 = Math.max(...rows.filter((row) => row[2] !== undefined).map((row) => row[1].length));
  console.log(`\nsoak summary (${code === 0 ? 'all checks passed' : 'CHECKS FAILED, see above'})`);
  for (const [k, v, v2] of rows) console.log(`  ${k.padEnd(w0)}  ${v2 === undefined ? v : `${v.padEnd(w1)}  ${v2}`}`);
}
rmSync(dir, { recursive: true, force: true });
process.exit(code);
