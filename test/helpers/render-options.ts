// An installation as the tests of the generated config render it (Debian's paths, plexer under /opt): each test
// adds its accounts and the options it is about.
import type { ApacheConfigOptions } from '../../src/apache/render/index.js';

export const INSTALL: Omit<ApacheConfigOptions, 'accounts'> = {
  listenAddress: '127.0.0.1',
  port: 8080,
  serverName: 'localhost',
  stateDir: '/var/lib/plexer/apache',
  plexerCommand: ['/usr/bin/node', '/opt/plexer/bin/plexer'],
  configFile: '/etc/plexer/plexer.conf',
  wsgiScript: '/opt/plexer/apache/wsgi/plexer.wsgi',
  pythonPath: '/opt/plexer/apache/example',
  errorPagesDir: '/opt/plexer/apache/errors',
  mapUser: 'www-data:www-data',
  tls: false,
  authCacheTimeoutSeconds: 60,
};
