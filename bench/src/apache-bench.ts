// npm run bench [-- --quick] [-- --users 1000,100000] [-- --duration S] [-- --rounds R]
//
// Apache side by side: a private PostgreSQL (startPrivateCluster in a temp dir) and one Debian apache2 per
// variant on a free loopback port, each driven with wrk (Lua script: one Basic Authorization header per
// request, rotating through the users so the maps see many keys). Variants are interleaved (ABAB… rounds,
// order reversed every other round) and the median of the rounds is reported.
//
//   routing    same auth ({SHA} Basic, mod_authn_dbm), same tiny WSGI app, same daemon pool (4 processes x 4
//              threads): no map (fixed WSGIProcessGroup) [reference] | txt: | dbd: | fastdbd: | minimal Python
//              prg: (plain, keyed) | minimal Node prg: (keyed, blocking loop: plexer map's ceiling) | plexer
//              map group (prg:) | plexer map route (prg:, group + settings: the default config) | dbm: kept by
//              plexer sync
//   passwords  no auth [reference] | bcrypt htpasswd cost 5 (mod_authn_file) | mod_authn_dbd + socache |
//              plexer authn (mod_authnz_external) without / with socache | plexer authd (mod_authnz_fcgi) |
//              a minimal FastCGI authorizer that checks nothing (authd's ceiling, warm only);
//              warm (users seen before) and cold (users never seen)
//   propagation  UPDATE … COMMIT of a user's group -> first request served by the new group
//
// The full run writes bench/RESULTS.md. --quick (CI, < 3 minutes): tiny runs, correctness checks only, prints
// the table to stdout, never writes RESULTS.md and exits non-zero only on a wrong answer or a crash.
//
// The variants and their configs: apache-variants.ts; the runs: apache-run.ts (instruments in
// apache-probes.ts); the report: apache-report.ts; what they share: apache-context.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRunContext, log, parseBenchOptions } from './apache-context.js';
import { renderReport } from './apache-report.js';
import { runBench } from './apache-run.js';
import { ROOT } from './apache-variants.js';

const ctx = createRunContext(parseBenchOptions(process.argv.slice(2)));

async function main(): Promise<number> {
  await runBench(ctx);
  const report = renderReport(ctx);
  process.stdout.write(report + '\n');
  if (!ctx.options.quick) {
    writeFileSync(join(ROOT, 'bench/RESULTS.md'), report);
    log('wrote bench/RESULTS.md');
  }
  if (ctx.failures.length > 0) {
    process.stderr.write(`\n${ctx.failures.length} wrong answer(s):\n${ctx.failures.map((f) => `  - ${f}`).join('\n')}\n`);
    return 1;
  }
  log(`done in ${((Date.now() - ctx.startedAt) / 1000).toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`bench crashed: ${error.stack ?? error.message}\n${ctx.failures.length ? ctx.failures.join('\n') + '\n' : ''}`);
    process.exit(2);
  },
);
