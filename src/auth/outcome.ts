// What a password or role check answers: authn and authz turn it into an exit status, authd into an HTTP status.
export type Verdict = 'accept' | 'refuse' | 'error';

export interface Outcome {
  verdict: Verdict;
  // Why, for the log and the exit status: verified, cached, wrong-password, no-such-user, invalid-user-name,
  // disabled, locked-out, no-role, store-error, …
  reason: string;
}

export const accept = (reason: string): Outcome => ({ verdict: 'accept', reason });
export const refuse = (reason: string): Outcome => ({ verdict: 'refuse', reason });
export const failure = (reason: string): Outcome => ({ verdict: 'error', reason });
