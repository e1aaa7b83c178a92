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
