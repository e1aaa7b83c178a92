import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { FileError } from '../errors.js';
import { FileExistsError, writeFileAtomic } from '../files.js';

// A session passphrase for form login: 32 random bytes, base64url, in a file only root can read (Apache's
// parent reads it at start as root; the run user, and with it every tenant, cannot). Kept across restarts so
// sessions survive a reload; delete the file to log everyone out.
export function ensureSessionKeyFile(file: string): string {
  mkdirSync(dirname(file), { recursive: true });
  if (!existsSync(file)) {
    try {
      // exclusive: a key another process wrote meanwhile (and Apache may already use) is kept.
      writeFileAtomic(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, owner: { uid: 0, gid: 0 }, exclusive: true });
    } catch (error) {
      if (!(error instanceof FileExistsError)) throw error;
    }
  }
  // chmod/chown follow symlinks: a key that is not a plain file is refused rather than given to root.
  if (!lstatSync(file).isFile()) throw new FileError(`${file} is not a regular file; remove it and run again`);
  chmodSync(file, 0o600);
  chownSync(file, 0, 0);
  return file;
}

// The secret that names the application sections' credential fields (render/auth.ts), derived from the session
// key so that it is as secret as the key, the same at every render, and new when the key is.
export function formFieldSecret(keyFile: string): string {
  return createHmac('sha256', readFileSync(keyFile, 'utf8').trim()).update('plexer form fields').digest('hex').slice(0, 32);
}

// What the renderer needs of a session key file: the file, and the secret derived from it.
export function sessionKeyOptions(keyFile: string): { sessionPassphraseFile: string; formFieldSecret: string } {
  return { sessionPassphraseFile: keyFile, formFieldSecret: formFieldSecret(keyFile) };
}
