import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { accountsWithoutOwnSlot } from '../accounts/model.js';
import { DEFAULT_APACHE_CONFIG, readApacheConfigSlots } from '../apache/config-slots.js';
import { configFilePath, loadConfig, type PlexerConfig } from '../config.js';
import { coerceError } from '../errors.js';
import { MemcacheClient } from '../logins/memcache.js';
import { listAccounts } from '../store/accounts.js';
import { createClient } from '../store/connect.js';
import { explainConnectError, explainSchemaError } from '../store/connect-errors.js';
import { userLockouts } from '../store/login-failures.js';
import { isOnTmpfs, REFUSAL_SOCKET, tmpfsAdvice } from '../lockout/lock-files.js';
import { readMigrations } from '../store/migrate.js';
import { APACHE_RUN_USER, apacheOwner } from '../tenant-users.js';
import { PACKAGE_ROOT } from '../apache/install-paths.js';
import { parentPid, processAgeSeconds, processArgv, processIds, processTitle } from '../proc.js';
import { expectPositionals, parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { withStore } from './store-session.js';

// Apache starts its maps and piped loggers only after `apache2ctl start` (and so `systemctl restart apache2`) has
// returned, and Node takes a moment more before the lockout logger answers: the README's install block runs
// doctor on the next line. So while an Apache started less than this long ago, a helper that is not there yet is
// looked for again rather than reported.
const HELPERS_START_SECONDS = 10;

const help = `Usage: plexer doctor [--apache-config FILE] [--config FILE]

Checks an installation, one line per check ("ok", "warn" or "FAIL" and what to do): the config file parses
and ${APACHE_RUN_USER} (Apache's helpers) can read it; the database answers the helpers' role; the schema is at
this plexer's version; every enabled group in the database is defined in Apache's config (--apache-config,
default ${DEFAULT_APACHE_CONFIG}); which users are locked out (warn); "plexer map" and, with dbm: maps,
"plexer sync" processes for this config file are running; the "plexer lockout" logger Apache's config starts
runs, keeps its lock files on tmpfs and (Basic) serves the 401 page; with --login-cache, memcached answers in a
directory only ${APACHE_RUN_USER} reaches and "plexer revoke" runs; right after Apache (re)starts, doctor gives
those helpers up to ${HELPERS_START_SECONDS} s from its start to be there. Exit 0 when nothing failed, else 1. Run it as root.`;

type Status = 'ok' | 'warn' | 'FAIL';
interface Check {
  status: Status;
  name: string;
  detail: string;
}

// As www-data itself (test -r follows every parent directory's permissions too); only root can switch users.
function configCheck(file: string): Check {
  if (process.getuid?.() !== 0)
    return { status: 'warn', name: 'config', detail: `${file} parses; run doctor as root to check that ${APACHE_RUN_USER} can read it` };
  const owner = apacheOwner();
  const readable = spawnSync('test', ['-r', file], { uid: owner.uid, gid: owner.gid, env: { PATH: '/usr/bin:/bin' } }).status === 0;
  if (!readable) {
    return {
      status: 'FAIL',
      name: 'config',
      detail: `${APACHE_RUN_USER} cannot read ${file}, so every helper fails: chgrp ${APACHE_RUN_USER} ${file} && chmod 640 ${file} (and let it traverse the directories)`,
    };
  }
  return { status: 'ok', name: 'config', detail: `${file} parses and ${APACHE_RUN_USER} can read it` };
}

// The helpers' login is checked as the user that makes it (www-data, where peer authentication maps it to
// pg_user): as root, doctor asks a copy of itself running as that user (--helper-check), which answers one line.
function helperCheckAsApache(configFile: string): Check {
  const owner = apacheOwner();
  const child = spawnSync(process.execPath, [join(PACKAGE_ROOT, 'bin/plexer'), 'doctor', '--helper-check', '--config', configFile], {
    uid: owner.uid,
    gid: owner.gid,
    env: { PATH: '/usr/bin:/bin' },
    cwd: '/',
    encoding: 'utf8',
    timeout: 15_000,
  });
  try {
    return JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as Check;
  } catch {
    return {
      status: 'FAIL',
      name: 'database',
      detail: `as ${APACHE_RUN_USER}, the check did not run: ${(child.stderr || child.error?.message || '').trim()}`,
    };
  }
}

async function helperCheck(config: PlexerConfig): Promise<Check> {
  const client = createClient(config, { applicationName: 'plexer-doctor', connectTimeoutMs: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1 FROM users LIMIT 1');
    return { status: 'ok', name: 'database', detail: `reachable; the helpers' role reads users (as uid ${process.getuid?.()})` };
  } catch (error) {
    const explained = explainConnectError(error, config, 'helper') ?? explainSchemaError(error, config);
    return {
      status: 'FAIL',
      name: 'database',
      detail: `as the helpers' role (uid ${process.getuid?.()}): ${explained?.message ?? coerceError(error).message}`,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

// The command lines of the plexer processes running (Apache starts them as `… bin/plexer COMMAND …`), from the
// word after bin/plexer on.
function helperArgvs(): string[][] {
  const found: string[][] = [];
  for (const pid of processIds()) {
    const argv = processArgv(pid);
    const at = argv.findIndex((arg) => arg.endsWith('/bin/plexer'));
    if (at !== -1) found.push(argv.slice(at + 1));
  }
  return found;
}

// The maps and syncs running with this config file.
function helperProcesses(configFile: string): { maps: number; syncs: number } {
  let maps = 0;
  let syncs = 0;
  for (const argv of helperArgvs()) {
    if (!argv.some((arg, i) => arg === configFile && argv[i - 1] === '--config')) continue;
    if (argv[0] === 'map') maps++;
    if (argv[0] === 'sync') syncs++;
  }
  return { maps, syncs };
}

function processCheck(configFile: string, apacheText: string | null): Check[] {
  const { maps, syncs } = helperProcesses(configFile);
  const usesPrg = apacheText === null || /RewriteMap\s+\S+\s+"?prg:/.test(apacheText);
  const usesDbm = apacheText !== null && /RewriteMap\s+\S+\s+"?dbm/.test(apacheText);
  const checks: Check[] = [];
  if (usesPrg) {
    checks.push(
      maps > 0
        ? { status: 'ok', name: 'maps', detail: `${maps} "plexer map" process(es) running for ${configFile}` }
        : {
            status: 'FAIL',
            name: 'maps',
            detail: `no "plexer map" process runs with --config ${configFile}: is Apache running this site? (apache2ctl -S; the error log says why a map died)`,
          },
    );
  }
  if (usesDbm) {
    checks.push(
      syncs > 0
        ? { status: 'ok', name: 'sync', detail: `"plexer sync" running for ${configFile}` }
        : {
            status: 'FAIL',
            name: 'sync',
            detail: `Apache reads dbm: maps but no "plexer sync" runs with --config ${configFile}: systemctl start plexer-sync (the maps stop following changes)`,
          },
    );
  }
  return checks;
}

// The lockout logger the Apache config starts: running, its directory on tmpfs, and (Basic) its 401 page served.
// Whether something accepts connections on a unix socket: a file left by a logger that died still exists.
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(path);
    const finish = (answered: boolean) => {
      socket.destroy();
      done(answered);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

async function lockoutChecks(apacheConfig: string, apacheText: string | null): Promise<Check[]> {
  if (apacheText === null) return [];
  const logger = /\blockout --lock-dir (\S+)( --refusal-page \S+)?/.exec(apacheText);
  if (!logger) {
    return [
      {
        status: 'warn',
        name: 'lockout',
        detail: `${apacheConfig} starts no "plexer lockout": guesses that mod_authn_socache refuses by itself are not counted (plexer apache config … --out ${apacheConfig})`,
      },
    ];
  }
  const dir = logger[1]!;
  const running = helperArgvs().some((argv) => argv[0] === 'lockout' && argv[argv.indexOf('--lock-dir') + 1] === dir);
  if (!running) {
    return [
      {
        status: 'FAIL',
        name: 'lockout',
        detail: `no "plexer lockout --lock-dir ${dir}" runs: Apache starts it as a piped logger, so is Apache running this site? (its error log says why the logger died)`,
      },
    ];
  }
  if (logger[2] !== undefined && !(await socketAnswers(join(dir, REFUSAL_SOCKET)))) {
    return [
      {
        status: 'FAIL',
        name: 'lockout',
        detail: `nothing answers on ${join(dir, REFUSAL_SOCKET)}: 401s are answered before they are counted (the logger's lines in Apache's error log say why)`,
      },
    ];
  }
  if (!isOnTmpfs(dir)) {
    return [
      {
        status: 'warn',
        name: 'lockout',
        detail: `${dir} is not on tmpfs: every 401 waits for a lock file to be made there; ${tmpfsAdvice(dir)}`,
      },
    ];
  }
  return [
    {
      status: 'ok',
      name: 'lockout',
      detail: `"plexer lockout" counts refused logins${logger[2] ? ' before their answer' : ''}; lock files in ${dir}`,
    },
  ];
}

// The login cache in memcached (--login-cache): answering, out of tenants' reach, and a revoker keeping it honest.
async function loginCacheChecks(apacheText: string | null): Promise<Check[]> {
  const socket = apacheText === null ? undefined : /^\s*AuthnCacheSOCache\s+memcache:(\S+)/m.exec(apacheText)?.[1];
  if (socket === undefined) return [];
  const name = 'login cache';
  const dir = dirname(socket);
  let mode: number;
  let owner: number;
  try {
    ({ mode, uid: owner } = statSync(dir));
  } catch {
    return [{ status: 'FAIL', name, detail: `${dir} does not exist: systemctl start plexer-logins (apache/plexer-logins.service)` }];
  }
  if ((mode & 0o077) !== 0 || (owner !== 0 && owner !== apacheOwner().uid))
    return [
      {
        status: 'FAIL',
        name,
        detail: `${dir} lets others than ${APACHE_RUN_USER} reach the cache (an entry written there logs anyone in): chown ${APACHE_RUN_USER} ${dir} && chmod 0700 ${dir}`,
      },
    ];
  if (!helperArgvs().some((argv) => argv[0] === 'revoke' && argv[argv.indexOf('--socket') + 1] === socket))
    return [
      {
        status: 'FAIL',
        name,
        detail: `no "plexer revoke --socket ${socket}" runs: a changed password keeps working until AuthnCacheTimeout (Apache starts it as a piped logger: is it running this site?)`,
      },
    ];
  const client = new MemcacheClient(socket, 1_000);
  const version = await client.version().catch(() => undefined);
  client.close();
  if (version === undefined)
    return [
      {
        status: 'warn',
        name,
        detail: `nothing answers on ${socket}: every request's password is checked again (slower): systemctl start plexer-logins`,
      },
    ];
  return [{ status: 'ok', name, detail: `memcached ${version} on ${socket} (${dir} is ${APACHE_RUN_USER}'s alone); plexer revoke runs` }];
}

const isApache = (pid: number | null) => pid !== null && ['apache2', 'httpd'].includes(basename(processTitle(pid) ?? ''));

// How long ago the most recently started Apache (a parent: its own parent is no Apache) started, if any did.
function youngestApacheAge(): number | undefined {
  let youngest: number | undefined;
  for (const pid of processIds()) {
    if (!isApache(pid) || isApache(parentPid(pid))) continue;
    const age = processAgeSeconds(pid);
    if (age !== null && (youngest === undefined || age < youngest)) youngest = age;
  }
  return youngest;
}

// The helpers' checks, again every 250 ms while one fails and an Apache is still starting (bounded once, from
// the youngest Apache's age at the first look, so that Apaches started meanwhile cannot keep doctor waiting).
async function helperChecks(file: string, apacheConfig: string, apacheText: string | null): Promise<Check[]> {
  const check = async () => [
    ...processCheck(file, apacheText),
    ...(await lockoutChecks(apacheConfig, apacheText)),
    ...(await loginCacheChecks(apacheText)),
  ];
  let checks = await check();
  if (!checks.some((c) => c.status === 'FAIL')) return checks;
  const age = youngestApacheAge();
  if (age === undefined || age >= HELPERS_START_SECONDS) return checks;
  const until = Date.now() + (HELPERS_START_SECONDS - age) * 1000;
  while (checks.some((c) => c.status === 'FAIL') && Date.now() < until) {
    await delay(250);
    checks = await check();
  }
  return checks;
}

async function storeChecks(config: PlexerConfig, apacheConfig: string): Promise<Check[]> {
  return withStore(config, async (pool) => {
    const checks: Check[] = [];
    const latest = Math.max(...readMigrations().map((m) => m.id));
    const applied = (await pool.query<{ id: number | null }>('SELECT max(id) AS id FROM migrations')).rows[0]?.id ?? 0;
    checks.push(
      applied >= latest
        ? { status: 'ok', name: 'schema', detail: `at version ${applied}` }
        : { status: 'FAIL', name: 'schema', detail: `at version ${applied}, this plexer needs ${latest}: run \`plexer db migrate\`` },
    );
    const accounts = (await listAccounts(pool)).filter((a) => a.enabled).map((a) => a.name);
    const running = readApacheConfigSlots(apacheConfig);
    if (!running) {
      checks.push({
        status: 'warn',
        name: 'apache groups',
        detail: `cannot read ${apacheConfig}: give --apache-config FILE to compare its groups with the database`,
      });
    } else if (running.slots !== undefined) {
      checks.push({
        status: 'ok',
        name: 'apache groups',
        detail: `${apacheConfig} serves every group from a pool of ${running.slots} slots`,
      });
    } else if (running.ownSlots === null) {
      checks.push({ status: 'ok', name: 'apache groups', detail: `${apacheConfig} routes through backends (no daemon per group)` });
    } else {
      const missing = accountsWithoutOwnSlot(accounts, running.ownSlots);
      checks.push(
        missing.length === 0
          ? { status: 'ok', name: 'apache groups', detail: `all ${accounts.length} enabled group(s) are in ${apacheConfig}` }
          : {
              status: 'FAIL',
              name: 'apache groups',
              detail: `${missing.join(', ')} in the database but not in ${apacheConfig} (their users get 503): plexer apache config … --out ${apacheConfig}, then apache2ctl graceful`,
            },
      );
    }
    const locked = await userLockouts(pool);
    checks.push(
      locked.length === 0
        ? { status: 'ok', name: 'lockouts', detail: 'no user is locked out' }
        : {
            status: 'warn',
            name: 'lockouts',
            detail:
              locked.map((l) => `${l.user}${l.address ? ` from ${l.address}` : ''} until ${l.until.toISOString()}`).join('; ') +
              ' (plexer user unlock NAME)',
          },
    );
    return checks;
  });
}

export const command: Command = {
  summary: 'check the installation (config, database, schema, Apache groups, lockouts, helpers)',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, { 'apache-config': { type: 'string' }, 'helper-check': { type: 'boolean' } });
    if (values.help) return (print(help), 0);
    expectPositionals(positionals, []);
    const file = resolve(configFilePath(values.config));
    if (values['helper-check']) return (print(JSON.stringify(await helperCheck(loadConfig({ path: file })))), 0);
    const apacheConfig = values['apache-config'] ?? DEFAULT_APACHE_CONFIG;
    const checks: Check[] = [];
    let config: PlexerConfig | null = null;
    try {
      config = loadConfig({ path: values.config });
      checks.push(configCheck(file));
    } catch (error) {
      checks.push({ status: 'FAIL', name: 'config', detail: coerceError(error).message });
    }
    if (config) {
      checks.push(process.getuid?.() === 0 ? helperCheckAsApache(file) : await helperCheck(config));
      checks.push(
        ...(await storeChecks(config, apacheConfig).catch((error: unknown) => [
          { status: 'FAIL' as const, name: 'store', detail: coerceError(error).message },
        ])),
      );
    }
    let apacheText: string | null = null;
    try {
      apacheText = readFileSync(apacheConfig, 'utf8');
    } catch {
      // Reported by the apache groups check; the map check then assumes the default prg: maps.
    }
    checks.push(...(await helperChecks(file, apacheConfig, apacheText)));
    for (const c of checks) print(`${c.status.padEnd(4)}  ${c.name}: ${c.detail}`);
    return checks.some((c) => c.status === 'FAIL') ? 1 : 0;
  },
};
