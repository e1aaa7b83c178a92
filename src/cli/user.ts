import { readFileSync } from 'node:fs';
import { coerceError, FileError, NotFoundError, RefusedError, UsageError } from '../errors.js';
import { accountsWithoutOwnSlot } from '../accounts/model.js';
import { DEFAULT_APACHE_CONFIG, readApacheConfigSlots } from '../apache/config-slots.js';
import { parseHtpasswd } from '../htpasswd.js';
import { isAccountName, isRoleName, isUserName } from '../names.js';
import { hashPassword, PasswordPolicyError } from '../password.js';
import * as accounts from '../store/accounts.js';
import { unlockSubjects, userLockouts } from '../store/login-failures.js';
import { expectPositionals, parseCommand } from './args.js';
import { print, table, type Command } from './command.js';
import { readNewPassword } from './password-input.js';
import { startProgress } from './progress.js';
import { inTransaction, loadCommandConfig, withStore } from './store-session.js';

const help = `Usage:
  plexer user add NAME --group GROUP|auto|none [--password-stdin] [--apache-config FILE]
  plexer user passwd NAME [--password-stdin]
  plexer user move NAME --group GROUP|auto|none [--apache-config FILE]
  plexer user disable NAME | enable NAME | del NAME
  plexer user grant NAME ROLE | revoke NAME ROLE
  plexer user unlock NAME | unlock --ip ADDRESS
  plexer user list [--group GROUP] [--json]
  plexer user import-htpasswd FILE --group GROUP|none [--skip-existing|--update]

Passwords are read from a terminal without echo, or as one line on stdin with --password-stdin; never from
the command line. "--group auto" picks the enabled group with the fewest users that has room (exit 1 when the
pool is full); "--group none" leaves the user without an instance. import-htpasswd takes bcrypt ($2y$, $2a$,
$2b$), MD5 ($apr1$) and SHA-1 ({SHA}) entries as they are (MD5 and SHA-1 become bcrypt at the user's first
login) and lists every other line with its number and the reason it was refused; a user that already exists is
refused too, unless --skip-existing (left as it is) or --update (its hash and group replaced). unlock clears the
failed-login count and lockout of a user name or a client address (lockout_* settings in the config file).
add and move warn when the group is not in Apache's config (--apache-config, default ${DEFAULT_APACHE_CONFIG}).
Exit status: 0 done, 1 refused or not found, 2 usage or configuration error.
Options: --config FILE (default /etc/plexer/plexer.conf)`;

const options = {
  group: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  json: { type: 'boolean' },
  ip: { type: 'string' },
  'skip-existing': { type: 'boolean' },
  'apache-config': { type: 'string' },
  update: { type: 'boolean' },
} as const;

const IMPORT_BATCH = 1_000;

function userName(name: string): string {
  if (!isUserName(name))
    throw new UsageError(`invalid user name "${name}": letters, digits and . _ @ + -, starting with a letter or digit, at most 128`);
  return name;
}

function accountChoice(value: string | undefined): string | null | 'auto' {
  if (value === undefined) throw new UsageError('--group is required (a group name, "auto" or "none")');
  if (value === 'auto') return 'auto';
  if (value === 'none') return null;
  if (!isAccountName(value)) throw new UsageError(`invalid daemon group name "${value}"`);
  return value;
}

function readTextFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new FileError(`cannot read ${what} ${path}: ${coerceError(error).message}`);
  }
}

async function newPasswordHash(fromStdin: boolean, cost: number): Promise<string> {
  const password = await readNewPassword(fromStdin);
  try {
    return await hashPassword(password, cost);
  } catch (error) {
    if (error instanceof PasswordPolicyError) throw new RefusedError(`password refused: ${error.message}`);
    throw error;
  }
}

export const command: Command = {
  summary: 'manage users, passwords and roles',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, options);
    if (values.help || positionals.length === 0) return (print(help), values.help ? 0 : 2);
    const [action, ...rest] = positionals as [string, ...string[]];
    const config = loadCommandConfig(values.config);
    const fromStdin = values['password-stdin'] === true;

    // Resolves "auto" inside the caller's transaction, so the chosen account still has room at commit.
    const assign = async (client: Parameters<typeof accounts.pickAccountWithRoom>[0], choice: string | null | 'auto') => {
      if (choice !== 'auto') return choice;
      const account = await accounts.pickAccountWithRoom(client);
      if (!account) throw new RefusedError('no enabled daemon group has room: add a group or raise a capacity');
      return account;
    };

    switch (action) {
      case 'add': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        userName(name);
        const choice = accountChoice(values.group);
        const hash = await newPasswordHash(fromStdin, config.bcryptCost);
        const account = await withStore(config, (pool) =>
          inTransaction(pool, async (client) => {
            const chosen = await assign(client, choice);
            await accounts.addUser(client, name, hash, chosen);
            return chosen;
          }),
        );
        print(`user ${name} added${account ? ` to ${account}` : ' without a daemon group'}`);
        warnIfNotInApache(name, account, values['apache-config']);
        return 0;
      }
      case 'passwd': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        userName(name);
        const hash = await newPasswordHash(fromStdin, config.bcryptCost);
        await withStore(config, (pool) => accounts.setPasswordHash(pool, name, hash));
        return 0;
      }
      case 'move': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        userName(name);
        const choice = accountChoice(values.group);
        const account = await withStore(config, (pool) =>
          inTransaction(pool, async (client) => {
            const chosen = await assign(client, choice);
            await accounts.moveUser(client, name, chosen);
            return chosen;
          }),
        );
        print(`user ${name} moved to ${account ?? 'no daemon group'}`);
        warnIfNotInApache(name, account, values['apache-config']);
        return 0;
      }
      case 'disable':
      case 'enable': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        await withStore(config, (pool) => accounts.setUserDisabled(pool, userName(name), action === 'disable'));
        return 0;
      }
      case 'del': {
        const [name] = expectPositionals(rest, ['name']) as [string];
        await withStore(config, (pool) => accounts.deleteUser(pool, userName(name)));
        return 0;
      }
      case 'grant':
      case 'revoke': {
        const [name, role] = expectPositionals(rest, ['name', 'role']) as [string, string];
        userName(name);
        if (!isRoleName(role)) throw new UsageError(`invalid role name "${role}"`);
        if (action === 'grant') {
          await withStore(config, (pool) => accounts.grantRole(pool, name, role));
          return 0;
        }
        const revoked = await withStore(config, (pool) => accounts.revokeRole(pool, name, role));
        if (!revoked) throw new RefusedError(`user "${name}" does not hold role "${role}"`);
        return 0;
      }
      case 'unlock': {
        const [kind, value] =
          values.ip !== undefined
            ? (expectPositionals(rest, []), ['ip', values.ip] as const)
            : (['user', userName((expectPositionals(rest, ['name']) as [string])[0])] as const);
        const cleared = await withStore(config, (pool) => unlockSubjects(pool, kind, value));
        print(cleared.length > 0 ? cleared.map((subject) => `${subject} unlocked`).join('\n') : `${kind}:${value} had no failed logins`);
        return 0;
      }
      case 'list': {
        expectPositionals(rest, []);
        const account = values.group === undefined ? undefined : accountChoice(values.group);
        if (account === 'auto') throw new UsageError('--group auto makes no sense for list');
        const [users, lockouts] = await withStore(config, (pool) =>
          Promise.all([accounts.listUsers(pool, account ?? undefined), userLockouts(pool)]),
        );
        const lockedOf = (name: string) => lockouts.filter((l) => l.user === name).map(({ address, until }) => ({ address, until }));
        if (values.json) return (print(JSON.stringify(users.map((u) => ({ ...u, lockouts: lockedOf(u.name) })))), 0);
        // "from everywhere" is the name's own lockout (many addresses); "from ADDR" only that address's guesses.
        const locked = (name: string) =>
          lockedOf(name)
            .map(({ address, until }) => `${address === null ? 'everywhere' : `from ${address}`} until ${until.toISOString()}`)
            .join('; ') || '-';
        const rows = users.map((u) => [
          u.name,
          u.daemon_group ?? '-',
          u.disabled ? 'disabled' : 'enabled',
          u.roles.join(',') || '-',
          locked(u.name),
        ]);
        print(table([['NAME', 'GROUP', 'STATE', 'ROLES', 'LOCKED OUT'], ...rows]));
        return 0;
      }
      case 'import-htpasswd': {
        const [file] = expectPositionals(rest, ['file']) as [string];
        const choice = accountChoice(values.group);
        if (choice === 'auto') throw new UsageError('import-htpasswd needs a named group or none');
        if (values['skip-existing'] && values.update) throw new UsageError('--skip-existing and --update exclude each other');
        const existing: accounts.ExistingUsers = values.update ? 'update' : values['skip-existing'] ? 'skip' : 'refuse';
        const { entries, rejected } = parseHtpasswd(readTextFile(file, 'htpasswd file'));
        const lineOf = new Map(entries.map((entry) => [entry.user, entry.line]));
        const left = await withStore(config, (pool) =>
          inTransaction(pool, async (client) => {
            if (choice !== null && !(await accounts.accountExists(client, choice))) {
              throw new NotFoundError(
                `no daemon group "${choice}"; create it with \`plexer group add ${choice}\` first (nothing imported)`,
              );
            }
            const progress = startProgress(`importing ${file}`, entries.length);
            const names: string[] = [];
            for (let i = 0; i < entries.length; i += IMPORT_BATCH) {
              const batch = entries.slice(i, i + IMPORT_BATCH);
              names.push(...(await accounts.importUsers(client, batch, choice, existing)));
              progress.advance(batch.length);
            }
            progress.done();
            return names;
          }),
        );
        if (existing === 'refuse') {
          for (const user of left)
            rejected.push({
              line: lineOf.get(user)!,
              user,
              reason: 'user already exists (--skip-existing leaves it, --update replaces its hash and group)',
            });
        }
        rejected.sort((a, b) => a.line - b.line);
        for (const r of rejected) process.stderr.write(`${file}:${r.line}: ${r.user ?? '(no user)'}: ${r.reason}\n`);
        const skipped = existing === 'skip' ? `; left ${left.length} existing user(s) as they were` : '';
        const imported = entries.length - (existing === 'update' ? 0 : left.length);
        print(`imported ${imported} user(s)${skipped}; refused ${rejected.length} line(s)`);
        return rejected.length > 0 ? 1 : 0;
      }
      default:
        throw new UsageError(`unknown user action "${action}"; see plexer user --help`);
    }
  },
};

// A user routed to an account without a slot in the running Apache gets the 503 page until it has one.
function warnIfNotInApache(name: string, account: string | null, apacheConfig: string | undefined): void {
  const running = account === null ? null : readApacheConfigSlots(apacheConfig);
  if (account !== null && running?.ownSlots && accountsWithoutOwnSlot([account], running.ownSlots).length > 0) {
    process.stderr.write(
      `warning: daemon group "${account}" is not in the Apache config ${running.path}: ${name} gets the 503 ` +
        'page until `plexer apache config … --out` rewrites it and Apache reloads (apache2ctl graceful)\n',
    );
  }
}
