import { isUserName } from './names.js';
import { isStorableHash } from './password.js';

export interface HtpasswdEntry {
  line: number;
  user: string;
  hash: string;
}

export interface HtpasswdRejection {
  line: number;
  user: string | null;
  reason: string;
}

// bcrypt entries are imported as they are; htpasswd's MD5 ($apr1$, its default) and SHA-1 ({SHA}) too, since
// the first successful login replaces them with bcrypt (a forced reset of every password would stop a migration).
// crypt() and plain text are refused: authn verifies neither. Each refused line is reported with the reason, so
// the operator can reset those passwords with `plexer user passwd`.
export function parseHtpasswd(text: string): { entries: HtpasswdEntry[]; rejected: HtpasswdRejection[] } {
  const entries: HtpasswdEntry[] = [];
  const rejected: HtpasswdRejection[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '' || raw.startsWith('#')) return;
    const colon = raw.indexOf(':');
    if (colon <= 0) return void rejected.push({ line, user: null, reason: 'not a "user:hash" line' });
    const user = raw.slice(0, colon);
    const hash = raw.slice(colon + 1).trim();
    if (!isUserName(user)) return void rejected.push({ line, user: null, reason: 'invalid user name' });
    if (seen.has(user)) return void rejected.push({ line, user, reason: 'duplicate user name' });
    seen.add(user);
    if (isStorableHash(hash)) return void entries.push({ line, user, hash });
    rejected.push({ line, user, reason: describeUnsupportedHash(hash) });
  });
  return { entries, rejected };
}

function describeUnsupportedHash(hash: string): string {
  if (hash.startsWith('$apr1$')) return 'malformed MD5 ($apr1$) hash';
  if (hash.startsWith('{SHA}')) return 'malformed SHA-1 ({SHA}) hash';
  if (/^\$[156]\$/.test(hash)) return 'crypt() hash: not imported; set a new password with plexer user passwd';
  if (/^\$2[aby]\$/.test(hash)) return 'malformed bcrypt hash';
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return 'DES crypt() hash: not imported (weak); set a new password with plexer user passwd';
  return 'plain text or unknown hash format: not imported';
}
