import { readFileSync } from 'node:fs';
import { coerceError, PlexerError } from '../errors.js';
import { createLogger } from '../log.js';
import type { Command } from './command.js';

const commands: Record<string, () => Promise<{ command: Command }>> = {
  db: () => import('./db.js'),
  group: () => import('./group.js'),
  user: () => import('./user.js'),
  map: () => import('./map.js'),
  authn: () => import('./authn.js'),
  authz: () => import('./authz.js'),
  authd: () => import('./authd.js'),
  sync: () => import('./sync.js'),
  watchdog: () => import('./watchdog.js'),
  lockout: () => import('./lockout.js'),
  binder: () => import('./binder.js'),
  revoke: () => import('./revoke.js'),
  checker: () => import('./checker.js'),
  slots: () => import('./slots.js'),
  apache: () => import('./apache.js'),
  demo: () => import('./demo.js'),
  doctor: () => import('./doctor.js'),
};

async function usage(): Promise<string> {
  const lines = ['Usage: plexer COMMAND [ARGS] [--config FILE]', '', 'Commands:'];
  for (const [name, load] of Object.entries(commands)) {
    lines.push(`  ${name.padEnd(8)} ${(await load()).command.summary}`);
  }
  lines.push(
    '',
    'Run "plexer COMMAND --help" for a command\'s options, "plexer --version" for the version. Default config file: /etc/plexer/plexer.conf',
  );
  return lines.join('\n');
}

function version(): string {
  // dist/cli/main.js -> the package root, in a checkout and in an installed tarball alike.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    process.stdout.write(`plexer ${version()}\n`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`plexer: unknown command "${name}"\n${await usage()}\n`);
    return 2;
  }
  try {
    return await (await load()).command.run(rest);
  } catch (error) {
    if (error instanceof PlexerError) {
      process.stderr.write(`plexer ${name}: ${error.message}\n`);
      return error.exitCode;
    }
    createLogger(name).error('internal error', { error: coerceError(error).stack ?? String(error) });
    return 1;
  }
}

// Not process.exit(): a map may still have answers queued on a pipe, and exiting would drop them.
process.exitCode = await main(process.argv.slice(2));
