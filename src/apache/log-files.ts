// The log files a rendered standalone config names. Apache's root parent creates a missing log with its own
// umask (0644 under the usual 022) in a state directory that www-data, and so every tenant, may traverse: the
// login log names every failed login. Made beforehand, root's alone, they keep that mode: Apache keeps the mode
// of an existing file, and its children and WSGI daemons write through descriptors they inherit, never by name.
import { closeSync, constants, fchmodSync, fchownSync, openSync } from 'node:fs';

// ErrorLog and every CustomLog that writes to a file (not "|program"), as absolute paths.
export function fileLogsOf(config: string): string[] {
  const found = new Set<string>();
  for (const m of config.matchAll(/^\s*(?:ErrorLog|CustomLog)\s+"?([^"\s|][^"\s]*)"?/gm)) {
    if (m[1]!.startsWith('/')) found.add(m[1]!);
  }
  return [...found];
}

export function createRootOnlyLog(path: string): void {
  // No O_EXCL: an existing log is kept. O_NOFOLLOW: a planted symlink is refused, never chowned or chmodded.
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    fchownSync(fd, 0, 0);
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}
