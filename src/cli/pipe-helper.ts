// What `plexer authn` and `plexer authz` share as mod_authnz_external "pipe" programs, one process per check.
import type pg from 'pg';
import { loadConfig, type PlexerConfig } from '../config.js';
import { coerceError } from '../errors.js';
import { createLogger, setLogLevel, type LogFields, type Logger } from '../log.js';
import { PipeInputError, readPipeInput, type PipeInput } from '../protocol/authnz-external.js';
import { createPool } from '../store/connect.js';
import { AuthExit } from './auth-exit.js';

// Its logger and configuration, or undefined after logging why not (Apache shows only the exit status). Apache
// waits for the program with no timeout and holds a worker meanwhile: past authn_timeout_ms it refuses.
export function startPipeHelper(name: string, configPath: string | undefined): { config: PlexerConfig; log: Logger } | undefined {
  const log = createLogger(name);
  let config: PlexerConfig;
  try {
    config = loadConfig({ path: configPath });
  } catch (error) {
    log.error('configuration error', { error: coerceError(error).message });
    return undefined;
  }
  setLogLevel(config.logLevel);
  setTimeout(() => {
    log.error('time limit reached; refusing', { limit_ms: config.authnTimeoutMs });
    process.exit(AuthExit.TimedOut);
  }, config.authnTimeoutMs).unref();
  return { config, log };
}

// One connection, made at the first query: input refused before any lookup never reaches the store.
export function helperStore(config: PlexerConfig, applicationName: string): pg.Pool {
  const db = createPool(config, { applicationName, connectTimeoutMs: Math.min(3_000, config.authnTimeoutMs), max: 1 });
  db.on('error', () => undefined);
  return db;
}

// The two lines mod_authnz_external writes, or undefined after logging `refused` (malformed input).
export async function readHelperInput(
  config: PlexerConfig,
  log: Logger,
  refused: string,
  fields: LogFields = {},
): Promise<PipeInput | undefined> {
  try {
    return await readPipeInput(process.stdin, config.authnTimeoutMs);
  } catch (error) {
    if (!(error instanceof PipeInputError)) throw error;
    log.warn(refused, { reason: 'bad-input', detail: error.message, ...fields });
    return undefined;
  }
}
