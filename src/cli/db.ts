import { UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { migrate } from '../store/migrate.js';
import { grantHelperRole } from '../store/roles.js';
import { expectPositionals, parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { loadCommandConfig, withStore } from './store-session.js';

const help = `Usage: plexer db migrate [--helper-role NAME [--login]] [--config FILE]
       plexer db grant --helper-role NAME [--login] [--config FILE]

migrate: creates or updates plexer's schema (default "plexer") in the configured database. Safe to run again
and from several machines at once: migrations run in one transaction under an advisory lock. With
--helper-role it then does what grant does.

grant: gives the role NAME exactly what Apache's helpers (map, authn, authz, authd, sync) need and nothing
else: USAGE on the schema, SELECT on users, daemon_groups, user_roles and login_failures, and EXECUTE on the
three functions through which they record and clear failed logins and rehash a password. Anything else it had
on the schema's objects is revoked. Creates the role if missing, NOLOGIN unless --login (never SUPERUSER,
CREATEDB or CREATEROLE; creating it needs CREATEROLE or a superuser). Refuses a role with such powers or one
that owns plexer's objects. Safe to run again. Set pg_user (the helpers' identity) to NAME, or to a login
role that is a member of it, and admin_pg_user to the owner of the schema.

Both connect as the admin identity (admin_pg_user), which must own the schema or be a superuser.`;

export const command: Command = {
  summary: "create or update the database schema; grant the helpers' role",
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, { 'helper-role': { type: 'string' }, login: { type: 'boolean' } });
    if (values.help) return (print(help), 0);
    const [action] = expectPositionals(positionals, ['action']);
    if (action !== 'migrate' && action !== 'grant') throw new UsageError(`unknown db action "${action}"; see plexer db --help`);
    const helperRole = values['helper-role'];
    if (action === 'grant' && helperRole === undefined) throw new UsageError('db grant needs --helper-role NAME');
    if (values.login && helperRole === undefined) throw new UsageError('--login goes with --helper-role NAME');
    const config = loadCommandConfig(values.config);
    const log = createLogger('db');
    await withStore(config, async (pool) => {
      const client = await pool.connect();
      try {
        if (action === 'migrate') {
          const applied = await migrate(client, config.schema);
          if (applied.length === 0) log.info('schema up to date', { schema: config.schema });
          for (const m of applied) log.info('migration applied', { schema: config.schema, id: m.id, name: m.name });
        }
        if (helperRole !== undefined) {
          const outcome = await grantHelperRole(client, config.schema, helperRole, { login: values.login === true });
          log.info('helper role granted', {
            schema: config.schema,
            role: outcome.role,
            created: outcome.created,
            login_added: outcome.loginAdded,
          });
        }
      } finally {
        client.release();
      }
    });
    return 0;
  },
};
