import bcrypt from 'bcryptjs';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';

// CommonJS (module.exports = function); its bundled typings declare an ES default export, which is not what Node
// hands an ES module.
const aprMd5 = createRequire(import.meta.url)('apache-md5') as (password: string, salt: string) => string;

// bcrypt reads at most 72 bytes; a longer password would be silently truncated, so it is refused instead.
export const MAX_PASSWORD_BYTES = 72;

export class PasswordPolicyError extends Error {}

export function checkNewPassword(password: string): void {
  if (password.length === 0) throw new PasswordPolicyError('the password is empty');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new PasswordPolicyError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes, which bcrypt cannot use`);
  }
  if (/[\r\n\0]/.test(password)) throw new PasswordPolicyError('the password holds a newline or NUL byte');
}

export async function hashPassword(password: string, cost: number): Promise<string> {
  checkNewPassword(password);
  return bcrypt.hash(password, cost);
}

export function bcryptCost(hash: string): number | null {
  const match = /^\$2[aby]\$(\d\d)\$/.exec(hash);
  return match ? Number(match[1]) : null;
}

export const isBcryptHash = (hash: string): boolean => /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/.test(hash);

// htpasswd's MD5 ($apr1$, its default) and unsalted SHA-1 ({SHA}) hashes, kept only until the user's first
// successful login replaces them with bcrypt (rehash_password, migration 007). The same patterns are the
// users.password_hash CHECK constraint.
export const isApr1Hash = (hash: string): boolean => /^\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$/.test(hash);
export const isSha1Hash = (hash: string): boolean => /^\{SHA\}[A-Za-z0-9+/]{27}=$/.test(hash);
export const isLegacyHash = (hash: string): boolean => isApr1Hash(hash) || isSha1Hash(hash);
export const isStorableHash = (hash: string): boolean => isBcryptHash(hash) || isLegacyHash(hash);

// The slow part of a verification, which authd runs in worker threads (bcrypt-pool.ts): bcrypt, whose salt is the
// stored hash's first 29 characters, and apr1's 1,000 MD5 rounds in plain JavaScript (milliseconds), salted by
// the stored hash itself. {SHA} is one SHA-1 and stays in the caller's thread.
export interface SlowHashes {
  bcrypt(password: string, salt: string): Promise<string>;
  apr1(password: string, salt: string): Promise<string>;
}

const inThisThread: SlowHashes = {
  bcrypt: (password, salt) => bcrypt.hash(password, salt),
  apr1: async (password, salt) => aprMd5(password, salt),
};

// bcryptjs compares its own result internally with a plain loop; comparing the recomputed hash ourselves with
// timingSafeEqual keeps the comparison constant-time whatever the library does. A legacy hash is checked here
// too, so authn and authd accept it; it costs far less than bcrypt, which refusalNeedsPadding makes up for.
export async function verifyPassword(password: string, hash: string, slow: SlowHashes = inThisThread): Promise<boolean> {
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return false;
  let computed: string;
  if (isBcryptHash(hash)) computed = await slow.bcrypt(password, hash.slice(0, 29));
  else if (isApr1Hash(hash)) computed = await slow.apr1(password, hash);
  else if (isSha1Hash(hash)) computed = `{SHA}${createHash('sha1').update(password, 'utf8').digest('base64')}`;
  else return false;
  const [actual, expected] = [Buffer.from(computed), Buffer.from(hash)];
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

// A user that does not exist costs the same bcrypt work as a wrong password, so response times do not tell
// which names exist. The salt is fixed: only the cost matters for timing.
export function dummyHash(cost: number): string {
  return `$2b$${String(cost).padStart(2, '0')}$CCCCCCCCCCCCCCCCCCCCC.0V3sXv7QnAbH3N3rUCf0Zq4ZyYIqHKe`;
}

// A stored hash below the configured cost (an old import, or an $apr1$/{SHA} one, which has no bcrypt cost) would make a wrong password for that known user
// quicker to refuse than one for an unknown name (dummyHash at the configured cost): such a refusal also
// pays a dummy verification at the configured cost.
export function refusalNeedsPadding(storedHash: string, cost: number): boolean {
  return (bcryptCost(storedHash) ?? 0) < cost;
}
