// Tests wait on conditions, never on time: poll `condition` until it holds (returns a truthy value, which is
// returned) or `timeoutMs` passes, then fail naming what was awaited.
export async function waitFor<T>(condition: () => T | Promise<T>, timeoutMs: number, what: string, pollMs = 20): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
