// Typed errors carry the exit status a command should end with, so every command maps failures the same way:
// 1 = refused or not found, 2 = usage or configuration.
export class PlexerError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class UsageError extends PlexerError {
  constructor(message: string) {
    super(message, 2);
  }
}

export class ConfigError extends PlexerError {
  constructor(message: string) {
    super(message, 2);
  }
}

export class NotFoundError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

export class RefusedError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

export class StoreUnavailableError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

// A file or directory plexer must write could not be (permissions, a full disk, a missing directory).
export class FileError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

// An OS account that cannot run a tenant (root, Apache's own user, missing, or in a privileged group).
export class RunAsError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

// PostgreSQL refused an operation for lack of a privilege (SQLSTATE 42501): a configuration matter — which role
// connects, or a missing `plexer db grant` — not a transient outage.
export class PermissionDeniedError extends PlexerError {
  constructor(message: string) {
    super(message, 2);
  }
}

// A service plexer starts itself (the demo's Apache or PostgreSQL) did not come up: the reason in a few lines and
// the log that has the rest.
export class ServiceStartError extends PlexerError {
  constructor(message: string) {
    super(message, 1);
  }
}

// What a catch clause holds, as an Error: JavaScript lets anything be thrown (a string, a rejection with
// undefined), and a log line or a wrapped message needs an Error's message either way.
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  const message =
    typeof thrown === 'object' && thrown !== null && 'message' in thrown && typeof thrown.message === 'string'
      ? thrown.message
      : `non-error thrown: ${describe(thrown)}`;
  return new Error(message, { cause: thrown });
}

// String() itself throws for an object without a prototype.
function describe(thrown: unknown): string {
  try {
    return String(thrown);
  } catch {
    return typeof thrown;
  }
}
