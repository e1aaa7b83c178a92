import { isUserName } from './names.js';
import { isBcryptHash } from './password.js';

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

// Only bcrypt entries are imported: plexer's authenticator verifies bcrypt and nothing else, and an MD5 ($apr1$),
// SHA-1 ({SHA}) or crypt() hash is too weak to keep. Each refused line is reported with the reason, so the
// operator can reset those passwords with `plexer user passwd`.
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
    if (isBcryptHash(hash)) return void entries.push({ line, user, hash });
    rejected.push({ line, user, reason: describeUnsupportedHash(hash) });
  });
  return { entries, rejected };
}

function describeUnsupportedHash(hash: string): string {
  if (hash.startsWith('$apr1$')) return 'MD5 ($apr1$) hash: not imported (weak); set a new password with plexer user passwd';
  if (hash.startsWith('{SHA}')) return 'SHA-1 ({SHA}) hash: not imported (weak, unsalted); set a new password with plexer user passwd';
  if (/^\$[156]\$/.test(hash)) return 'crypt() hash: not imported; set a new password with plexer user passwd';
  if (/^\$2[aby]\$/.test(hash)) return 'malformed bcrypt hash';
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return 'DES crypt() hash: not imported (weak); set a new password with plexer user passwd';
  return 'plain text or unknown hash format: not imported';
}
