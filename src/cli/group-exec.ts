// `plexer group exec`: a command run once per account the way the slot serving it runs — its OS user, the
// account's settings module, its data directory, the environment plexer.wsgi gives Django — for the chores every
// account needs (python3 manage.py migrate). Accounts run in parallel, a few at a time; each one's output is
// prefixed with its name, and each gets its own exit status. Without a pool an account's slot is its own; in a
// pool the binder binds the account and holds its slot while the command runs as the slot's user (pool/control.ts).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { lstatSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { join, resolve } from 'node:path';
import { dataDirIn, DEFAULT_STATE_DIR, PACKAGE_ROOT } from '../apache/install-paths.js';
import { RunAsError, UsageError } from '../errors.js';
import { holdSlot } from '../pool/control.js';
import { poolFiles, slotUser } from '../pool/names.js';
import type { AccountRow } from '../store/accounts.js';
import type { Owner } from '../files.js';
import { ensureAccountDataDir, existingOsUser, ownSlotUser } from '../tenant-users.js';
import { print } from './command.js';

export interface ExecOptions {
  dataDir: string;
  pythonPath: string;
  jobs: number;
  // The pool the accounts are served from (apache config --slots), read from Apache's config.
  pool?: { stateDir: string; prefix: string };
}

export const DEFAULT_DATA_DIR = dataDirIn(DEFAULT_STATE_DIR);
export const DEFAULT_PYTHON_PATH = join(PACKAGE_ROOT, 'apache/example');

// Who runs the command, and what to do once it has ended.
interface Placement {
  owner: Owner;
  done: () => void;
}

// What plexer.wsgi and the WSGIDaemonProcess line give Django, and nothing of the caller's own environment
// (root's variables have no business in a tenant's process).
export function accountEnvironment(account: AccountRow, o: ExecOptions): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    HOME: join(o.dataDir, account.name),
    PLEXER_GROUP: account.name,
    PLEXER_DATA_DIR: join(o.dataDir, account.name),
    PYTHONPATH: o.pythonPath,
    // HOME is the account's own directory, which its code writes: no user site-packages (.pth files run at start).
    PYTHONNOUSERSITE: '1',
    ...(account.settings_module ? { DJANGO_SETTINGS_MODULE: account.settings_module } : {}),
  };
}

// Its own slot: its run-as user (www-data without one) and its data directory, made if missing. A directory that
// is someone else's is never taken over: it is a pool's account (root's while unbound, a slot user's while bound)
// whose config was not found, or an account whose run-as changed; run as its user, that account's own code
// (planted in its directory) would run as www-data, Apache's own user.
function ownSlot(account: AccountRow, o: ExecOptions): Placement {
  const owner = ownSlotUser(account.name, account.run_as);
  const dir = join(o.dataDir, account.name);
  let found: { uid: number } | undefined;
  try {
    found = lstatSync(dir);
  } catch {
    found = undefined;
  }
  if (found !== undefined && found.uid !== owner.uid)
    throw new RunAsError(
      `${dir} belongs to uid ${found.uid}, not to the user ${account.name} runs as (uid ${owner.uid}): an account served from a pool? ` +
        "give --apache-config FILE, the pool's Apache config (group exec then runs as its slot user)",
    );
  ensureAccountDataDir(o.dataDir, account.name, owner);
  return { owner, done: () => {} };
}

// A pool's account: bound by the binder (which hands it the account's data) and held until the command ends.
async function heldSlot(account: AccountRow, pool: NonNullable<ExecOptions['pool']>): Promise<Placement> {
  const answer = await holdSlot(poolFiles(pool.stateDir).control, account.name);
  if (answer.kind === 'not-held') throw new RunAsError(`no slot for ${account.name}: ${answer.reason}`);
  const user = slotUser(pool.prefix, answer.slot);
  let osUser: Owner;
  try {
    osUser = existingOsUser({ user, group: user }, `slot user ${user} does not exist: run plexer apache config --slots … again (as root)`);
  } catch (error) {
    answer.release();
    throw error;
  }
  process.stderr.write(`[${account.name}] running as ${user}, the user of ${answer.slot}, which the binder holds for it\n`);
  return { owner: { uid: osUser.uid, gid: osUser.gid }, done: answer.release };
}

async function runOne(account: AccountRow, command: string[], o: ExecOptions): Promise<number> {
  const placement = o.pool ? await heldSlot(account, o.pool) : ownSlot(account, o);
  try {
    return await runAs(account, command, o, placement.owner);
  } finally {
    placement.done();
  }
}

function runAs(account: AccountRow, command: string[], o: ExecOptions, owner: Owner): Promise<number> {
  return new Promise((done) => {
    // The daemons' umask (0077): what the command makes in the account's directory is the account's alone.
    const umask = process.umask(0o077);
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = spawn(command[0]!, command.slice(1), {
        cwd: o.pythonPath,
        env: accountEnvironment(account, o),
        uid: owner.uid,
        gid: owner.gid,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } finally {
      process.umask(umask);
    }
    const relay = (stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) => {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop()!;
        for (const line of lines) out.write(`[${account.name}] ${line}\n`);
      });
      stream.on('end', () => partial && out.write(`[${account.name}] ${partial}\n`));
    };
    relay(child.stdout, process.stdout);
    relay(child.stderr, process.stderr);
    child.on('error', (error) => {
      process.stderr.write(`[${account.name}] cannot run ${command[0]}: ${error.message}\n`);
      done(127);
    });
    child.on('close', (code, signal) => done(code ?? (signal ? 128 : 1)));
  });
}

// Exit 0 when every account's command did, else 1; one summary line per account, in name order.
export async function execInAccounts(accounts: AccountRow[], command: string[], o: ExecOptions): Promise<number> {
  if (command.length === 0) throw new UsageError('nothing to run: give the command after "--"');
  if (accounts.length === 0) throw new UsageError('no daemon group to run in');
  const dataDir = resolve(o.dataDir);
  const options = { ...o, dataDir, pythonPath: resolve(o.pythonPath) };
  const results = new Map<string, number>();
  const queue = [...accounts];
  let finished = 0;
  const worker = async () => {
    for (let a = queue.shift(); a; a = queue.shift()) {
      const code = await runOne(a, command, options).catch((error: Error) => {
        process.stderr.write(`[${a!.name}] ${error.message}\n`);
        return 126;
      });
      results.set(a.name, code);
      finished++;
      process.stderr.write(`plexer group exec: ${a.name} exited ${code} (${finished}/${accounts.length} done)\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, accounts.length) }, worker));
  for (const a of accounts) print(`${a.name}: ${results.get(a.name) === 0 ? 'ok' : `failed (exit ${results.get(a.name)})`}`);
  return [...results.values()].every((code) => code === 0) ? 0 : 1;
}
