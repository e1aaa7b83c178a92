import bcrypt from 'bcryptjs';
import { timingSafeEqual } from 'node:crypto';

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

// bcryptjs compares its own result internally with a plain loop; comparing the recomputed hash ourselves with
// timingSafeEqual keeps the comparison constant-time whatever the library does.
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  if (!isBcryptHash(hash) || Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return false;
  const salt = hash.slice(0, 29);
  const computed = Buffer.from(await bcrypt.hash(password, salt));
  const expected = Buffer.from(hash);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}

// A user that does not exist costs the same bcrypt work as a wrong password, so response times do not tell
// which names exist. The salt is fixed: only the cost matters for timing.
export function dummyHash(cost: number): string {
  return `$2b$${String(cost).padStart(2, '0')}$CCCCCCCCCCCCCCCCCCCCC.0V3sXv7QnAbH3N3rUCf0Zq4ZyYIqHKe`;
}

// A stored hash below the configured cost (an old import) would make a wrong password for that known user
// quicker to refuse than one for an unknown name (dummyHash at the configured cost): such a refusal also
// pays a dummy verification at the configured cost.
export function refusalNeedsPadding(storedHash: string, cost: number): boolean {
  return (bcryptCost(storedHash) ?? 0) < cost;
}
