// `pending`'s value, or `late()`'s once `ms` have passed first. The work itself goes on (a store query or a
// bcrypt round cannot be interrupted); only its answer is no longer waited for.
export async function withDeadline<T>(pending: Promise<T>, ms: number, late: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(late()), ms);
  });
  try {
    return await Promise.race([pending, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
