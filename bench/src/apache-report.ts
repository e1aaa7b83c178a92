// The Apache benchmark's report: the tables, the targets and the CPU breakdown from a run's results, in the
// Markdown of bench/RESULTS.md (which also carries bench/map-results.md and bench/fronts-results.md).
import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { median, pct, type Row, type RunContext } from './apache-context.js';
import { CPU_CATEGORIES } from './apache-probes.js';
import { ROOT } from './apache-variants.js';

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');

function table(rows: Row[], section: string): string {
  const refRps = (row: Row) => median(rows.find((r) => r.section === row.section && r.id === row.ref && r.users === row.users)?.rps ?? []);
  const out = ['| variant | users | req/s (median) | p50 | p99 | × reference | rounds (req/s) |', '|---|---|---:|---:|---:|---:|---|'];
  for (const r of rows.filter((x) => x.section === section)) {
    const rps = median(r.rps);
    out.push(
      `| ${r.label} | ${r.users} | ${fmt(rps)} | ${fmt(median(r.p50), 2)} ms | ${fmt(median(r.p99), 2)} ms | ${fmt(rps / refRps(r), 2)} | ${r.rps.map((x) => fmt(x)).join(' / ')} |`,
    );
  }
  return out.join('\n');
}

function targets(ctx: RunContext): string {
  const { rows, warm, coldLatency, warmLatency, bcryptMs, propagation } = ctx.results;
  const routed = (id: string, users: string) =>
    median(rows.find((r) => r.section === 'routing' && r.id === id && r.users === users)?.rps ?? []);
  const out: string[] = ['| target | measured | met? |', '|---|---|---|'];
  for (const N of ctx.options.userCounts) {
    const u = String(N);
    const pl = routed('plexer', u);
    const py = routed('pyprg', u);
    const dbd = routed('dbd', u);
    const dbm = routed('dbm', u);
    const txt = routed('txt', u);
    out.push(
      `| plexer map ≥ 1.10× minimal Python prg: (${u} users) | ${fmt(pl)} vs ${fmt(py)} req/s = ${fmt(pl / py, 2)}× | ${verdict(pl >= 1.1 * py)} |`,
    );
    // The ceiling for plexer map's own code: the same keyed answers and rules from a blocking loop over a Map.
    const nodeMap = routed('nodeprg-keyed', u);
    out.push(
      `| (informational) plexer map vs the minimal blocking Node map (${u} users) | ${fmt(pl)} vs ${fmt(nodeMap)} req/s = ${fmt(pl / nodeMap, 2)}× | — |`,
    );
    out.push(
      `| plexer map ≥ 1.10× dbd: (${u} users) | ${fmt(pl)} vs ${fmt(dbd)} req/s = ${fmt(pl / dbd, 2)}× | ${verdict(pl >= 1.1 * dbd)} |`,
    );
    const route = routed('plexer-route', u);
    out.push(
      `| default config (route map: group + settings, one lookup) ≥ 1.0× dbd: without settings (${u} users) | ${fmt(route)} vs ${fmt(dbd)} req/s = ${fmt(route / dbd, 2)}× | ${verdict(route >= dbd)} |`,
    );
    out.push(
      `| dbm: with plexer sync ≥ 0.97× txt: (${u} users) | ${fmt(dbm)} vs ${fmt(txt)} req/s = ${fmt(dbm / txt, 2)}× | ${verdict(dbm >= 0.97 * txt)} |`,
    );
    // The same Python map with and without key-tied answers and plexer's key-checking rules: what the check costs.
    const pyKeyed = routed('pyprg-keyed', u);
    out.push(
      `| key check costs ≤ 2 % (Python prg: keyed vs plain, ${u} users) | ${fmt(pyKeyed)} vs ${fmt(py)} req/s = ${fmt(pyKeyed / py, 3)}× | ${verdict(pyKeyed >= 0.98 * py)} |`,
    );
  }
  const none = median(warm.get('none')?.map((x) => x.rps) ?? []);
  // Issue 10's targets: the generated default's warm path ≥ 0.85× no auth, authd's ≥ 0.8×.
  for (const [id, target] of [
    ['dbd-socache', 0.9],
    ['ext-socache', 0.9],
    ['ext-socache-lockout', 0.85],
    ['authd', 0.8],
  ] as const) {
    const w = median(warm.get(id)?.map((x) => x.rps) ?? []);
    out.push(
      `| warm ${id} ≥ ${target}× no auth | ${fmt(w)} vs ${fmt(none)} req/s = ${fmt(w / none, 2)}× | ${verdict(w >= target * none)} |`,
    );
  }
  // authd's ceiling: the same Apache lines against an authorizer that checks nothing.
  const fcgiMin = median(warm.get('fcgi-min')?.map((x) => x.rps) ?? []);
  out.push(
    `| (informational) ceiling: minimal FastCGI authorizer ${fmt(fcgiMin / none, 2)}× no auth (mod_authnz_fcgi opens a TCP connection per check) | ${fmt(fcgiMin)} vs ${fmt(none)} req/s = ${fmt(fcgiMin / none, 2)}× | — |`,
  );
  const authdCold = coldLatency.get('authd')?.p50ms ?? Number.NaN;
  const bcryptP50 = pct(bcryptMs, 50);
  out.push(
    `| cold check via authd ≤ bcrypt + 3 ms (p50, one connection) | ${fmt(authdCold, 2)} ms vs bcrypt ${fmt(bcryptP50, 2)} ms + 3 ms = ${fmt(bcryptP50 + 3, 2)} ms (warm request at c1: ${fmt(warmLatency.get('authd')?.p50ms ?? Number.NaN, 2)} ms) | ${verdict(authdCold <= bcryptP50 + 3)} |`,
  );
  const pmRow = propagation.find((p) => p[0]!.startsWith('`plexer map'));
  const pmP99 = pmRow ? Number(pmRow[3]!.replace(' ms', '')) : Number.NaN;
  out.push(`| propagation p99 < 100 ms (plexer map) | p99 ${fmt(pmP99, 1)} ms | ${verdict(pmP99 < 100)} |`);
  return out.join('\n');
}

function latencyTable(ctx: RunContext): string {
  const { passwordVariants, coldLatency, warmLatency, bcryptMs } = ctx.results;
  const out = ['| variant | cold p50 (c1) | cold p99 (c1) | warm p50 (c1) |', '|---|---:|---:|---:|'];
  for (const r of passwordVariants) {
    const c = coldLatency.get(r.id);
    const w = warmLatency.get(r.id);
    out.push(
      `| ${r.label} | ${c ? fmt(c.p50ms, 2) + ' ms' : '= warm (no cache)'} | ${c ? fmt(c.p99ms, 2) + ' ms' : ''} | ${w ? fmt(w.p50ms, 2) + ' ms' : '—'} |`,
    );
  }
  out.push(
    `| bcrypt verify alone, cost 5 (bcryptjs in Node, as authd) | ${fmt(pct(bcryptMs, 50), 2)} ms | ${fmt(pct(bcryptMs, 99), 2)} ms | |`,
  );
  return out.join('\n');
}

function cpuTable(ctx: RunContext): string {
  const out = [
    '| run | ' + CPU_CATEGORIES.join(' | ') + ' | total | requests |',
    '|---|' + CPU_CATEGORIES.map(() => '---:|').join('') + '---:|---:|',
  ];
  for (const [key, t] of ctx.cpuTotals) {
    const per = (k: string) => (1000 * (t.ms.get(k) ?? 0)) / Math.max(1, t.requests);
    const total = CPU_CATEGORIES.reduce((a, k) => a + per(k), 0);
    out.push(`| ${key} | ${CPU_CATEGORIES.map((k) => fmt(per(k))).join(' | ')} | ${fmt(total)} | ${t.requests} |`);
  }
  return out.join('\n');
}

// The other benchmarks' results, written by their own runs: carried here, never rewritten.
function carried(file: string, missing: string): string {
  const path = join(ROOT, file);
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : missing;
}

export function renderReport(ctx: RunContext): string {
  const o = ctx.options;
  const { rows, notes, propagation, coldWrapped, versions } = ctx.results;
  const cpu = cpus()[0]?.model ?? 'cpu';
  return [
    `# Apache benchmark (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)${o.quick ? ' — --quick (not representative)' : ''}`,
    '',
    `Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, shared with other work (noisy).`,
    `Software: ${versions}.`,
    `Load: \`wrk -t${o.threads} -c${o.connections} -d${o.durationS}s --latency\` on the same 2 cores, one Basic Authorization header per request`,
    `rotating through the users (a shuffled list; each thread starts at its own offset). ${o.rounds} interleaved rounds`,
    '(order reversed every other round); req/s, p50 and p99 are medians over the rounds. Every variant is its own',
    'Apache (prefork, the settings of src/apache/render/) with the same 4 × 4-thread mod_wsgi daemon pool and a',
    'tiny WSGI app that names its daemon group (checked for sampled users before and after the runs).',
    `Total bench time: ${((Date.now() - ctx.startedAt) / 60_000).toFixed(1)} min. Reproduce: \`npm run bench\` (\`-- --users 1000,100000,1000000\` for 1M).`,
    '',
    '## Routing (user → daemon group)',
    '',
    'Same authentication everywhere: `{SHA}` Basic from a GDBM user file (mod_authn_dbm: one keyed lookup, where',
    'mod_authn_file would scan a 100,000-line htpasswd on every request). "× reference" = req/s ÷ the fixed group.',
    '',
    table(rows, 'routing'),
    '',
    ...rows.filter((r) => r.section === 'routing' && r.note).map((r) => `- ${r.users} users, plexer map: ${r.note}.`),
    '- txt:, dbm: and fastdbd: cache answers per Apache child (prefork: up to 32 children), txt:/dbm: re-stat the file on',
    '  every lookup; txt: scans the file linearly on a child-cache miss. dbd: runs its query on every request.',
    ...notes.map((n) => `- ${n}`),
    '',
    '## Passwords',
    '',
    `Routing fixed (the reference group), so only authentication differs. Warm: the same ${o.warmUsers} users again and again,`,
    'after one pass over them. Cold: every request a user never seen before (fresh slices of users `cN`).',
    'One bcrypt hash (cost 5) for every user. Caches: AuthnCacheTimeout 3600 s (socache), authd its own cache.',
    '',
    table(rows, 'passwords'),
    '',
    'One connection at a time (`wrk -t1 -c1`), cold = first request per user:',
    '',
    latencyTable(ctx),
    ...(coldWrapped.length > 0 ? ['', `Cold runs that reused users (cold figures are optimistic there): ${coldWrapped.join('; ')}.`] : []),
    '',
    '## Propagation (UPDATE … COMMIT → first request served by the new group)',
    '',
    '| mode | moves | p50 | p99 | max | note |',
    '|---|---:|---:|---:|---:|---|',
    ...propagation.map((p) => `| ${p.join(' | ')} |`),
    '',
    '## Targets',
    '',
    targets(ctx),
    '',
    '## Where the CPU goes',
    '',
    'CPU time (user + system, from /proc, including reaped children such as forked authenticators) per request in',
    "µs, summed over the measured runs: the variant's Apache children (`apache`), its WSGI daemons (`wsgi`), its",
    '`prg:` program (`map`: plexer map, the minimal Python or Node map), PostgreSQL, plexer authd (`authd`: with the',
    'utime + stime of its living python3 sock_diag helper, read from its own /proc/PID/stat since a living child is in',
    'no cutime), the minimal FastCGI authorizer (`fcgi-min`) and plexer sync. wrk itself (same 2 cores) is not counted.',
    '',
    cpuTable(ctx),
    '',
    '## The map alone (`npm run bench:map`, bench/map-results.md)',
    '',
    carried('bench/map-results.md', '(bench/map-results.md missing: run npm run bench:map)').replace(/^# /m, '### '),
    '',
    '## Many front ends (`npm run bench:fronts`, bench/fronts-results.md)',
    '',
    carried('bench/fronts-results.md', '(bench/fronts-results.md missing: run npm run bench:fronts)').replace(/^# .*\n/, ''),
    '',
  ].join('\n');
}
