// The user `plexer authn` is checking, once its input is read: whichever way the process then ends (its time
// limit exits from a timer), a refusal without a verdict can be excused for that user (lockout/excuses.ts).
export const checkedUser: { name?: string } = {};
