// Only Apache may ask. Without this, anyone who can connect to the port — any local user, tenants' code
// included — could test passwords and roles at the daemon's speed (a password oracle that lockout cannot
// slow, since the caller also chooses REMOTE_ADDR) and lock out any user by recording failures on purpose.
// Two independent checks, both before anything reaches the store:
//   1. the connection's client socket belongs to Apache's run user (or root) — see peer.ts. Holds against
//      every other local user whatever they know, even the secret;
//   2. the request carries the shared secret (secret.ts). Holds against processes that run as Apache's
//      user without being Apache (CGI scripts, maps, cron jobs as www-data).
// A refused caller learns nothing: the same answer whatever the user, password or roles, and no failure is
// recorded.
import type { FastCgiConnection, FastCgiRequest } from '../fastcgi/server.js';
import type { Logger } from '../log.js';
import { ProcOwners, PROC_NET, type PeerOwners } from './peer.js';
import { SECRET_PARAM, type SharedSecret } from './secret.js';

export type Refusal = 'no-connection' | 'peer-not-local' | 'peer-uid' | 'no-secret' | 'wrong-secret';

export interface CallerGateOptions {
  // Users whose sockets may ask; checked on TCP only (a Unix socket is guarded by its file mode). Absent:
  // not checked (--peer-check off).
  allowedUids?: ReadonlySet<number>;
  // When set, every request must carry it.
  secret?: SharedSecret;
  log: Logger;
  // How socket owners are found (default: the /proc walk in procNet).
  owners?: PeerOwners;
  procNet?: string;
  // Refusals logged per window; the rest are counted into the next line.
  logLimit?: number;
  logWindowMs?: number;
  now?: () => number;
}

interface ConnectionVerdict {
  // The owner of the peer's socket, looked up once per connection.
  identity?: Promise<{ uid?: number; refusal?: Refusal }>;
  logged: boolean;
}

export class CallerGate {
  private readonly verdicts = new WeakMap<FastCgiConnection, ConnectionVerdict>();
  private readonly options: Required<Omit<CallerGateOptions, 'secret' | 'allowedUids' | 'owners'>> &
    Pick<CallerGateOptions, 'secret' | 'allowedUids'>;
  private readonly owners: PeerOwners;
  // Per reason: a flood of one kind of refusal must not hide another.
  private readonly budgets = new Map<Refusal, { windowStart: number; logged: number; suppressed: number }>();
  refused = 0;

  constructor(options: CallerGateOptions) {
    this.options = { procNet: PROC_NET, logLimit: 10, logWindowMs: 10_000, now: Date.now, ...options };
    this.owners = options.owners ?? new ProcOwners(this.options.procNet);
  }

  // undefined: let the request through. The secret is checked first: it costs nothing, while the socket
  // lookup costs milliseconds of kernel time, which a caller without the secret must not be able to make us
  // spend.
  async check(request: FastCgiRequest): Promise<Refusal | undefined> {
    const { connection } = request;
    if (!connection) return this.refuse(undefined, 'no-connection', { logged: false });
    let verdict = this.verdicts.get(connection);
    if (!verdict) {
      verdict = { logged: false };
      this.verdicts.set(connection, verdict);
    }
    const { secret } = this.options;
    if (secret) {
      const sent = request.params.get(SECRET_PARAM);
      if (!secret.matches(sent)) return this.refuse(connection, sent === undefined ? 'no-secret' : 'wrong-secret', verdict);
    }
    if (!this.options.allowedUids) return undefined;
    verdict.identity ??= this.identify(connection, this.options.allowedUids);
    const { uid, refusal } = await verdict.identity;
    if (refusal) return this.refuse(connection, refusal, verdict, uid);
    return undefined;
  }

  // At connect, before anything the caller sends is read: the owner of its socket (the secret comes later, with
  // the request). false: the connection is closed unanswered, so a caller that may not ask holds no request slot
  // and no memory, however slowly it sends.
  async admit(connection: FastCgiConnection): Promise<boolean> {
    if (!this.options.allowedUids) return true;
    const verdict: ConnectionVerdict = { logged: false, identity: this.identify(connection, this.options.allowedUids) };
    this.verdicts.set(connection, verdict);
    const { uid, refusal } = await verdict.identity!;
    if (refusal === undefined) return true;
    this.refuse(connection, refusal, verdict, uid);
    return false;
  }

  close(): void {
    this.owners.close();
  }

  private async identify(connection: FastCgiConnection, allowedUids: ReadonlySet<number>): Promise<{ uid?: number; refusal?: Refusal }> {
    const { remoteAddress, remotePort, localAddress, localPort } = connection;
    if (remoteAddress === undefined) return {}; // Unix socket: its file mode decides who connects.
    if (remotePort === undefined || localAddress === undefined || localPort === undefined) return { refusal: 'peer-not-local' };
    const uid = await this.owners
      .lookup({ address: remoteAddress, port: remotePort }, { address: localAddress, port: localPort })
      .catch(() => undefined);
    if (uid === undefined) return { refusal: 'peer-not-local' };
    if (!allowedUids.has(uid)) return { uid, refusal: 'peer-uid' };
    return { uid };
  }

  // One line per refused connection, at most logLimit per reason and window: a caller looping on the port
  // must not be able to fill the journal.
  private refuse(connection: FastCgiConnection | undefined, refusal: Refusal, verdict: ConnectionVerdict, uid?: number): Refusal {
    this.refused++;
    if (verdict.logged) return refusal;
    verdict.logged = true;
    const now = this.options.now();
    let budget = this.budgets.get(refusal);
    if (!budget || now - budget.windowStart >= this.options.logWindowMs) {
      budget = { windowStart: now, logged: 0, suppressed: budget?.suppressed ?? 0 };
      this.budgets.set(refusal, budget);
    }
    if (budget.logged >= this.options.logLimit) {
      budget.suppressed++;
      return refusal;
    }
    budget.logged++;
    const suppressed = budget.suppressed;
    budget.suppressed = 0;
    this.options.log.warn('caller refused: not Apache', {
      reason: refusal,
      peer: connection?.remoteAddress === undefined ? 'unix' : `${connection.remoteAddress}:${connection.remotePort}`,
      uid,
      ...(suppressed > 0 ? { not_logged_before: suppressed } : {}),
    });
    return refusal;
  }
}
