import { UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { migrate } from '../store/migrate.js';
import { expectPositionals, parseCommand } from './args.js';
import { print, type Command } from './command.js';
import { loadCommandConfig, withStore } from './store-session.js';

const help = `Usage: plexer db migrate [--config FILE]

Creates or updates plexer's schema (default "plexer") in the configured database. Safe to run again and
from several machines at once: migrations run in one transaction under an advisory lock.`;

export const command: Command = {
  summary: 'create or update the database schema',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, {});
    if (values.help) return print(help), 0;
    const [action] = expectPositionals(positionals, ['action']);
    if (action !== 'migrate') throw new UsageError(`unknown db action "${action}"; see plexer db --help`);
    const config = loadCommandConfig(values.config);
    const applied = await withStore(config, async (pool) => {
      const client = await pool.connect();
      try {
        return await migrate(client, config.schema);
      } finally {
        client.release();
      }
    });
    const log = createLogger('db');
    if (applied.length === 0) log.info('schema up to date', { schema: config.schema });
    for (const m of applied) log.info('migration applied', { schema: config.schema, id: m.id, name: m.name });
    return 0;
  },
};
