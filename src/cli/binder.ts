import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { loadConfig } from '../config.js';
import { coerceError, UsageError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import { isAccountName } from '../names.js';
import { Binder, type AccountInfo } from '../pool/binder.js';
import { DEFAULT_POOL_PREFIX, MAX_SLOTS, POOL_PREFIX_PATTERN, poolFiles, SLOT_NAME_PATTERN, slotNames } from '../pool/names.js';
import { bindRequestHandler } from '../pool/bind-request.js';
import { serveControl } from '../pool/control.js';
import { MachineSlotHost } from '../pool/slot-host.js';
import { readSlotFile } from '../pool/slot-file.js';
import { PoolState } from '../pool/state.js';
import { serveScgi } from '../scgi/server.js';
import { listenOnPath, removeIfOwn } from '../socket-file.js';
import { createClient, createPool } from '../store/connect.js';
import { listenForChanges } from '../store/listener.js';
import { changesChannel } from '../store/sql.js';
import { apacheOwner } from '../tenant-users.js';
import { parseCommand, parseWholeOrZero, parseWholeNumber } from './args.js';
import { print, type Command } from './command.js';

const help = `Usage: plexer binder --slots N --state-dir DIR --data-dir DIR --error-page FILE [--prefix P]
                     [--wait-seconds S] [--min-idle-seconds S] [--spares N] [--spare-idle-seconds S]
                     [--client-redirect] [--config FILE]

Binds accounts to the pool's slots on demand (apache/POOL.md: "Accounts and slots"). Apache starts it as a piped logger
(as root; restarted when it dies, replaced at every graceful reload), fed the slot of every request a slot served,
which is how it knows each slot's idle time. It:
  - answers Apache on DIR/binder.sock (SCGI, root:www-data 0660) when a request's account has no slot: a free
    slot (its process has served nobody), else the least recently used idle one (no request in flight, idle for
    at least --min-idle-seconds, default 0), emptied first (every process of its user killed, the account it
    served locked away from it), is given to the account: DATA-DIR/ACCOUNT and what is in it become the slot
    user's, and DIR/slots/SLOT/binding names the account; a GET or HEAD then goes on, internally redirected,
    to the slot, any other method gets a 307 to repeat (every method with --client-redirect, which the login
    page's sessions need). When every slot stays busy for --wait-seconds (default 10): FILE with 503 and Retry-After, never
    another account's instance;
  - keeps --spares slots free (default one in eight), emptied in the background from accounts idle
    --spare-idle-seconds (default 30) or more;
  - holds an account's slot for plexer group exec (DIR/binder-control.sock, root's alone): the command runs as
    the slot's user, and the slot is busy until it ends;
  - keeps DIR/bindings.txt (Apache's txt: map ACCOUNT SLOT) and DIR/pool.json (what plexer slots shows);
  - empties the slot of an account that is deleted, disabled or given other settings (the store's changes);
  - at start, keeps the bindings DIR/slots names whose data directories agree (a graceful reload loses none) and
    empties every other slot.
--prefix (default ${DEFAULT_POOL_PREFIX}) names the slots' OS users: PREFIX-sN for slot-N.`;

export const command: Command = {
  summary: 'binds accounts to pool slots on demand (run by Apache as a piped logger)',
  help,
  async run(argv) {
    const { values } = parseCommand(argv, {
      slots: { type: 'string' },
      prefix: { type: 'string' },
      'state-dir': { type: 'string' },
      'data-dir': { type: 'string' },
      'error-page': { type: 'string' },
      'wait-seconds': { type: 'string' },
      'min-idle-seconds': { type: 'string' },
      spares: { type: 'string' },
      'spare-idle-seconds': { type: 'string' },
      'client-redirect': { type: 'boolean' },
    });
    if (values.help) return (print(help), 0);
    const slots = parseWholeNumber(values.slots ?? '', '--slots');
    if (slots > MAX_SLOTS) throw new UsageError(`--slots must be at most ${MAX_SLOTS}`);
    const prefix = values.prefix ?? DEFAULT_POOL_PREFIX;
    if (!POOL_PREFIX_PATTERN.test(prefix)) throw new UsageError('--prefix must be 2..12 lower-case letters or digits, a letter first');
    const stateDir = values['state-dir'];
    const dataDir = values['data-dir'];
    const errorPage = values['error-page'];
    if (!stateDir?.startsWith('/') || !dataDir?.startsWith('/') || !errorPage?.startsWith('/'))
      throw new UsageError('--state-dir, --data-dir and --error-page (absolute paths) are required');
    const seconds = (value: string | undefined, fallback: number, what: string) => parseWholeOrZero(value, what) ?? fallback;
    const waitMs = seconds(values['wait-seconds'], 10, '--wait-seconds') * 1000;
    const minIdleMs = seconds(values['min-idle-seconds'], 0, '--min-idle-seconds') * 1000;
    const spares = seconds(values.spares, Math.floor(slots / 8), '--spares');
    if (spares >= slots) throw new UsageError('--spares must be fewer than --slots');
    const spareIdleMs = seconds(values['spare-idle-seconds'], 30, '--spare-idle-seconds') * 1000;
    if (process.getuid?.() !== 0) throw new UsageError('plexer binder runs as root (Apache starts it as a piped logger)');

    const log = createLogger('binder');
    const config = loadConfig({ path: values.config });
    setLogLevel(config.logLevel);
    const files = poolFiles(stateDir);
    const state = new PoolState(slotNames(slots));
    const host = new MachineSlotHost({ prefix, slots: slotNames(slots), stateDir, dataDir, apachePid: process.ppid });
    const db = createPool(config, { applicationName: 'plexer-binder', connectTimeoutMs: 3_000, max: 2 });
    db.on('error', (error) => log.warn('idle database connection lost', { error: error.message }));
    const accountInfo = async (name: string): Promise<AccountInfo | null> => {
      const result = await db.query<{ settings_module: string | null; enabled: boolean }>(
        'SELECT settings_module, enabled FROM daemon_groups WHERE name = $1',
        [name],
      );
      const row = result.rows[0];
      return row ? { settingsModule: row.settings_module, enabled: row.enabled } : null;
    };
    const binder = new Binder(state, host, accountInfo, log, { waitMs, minIdleMs, spares, spareIdleMs });

    await adoptOrEmpty(state, host, files, log);
    host.publish(state);

    const page = readErrorPage(errorPage);
    const server = serveScgi(bindRequestHandler(binder, page, log, { clientRedirect: values['client-redirect'] === true }), log);
    const socketInode = await listenOnPath(server, files.socket, apacheOwner().gid, 0o660);
    const control = serveControl(binder, log);
    const controlInode = await listenOnPath(control, files.control, 0, 0o600);

    // An account changed in the store: a bound one that is gone, disabled or has other settings loses its slot
    // (its next request binds again, with what the store says now).
    const recheck = async (account: string) => {
      const bound = state.slotOf(account);
      if (!bound || bound.phase !== 'bound') return;
      const now = await accountInfo(account);
      const file = readSlotFile(files.binding(bound.name));
      const reason = !now
        ? 'account deleted'
        : !now.enabled
          ? 'account disabled'
          : now.settingsModule !== file?.settings
            ? `settings now ${now.settingsModule ?? 'none'}`
            : undefined;
      if (reason === undefined) return;
      log.info('account changed; releasing its slot', { account, reason });
      await binder.release(account);
    };
    const listener = listenForChanges({
      connect: () => createClient(config, { applicationName: 'plexer-binder-listen' }),
      channel: changesChannel(config.schema),
      log,
      onListening: () => {
        for (const s of state.published())
          recheck(s.account).catch((error) => log.error('recheck failed', { error: coerceError(error).message }));
      },
      onChange: (payload) => {
        const accounts = payload === '*' ? state.published().map((s) => s.account) : payload.startsWith('g:') ? [payload.slice(2)] : [];
        for (const account of accounts) {
          if (isAccountName(account))
            recheck(account).catch((error) => log.error('recheck failed', { account, error: coerceError(error).message }));
        }
      },
    });

    // Apache writes the slot of each request a slot served, when it ends.
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    lines.on('line', (line) => {
      const slot = line.trim();
      if (SLOT_NAME_PATTERN.test(slot)) binder.used(slot);
    });
    const status = setInterval(() => {
      void binder.retrySetAside().then(() => binder.replenish());
      try {
        host.writeStatus(state);
      } catch (error) {
        log.error('cannot write the pool status', { error: coerceError(error).message });
      }
    }, 5_000);
    log.info('binder started', { slots, prefix, socket: files.socket, bound: state.published().length });
    await new Promise<void>((resolve) => lines.on('close', resolve));
    // Apache closed the pipe (stop, or a graceful reload whose new binder already listens): the socket goes only
    // if it is still this process's.
    clearInterval(status);
    server.close();
    control.close();
    removeIfOwn(files.socket, socketInode);
    removeIfOwn(files.control, controlInode);
    await listener.close();
    await db.end();
    log.info('binder stopped');
    return 0;
  },
};

function readErrorPage(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch {
    return Buffer.from('<!doctype html><title>503 Service Unavailable</title><h1>Busy: try again in a few seconds</h1>\n');
  }
}

// The bindings whose slot file and data directory agree (the account's directory is the slot user's) are kept: the
// slots' processes, forked again at a reload, serve them already. Every other slot is emptied before any binding
// starts, so a free slot's process is always one that has served nobody.
async function adoptOrEmpty(
  state: PoolState,
  host: MachineSlotHost,
  files: ReturnType<typeof poolFiles>,
  log: ReturnType<typeof createLogger>,
): Promise<void> {
  const now = Date.now();
  const pending: Array<Promise<void>> = [];
  for (const slot of state.slots.map((s) => s.name)) {
    const file = readSlotFile(files.binding(slot));
    if (file && !state.slotOf(file.account) && host.owns(slot, file.dataDir)) {
      state.adopt(slot, file.account, now);
      // Handed over again: what an earlier plexer left unhanded (files from before the pool) becomes the slot's.
      pending.push(
        host.assign(slot, file).catch((error) => log.error('handing data over failed', { slot, error: coerceError(error).message })),
      );
      continue;
    }
    pending.push(host.empty(slot, file?.account ?? null));
  }
  await Promise.all(pending);
}
