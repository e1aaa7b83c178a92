import { writeSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

// One line per event on stderr: Apache copies a helper's stderr into its error log, and a map's stdout
// belongs to mod_rewrite alone.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  scope(name: string): Logger;
}

export type LogFields = Record<string, string | number | boolean | null | undefined>;

let minimumLevel: LogLevel = 'info';
let stderrBroken = false;

// When the reader of stderr is gone (Apache stopped, a test runner died), writes fail with EPIPE. That must
// not become an error that is itself logged to stderr: once broken, logging stops.
process.stderr.on('error', () => {
  stderrBroken = true;
});

// A worker thread's process.stderr is relayed through the main thread's event loop, which the map's main
// thread never returns to (it blocks in read(2)): a worker writes fd 2 itself.
function writeLine(line: string): void {
  if (isMainThread) {
    process.stderr.write(line);
    return;
  }
  try {
    writeSync(2, line);
  } catch {
    stderrBroken = true;
  }
}

export function setLogLevel(level: LogLevel): void {
  minimumLevel = level;
}

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(levelRank, value);
}

// Values are quoted when they could break the one-line format, so a hostile user name cannot forge a
// second log line.
function formatValue(value: string | number | boolean | null): string {
  const text = String(value);
  return /^[\w.:/@+-]*$/.test(text) && text !== '' ? text : JSON.stringify(text);
}

// Under systemd (JOURNAL_STREAM is set) the journal stamps every line itself; Apache's error log does not stamp
// what a helper writes to stderr, so there the line carries its own ISO time.
const stampLines = process.env.JOURNAL_STREAM === undefined;

export function formatLine(scope: string, level: LogLevel, event: string, fields: LogFields = {}, now = new Date()): string {
  let line = `${stampLines ? `${now.toISOString()} ` : ''}plexer[${process.pid}] ${scope} ${level}: ${event}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) line += ` ${key}=${formatValue(value)}`;
  }
  return line + '\n';
}

export function createLogger(scope: string): Logger {
  const emit = (level: LogLevel) => (event: string, fields?: LogFields) => {
    if (stderrBroken || levelRank[level] < levelRank[minimumLevel]) return;
    writeLine(formatLine(scope, level, event, fields));
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    scope: (name: string) => createLogger(`${scope}.${name}`),
  };
}
