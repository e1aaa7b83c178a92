import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { coerceError, NotFoundError } from '../errors.js';
import { DEFAULT_STATE_DIR } from '../apache/install-paths.js';
import { poolFiles } from '../pool/names.js';
import type { PoolStatus } from '../pool/slot-host.js';
import { parseCommand } from './args.js';
import { print, table, type Command } from './command.js';

const help = `Usage: plexer slots [--state-dir DIR] [--json]

Shows the pool's slots (plexer apache config --slots N): which account each one serves, since when, and how
long since its last request. plexer binder keeps DIR/pool.json (root:www-data 0640) current at every binding and
every 5 s. DIR is Apache's state directory (default /var/lib/plexer/apache; the demo prints its own).`;

export const command: Command = {
  summary: "show the pool's slots and the accounts bound to them",
  help,
  async run(argv) {
    const { values } = parseCommand(argv, { 'state-dir': { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) return (print(help), 0);
    const file = poolFiles(resolve(values['state-dir'] ?? DEFAULT_STATE_DIR)).status;
    let status: PoolStatus;
    try {
      status = JSON.parse(readFileSync(file, 'utf8')) as PoolStatus;
    } catch (error) {
      throw new NotFoundError(
        `cannot read ${file} (${coerceError(error).message}): is Apache running with a pool (--slots), and is this its --state-dir?`,
      );
    }
    if (values.json) return (print(JSON.stringify(status, null, 2)), 0);
    const rows = [['SLOT', 'STATE', 'ACCOUNT', 'BOUND AT', 'IDLE']];
    for (const s of status.slots) {
      rows.push([s.slot, s.phase, s.account ?? '-', s.boundAt ?? '-', s.idleSeconds === null ? '-' : `${s.idleSeconds}s`]);
    }
    print(table(rows));
    print(`(as of ${status.at})`);
    return 0;
  },
};
