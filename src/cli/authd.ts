import { rmSync, statSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { isAbsolute } from 'node:path';
import { CallerGate } from '../authd/gate.js';
import { startAuthService } from '../authd/start.js';
import { createAuthdHandler, ROLES_PARAM } from '../authd/handler.js';
import { assertPeerLookupWorks, NetlinkOwners, ProcOwners, selfTest, uidOf, type PeerOwners } from '../authd/peer.js';
import { readSecretFile, writeNewSecretFile, type SharedSecret } from '../authd/secret.js';
import { loadConfig, type PlexerConfig } from '../config.js';
import { coerceError, ConfigError, PlexerError, UsageError } from '../errors.js';
import { createFastCgiServer } from '../fastcgi/server.js';
import { createLogger, setLogLevel, type Logger } from '../log.js';
import { describeTarget } from '../store/connect.js';
import { parseCommand } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer authd --listen 127.0.0.1:PORT|/path/to.sock [--secret-file FILE] [--apache-user USER]
                    [--peer-check uid|off] [--config FILE]
       plexer authd --new-secret FILE

A long-running FastCGI authorizer for Apache's mod_authnz_fcgi: the password and role checks of
"plexer authn" / "plexer authz" without a process start per request, with a cache of recently verified
credentials (HMAC digests, never passwords) emptied by the store's change notifications, at most
authn_timeout_ms per check, and bcrypt in worker threads (one per core but one, at most 4). Stops on SIGTERM/SIGINT.
mod_authnz_fcgi only connects over TCP (fcgi://host:port/); a Unix socket serves other FastCGI clients.

Only Apache may ask. Any other caller gets 500 to every request, whatever the user, password or roles, and
nothing is recorded (no failure, no lockout); one line per refused connection is logged (rate-limited):
  --apache-user USER  the user Apache's workers run as (default www-data; a name or a uid). Over TCP, only a
                      connection whose client socket belongs to USER or root is answered: other local users,
                      tenants included, are refused even if they find the port and the secret. The owner comes
                      from the kernel's sock_diag (a python3 helper: /usr/bin/python3 and AF_NETLINK needed,
                      ~4 µs a check), else from /proc/self/net/tcp{,6} (milliseconds a check under load). The
                      daemon must run on the same host as Apache.
  --secret-file FILE  every request must also carry the secret defined in FILE, so that processes running as
                      USER without being Apache (CGI scripts, maps, cron jobs) are refused too. FILE holds one
                      line "Define PLEXER_AUTHD_SECRET <hex>"; Apache's parent reads it as root through
                      Include, the daemon through its group. It must not be readable by others.
  --peer-check uid|off  uid (default) as above; off skips the socket-owner check. Only with --secret-file,
                      and only if a firewall rule already limits who may connect to the port.
  --new-secret FILE   write a new secret file (mode 0640; never overwrites) and exit. Run it as root, then
                      chgrp FILE to the daemon's group.

  # once, as root: plexer authd --new-secret /etc/plexer/authd-secret.conf
  #                chgrp plexer-authd /etc/plexer/authd-secret.conf
  Include /etc/plexer/authd-secret.conf
  # Server level: SetEnvIf runs before authentication (SetEnv runs after it: too late). mod_authnz_fcgi
  # sends the request's environment; a client's headers only become HTTP_* variables, so none can carry it.
  SetEnvIf Request_URI ^ PLEXER_AUTHD_SECRET=\${PLEXER_AUTHD_SECRET}
  # The handler would get it too (CGI and WSGI environ, SSI), and error pages as REDIRECT_*. Drop it after
  # authentication, as the FIRST rule of every <Directory> that runs code (mod_env's UnsetEnv cannot: it
  # only removes what SetEnv/PassEnv added):
  <Directory /srv/app>
    RewriteEngine On
    RewriteRule ^ - [E=!PLEXER_AUTHD_SECRET,E=!REDIRECT_PLEXER_AUTHD_SECRET]
  </Directory>
  AuthnzFcgiDefineProvider authn plexer       fcgi://127.0.0.1:9801/
  AuthnzFcgiDefineProvider authz plexer-roles fcgi://127.0.0.1:9801/
  <Location /app>
    AuthType Basic
    AuthName "plexer"
    AuthBasicProvider plexer
    Require valid-user
  </Location>
  <Location /admin>
    # mod_authnz_fcgi takes no arguments after "Require NAME": the roles come from ${ROLES_PARAM}.
    SetEnvIf Request_URI ^ ${ROLES_PARAM}=admins
    Require plexer-roles
    AuthzSendForbiddenOnFailure On
  </Location>`;

export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseListen(value: string): ListenAddress {
  if (value.startsWith('/')) {
    if (!isAbsolute(value) || value.length > 100)
      throw new UsageError('--listen: a Unix socket path must be absolute and at most 100 characters');
    return { kind: 'unix', path: value };
  }
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--listen: expected HOST:PORT (e.g. 127.0.0.1:9801) or an absolute socket path, got "${value}"`);
  }
  return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export const command: Command = {
  summary: 'FastCGI authorizer daemon for mod_authnz_fcgi (password and role checks, cached)',
  help,
  async run(argv) {
    const { values, positionals } = parseCommand(argv, {
      listen: { type: 'string' },
      'secret-file': { type: 'string' },
      'apache-user': { type: 'string' },
      'new-secret': { type: 'string' },
      'peer-check': { type: 'string' },
    });
    if (values.help) return (print(help), 0);
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (values['new-secret'] !== undefined) {
      if (values.listen !== undefined) throw new UsageError('--new-secret writes a file and exits; it takes no --listen');
      if (!isAbsolute(values['new-secret'])) throw new UsageError("--new-secret: give an absolute path (Apache's Include needs one)");
      writeNewSecretFile(values['new-secret']);
      print(
        `wrote ${values['new-secret']} (mode 0640). Next: chgrp it to plexer authd's group, Include it in Apache's ` +
          'config and start plexer authd with --secret-file (see plexer authd --help).',
      );
      return 0;
    }
    if (!values.listen) throw new UsageError('--listen is required');
    const address = parseListen(values.listen);
    const log = createLogger('authd');
    let config: PlexerConfig;
    let gate: CallerGate;
    try {
      config = loadConfig({ path: values.config });
      const apacheUser = values['apache-user'] ?? 'www-data';
      const peerCheck = values['peer-check'] ?? 'uid';
      if (peerCheck !== 'uid' && peerCheck !== 'off') throw new UsageError(`--peer-check: expected uid or off, got "${peerCheck}"`);
      const secret: SharedSecret | undefined = values['secret-file'] !== undefined ? readSecretFile(values['secret-file']) : undefined;
      if (peerCheck === 'off' && !secret) {
        throw new UsageError('--peer-check off needs --secret-file: without either, every local user could ask about any password');
      }
      // root too: Apache's parent, and an operator's own checks, run as root; root can read the secret anyway.
      const allowedUids = peerCheck === 'uid' ? new Set([0, uidOf(apacheUser)]) : undefined;
      const owners = allowedUids && address.kind === 'tcp' ? await peerOwners(log) : undefined;
      if (!secret) log.warn('no --secret-file: any process running as the Apache user or root may ask', { apache_user: apacheUser });
      gate = new CallerGate({ ...(allowedUids ? { allowedUids } : {}), ...(owners ? { owners } : {}), ...(secret ? { secret } : {}), log });
    } catch (error) {
      if (!(error instanceof PlexerError)) throw error;
      log.error('configuration error', { error: error.message });
      return 2;
    }
    setLogLevel(config.logLevel);
    return serve(config, address, log, gate);
  },
};

// The kernel's sock_diag through python3 when it works here; else the /proc walk, correct but slow under load.
async function peerOwners(log: Logger): Promise<PeerOwners> {
  const netlink = new NetlinkOwners();
  if (await selfTest(netlink)) return netlink;
  netlink.close();
  assertPeerLookupWorks();
  const proc = new ProcOwners();
  if (!(await selfTest(proc))) {
    throw new ConfigError(
      "cannot find the owner of a loopback connection (neither through python3's AF_NETLINK sock_diag " +
        'nor /proc/self/net/tcp): --peer-check uid cannot work here; see plexer authd --help',
    );
  }
  log.warn(
    'socket owners found through /proc/self/net/tcp, which costs milliseconds per check under load: ' +
      'install python3 and allow AF_NETLINK (systemd: RestrictAddressFamilies) for the fast path',
  );
  return proc;
}

async function serve(config: PlexerConfig, address: ListenAddress, log: Logger, gate: CallerGate): Promise<number> {
  // A long-running process: a bug in one request must not end it, but must be seen.
  process.on('unhandledRejection', (error) => log.error('unexpected rejection', { error: String(error) }));

  const { service, close } = startAuthService(config, log, 'plexer-authd');

  const server = createFastCgiServer({
    handler: createAuthdHandler({ service, log, deadlineMs: config.authnTimeoutMs, gate }),
    admit: (connection) => gate.admit(connection),
    log,
  });
  try {
    await listen(server, address);
  } catch (error) {
    log.error('cannot listen', { address: describe(address), error: coerceError(error).message });
    await close();
    gate.close();
    return 1;
  }
  log.info('listening', { address: describe(address), store: describeTarget(config), cache_ttl_ms: config.cacheTtlMs });

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info('stopping', { signal, ...service.stats(), callers_refused: gate.refused });
  // Stop accepting; checks in flight finish (each is bounded by authn_timeout_ms), then the store goes.
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  await Promise.race([closed, new Promise((r) => setTimeout(r, config.authnTimeoutMs + 1_000).unref())]);
  await close();
  gate.close();
  if (address.kind === 'unix') rmSync(address.path, { force: true });
  return 0;
}

function describe(address: ListenAddress): string {
  return address.kind === 'unix' ? address.path : `${address.host}:${address.port}`;
}

async function listen(server: net.Server, address: ListenAddress): Promise<void> {
  if (address.kind === 'unix') await removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (address.kind === 'tcp') server.listen({ host: address.host, port: address.port }, done);
    else server.listen(address.path, done);
  });
  // Owner and group only: put Apache's user in the daemon's group to connect.
  if (address.kind === 'unix') chmodSync(address.path, 0o660);
}

// A socket file left by a killed daemon blocks listen(); one that still answers belongs to a live daemon and
// is left alone (listen then fails with EADDRINUSE).
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket = false;
  try {
    isSocket = statSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => (probe.destroy(), resolve(true)));
    probe.once('error', () => resolve(false));
  });
  if (!alive) rmSync(path, { force: true });
}
