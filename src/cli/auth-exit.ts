// Exit statuses of the authenticator and the role check. mod_authnz_external uses negative codes itself
// (-1 could not run, -2 killed by a signal); these are distinct and positive so the error log tells why.
export const AuthExit = {
  Accepted: 0,
  BadInput: 10,
  NoSuchUser: 11,
  WrongPassword: 12,
  Disabled: 13,
  LockedOut: 14,
  NoRole: 15,
  StoreError: 20,
  TimedOut: 21,
} as const;

// The exit status Apache logs ("Failed (N)") for each outcome of a password check (auth/outcome.ts): any refusal
// or error it does not name (the store unreachable, overloaded, out of time) is a store error.
const REFUSAL_EXIT: Record<string, number> = {
  'invalid-user-name': AuthExit.BadInput,
  'no-such-user': AuthExit.NoSuchUser,
  'wrong-password': AuthExit.WrongPassword,
  disabled: AuthExit.Disabled,
  'locked-out': AuthExit.LockedOut,
};

export function passwordExit(outcome: { verdict: string; reason: string }): number {
  if (outcome.verdict === 'accept') return AuthExit.Accepted;
  return (outcome.verdict === 'refuse' ? REFUSAL_EXIT[outcome.reason] : undefined) ?? AuthExit.StoreError;
}
