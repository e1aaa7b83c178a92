import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The package root: bin/, dist/, node_modules/, apache/, src/store/migrations/.
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');

// Where `apache config` keeps Apache's state (pid file, sockets, maps, slots) unless told otherwise, and where the
// accounts' data directories are in it: the one rule the renderer, the CLI and the demo follow.
export const DEFAULT_STATE_DIR = '/var/lib/plexer/apache';
export const dataDirIn = (stateDir: string): string => join(stateDir, 'data');

// What Apache's config names by absolute path (Apache gives its helpers no environment), for a plexer
// installed at `root`.
export interface Runtime {
  root: string;
  plexerCommand: string[];
  wsgiScript: string;
  pythonPath: string;
  errorPagesDir: string;
}

export function runtimeAt(root: string): Runtime {
  return {
    root,
    plexerCommand: [process.execPath, join(root, 'bin/plexer')],
    wsgiScript: join(root, 'apache/wsgi/plexer.wsgi'),
    pythonPath: join(root, 'apache/example'),
    errorPagesDir: join(root, 'apache/errors'),
  };
}
