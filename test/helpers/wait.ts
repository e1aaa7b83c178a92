// Tests wait on conditions, never on time: poll `condition` until it holds (returns a truthy value, which is
// returned) or `timeoutMs` passes, then fail naming what was awaited (`what` as a function: read at the
// failure, so it can say what was seen last).
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  timeoutMs: number,
  what: string | (() => string),
  pollMs = 20,
): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
