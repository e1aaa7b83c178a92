// The shared secret Apache sends with every check. mod_authnz_fcgi sends the request's whole environment
// (r->subprocess_env after ap_add_common_vars/ap_add_cgi_vars) and nothing else it could be configured to
// add, so the secret travels as an environment variable set before authentication by a server-level
// `SetEnvIf Request_URI ^ PLEXER_AUTHD_SECRET=${PLEXER_AUTHD_SECRET}`. A client cannot forge it: request
// headers only become HTTP_* variables.
//
// One file serves both sides: Apache's parent (root) reads it through `Include`, where it is a `Define`;
// the daemon reads it through its group. Apache's workers (www-data), its helpers and the tenants cannot.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { coerceError, ConfigError, PlexerError } from '../errors.js';

export const SECRET_PARAM = 'PLEXER_AUTHD_SECRET';
const DEFINE = /^\s*Define\s+PLEXER_AUTHD_SECRET\s+(\S+)\s*$/;
const VALUE = /^[A-Za-z0-9]{32,256}$/;

export class SharedSecret {
  private readonly digest: Buffer;

  constructor(secret: string) {
    this.digest = sha256(secret);
  }

  // Constant time in the secret: both sides are hashed to the same length first, so neither the length nor a
  // common prefix of a guess shows in the timing.
  matches(candidate: string | undefined): boolean {
    if (candidate === undefined) return false;
    return timingSafeEqual(sha256(candidate), this.digest);
  }
}

const sha256 = (text: string) => createHash('sha256').update(text, 'latin1').digest();

export function readSecretFile(path: string): SharedSecret {
  let text: string;
  let mode: number;
  try {
    const fd = openSync(path, 'r');
    try {
      mode = fstatSync(fd).mode;
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new ConfigError(
      `--secret-file: cannot read ${path} (${coerceError(error).message}); create it as root with ` +
        `"plexer authd --new-secret ${path}", then chgrp it to the daemon's group`,
    );
  }
  // Anyone who can read it can ask the daemon about any password; anyone who can write it can lock Apache out.
  if ((mode & 0o007) !== 0 || (mode & 0o020) !== 0) {
    throw new ConfigError(
      `--secret-file: ${path} is mode ${(mode & 0o777).toString(8).padStart(4, '0')}; it must not be ` +
        `readable by others nor writable by its group: chmod 0640 ${path}`,
    );
  }
  const values = text
    .split('\n')
    .map((line) => DEFINE.exec(line)?.[1])
    .filter((v): v is string => v !== undefined);
  if (values.length !== 1 || !VALUE.test(values[0]!)) {
    throw new ConfigError(
      `--secret-file: ${path} must hold exactly one line "Define ${SECRET_PARAM} <32 to 256 letters ` +
        `and digits>"; write a new one with "plexer authd --new-secret FILE"`,
    );
  }
  return new SharedSecret(values[0]!);
}

export function secretFileText(secret = randomBytes(32).toString('hex')): string {
  return [
    '# plexer authd: the secret Apache sends with every password and role check (see "plexer authd --help").',
    '# Apache reads it as root through Include; plexer authd reads it through its group. Keep it 0640',
    "# root:<the daemon's group>. After replacing it: apache2ctl graceful, then restart plexer authd.",
    `Define ${SECRET_PARAM} ${secret}`,
    '',
  ].join('\n');
}

// Never overwrites: a new secret on one side only makes every check fail until both sides reload.
export function writeNewSecretFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o640);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new PlexerError(`${path} already exists; remove it first to replace the secret`, 1);
    throw new PlexerError(`cannot create ${path}: ${coerceError(error).message}`, 1);
  }
  try {
    writeSync(fd, secretFileText());
  } finally {
    closeSync(fd);
  }
}
