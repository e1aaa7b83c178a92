// plexer lockout's daemon (src/cli/lockout.ts parses its options): reads Apache's log lines of refused logins on
// stdin, counts each in the store, keeps the lock files in force, and serves the 401 page that counts a refusal
// before it is answered.
import { sweepExcuses, takeExcuse } from './excuses.js';
import { lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadConfig } from '../config.js';
import { coerceError } from '../errors.js';
import { createLogger, setLogLevel, type Logger } from '../log.js';
import { FailureEstimate } from './estimate.js';
import { followLockouts } from './follow.js';
import { LockMirror } from './lock-mirror.js';
import { isOnTmpfs, LockDirectory, prepareLockDir, REFUSAL_SOCKET, tmpfsAdvice } from './lock-files.js';
import { isUserName } from '../names.js';
import { knownSubject } from '../store/login-failures.js';
import { createPool } from '../store/connect.js';
import {
  addressOnly,
  clientAddress,
  countFailure,
  exemptKnown,
  lookedUp,
  subjectsOf,
  throttleOf,
  type Subjects,
} from '../store/throttle.js';
import { serveRefusalPage } from './refusal-page.js';
import { uidOf } from '../authd/peer.js';

// Lines waiting for the store; beyond this a flood is dropped (and said so) rather than let the pipe fill,
// which would stall Apache's workers as they log.
const MAX_PENDING = 1_000;
// Clients (user + address) whose refusals the page has counted and whose log lines have not come yet.
const MAX_PAGE_KEYS = 10_000;

// The page Apache sends with a 401. Unreadable: a bare one, so that refusals are still counted before they leave.
function readPage(file: string, log: Logger): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    log.error('cannot read the refusal page; serving a bare one', { file, error: coerceError(error).message });
    return Buffer.from('<!doctype html><title>401 Unauthorized</title><h1>Unauthorized</h1>\n');
  }
}

export interface LockoutLoggerOptions {
  lockDir: string;
  // The 401 page to serve on LOCK-DIR/refused.sock; unset: counted from the log lines alone.
  pageFile?: string;
  // Who it runs as once the directory is made (when started as root).
  user: string;
  configPath?: string;
}

export async function runLockoutLogger(o: LockoutLoggerOptions): Promise<number> {
  const { lockDir, pageFile, user } = o;
  const pageSocket = pageFile === undefined ? undefined : join(lockDir, REFUSAL_SOCKET);
  const log = createLogger('lockout');
  const pageBody = pageFile === undefined ? undefined : readPage(pageFile, log);
  const config = loadConfig({ path: o.configPath });
  setLogLevel(config.logLevel);
  const throttle = throttleOf(config);

  // Root only for the directory: counting and the files need no more than Apache's user.
  const root = process.getuid?.() === 0 && process.setuid !== undefined && process.setgid !== undefined;
  const uid = root ? uidOf(user) : undefined;
  if (uid !== undefined) prepareLockDir(lockDir, uid);
  else mkdirSync(lockDir, { recursive: true, mode: 0o711 });
  if (!isOnTmpfs(lockDir))
    log.warn(
      `the lock directory is not on tmpfs: under other processes' fsyncs a lock file can take tens of ms to make, and every 401 waits for it; ${tmpfsAdvice(lockDir)}`,
      { dir: lockDir },
    );
  if (uid !== undefined) {
    process.setgid!(user);
    process.setuid!(uid);
  }

  const db = createPool(config, { applicationName: 'plexer-lockout', connectTimeoutMs: 3_000, max: 4 });
  db.on('error', (error) => log.warn('idle database connection lost', { error: error.message }));
  const files = new LockDirectory(lockDir);
  let syncQueued = false;
  // Set when Apache closes the pipe: at a graceful reload the logger that replaces this one already keeps the
  // directory, and a last sync from here would delete the lock files it made that this one has not heard of.
  let replaced = false;
  const sync = () => {
    if (syncQueued || replaced) return;
    syncQueued = true;
    setImmediate(() => {
      syncQueued = false;
      if (replaced) return;
      try {
        files.sync([...lockouts.mirror.lockedNow(), ...early.lockedNow()]);
      } catch (error) {
        log.error('cannot update lock files', { dir: lockDir, error: coerceError(error).message });
      }
    });
  };
  // Lockouts this process started itself, before the store's message confirms them: kept apart from the
  // mirror, which forgets everything at each reconnection until it has read the store again. A message (an
  // unlock, a TRUNCATE), their end, or the store's count not bearing them out (countInStore) removes them.
  const early = new LockMirror();
  const lockouts = followLockouts(config, db, log, (payload) => {
    if (payload !== undefined) early.apply(payload);
    sync();
  });
  const estimate = new FailureEstimate();
  // Lockouts end by themselves: their files go within a second. The directory itself is read again every 30 s.
  let ticks = 0;
  const expiry = setInterval(() => {
    if (++ticks % 30 === 0 && !replaced) {
      files.reread();
      sweepExcuses(lockDir);
    }
    sync();
  }, 1_000);

  let pending = 0;
  let dropped = 0;
  let storeQueue: Promise<void> = Promise.resolve();
  // Written here and now, not at the next sync: the guesser's next request is already on its way.
  const lockNow = (subjects: string[]) => {
    for (const subject of subjects) {
      early.set(subject, Date.now() + throttle.lockSeconds * 1_000);
      try {
        // A name locked from everywhere: the addresses she logs in from first (they keep her in), then the lock.
        if (subject.startsWith('user:')) {
          const known = knownSubject(subject.slice('user:'.length), '');
          for (const entry of lockouts.mirror.lockedNow()) if (entry.startsWith(known)) files.write(entry);
        }
        files.write(subject);
      } catch (error) {
        log.error('cannot write a lock file', { subject, error: coerceError(error).message });
      }
    }
  };
  const subjectsFor = (user: string, address: string) =>
    isUserName(user) ? subjectsOf(user, address, throttle) : addressOnly(address, throttle);
  // The part of a count that must happen before the guesser's next request: the expected count, and the lock
  // file when it reaches a limit. Undefined when a lockout already answered this refusal (as authn: a refusal
  // while locked out is not another guess, the lockout answered it, not a password).
  const countEarly = (user: string, address: string): Subjects | undefined => {
    // authn refused without comparing the password (excuses.ts): no guess.
    if (takeExcuse(lockDir, user, address)) return undefined;
    const subjects = subjectsFor(user, address);
    const found = [...lockouts.mirror.locked(lookedUp(subjects)), ...early.locked(subjects.all)];
    if (exemptKnown(found, subjects).length > 0) return undefined;
    // The store answers after the guesser's next request has arrived: the file is made as soon as the count this
    // process expects reaches a limit, and the store's count corrects the guess.
    lockNow(estimate.add(subjects));
    return subjects;
  };
  // The store's count, one failure at a time: a burst of guesses must not also become a burst of queries that
  // takes the CPU this process needs to read the next lines at once.
  const countInStore = async (subjects: Subjects) => {
    const answered = new Set<string>();
    const limitOf = new Map(subjects.limits.flatMap(({ subjects: group, maxFailures }) => group.map((s) => [s, maxFailures] as const)));
    const stored = storeQueue.then(() =>
      countFailure(db, subjects, throttle, log, (subject, failures) => {
        estimate.counted(subject, failures);
        answered.add(subject);
        // The store is the one count: an early lock it does not bear out once every failure sent is answered
        // (a successful login reset the count meanwhile, or its window had passed) is lifted. Otherwise it would
        // hold, unseen by \`user list\` and untouched by \`user unlock\` (the store has no lockout to remove), until
        // it ends by itself.
        if (failures < (limitOf.get(subject) ?? Infinity) && estimate.pending(subject) === 0 && early.locked([subject]).length > 0) {
          early.set(subject, 0);
          sync();
        }
      }),
    );
    storeQueue = stored.then(
      () => undefined,
      () => undefined,
    );
    try {
      lockNow(await stored);
    } finally {
      estimate.settle(subjects.all.filter((subject) => !answered.has(subject)));
    }
  };
  // Refusals whose early count the refusal page made, by "user address", waiting for their log line (which
  // follows the page): that line then only takes the count to the store.
  const countedByPage = new Map<string, Array<Subjects | undefined>>();
  // Apache escapes what it logs, so a name that is no user name reads differently in the page request and in
  // the log line: both count only the address, and are matched by it.
  const keyOf = (user: string, address: string) => (isUserName(user) ? `${user} ${address}` : ` ${address}`);
  const onPage = (user: string, address: string) => {
    if (throttle.maxFailures === 0) return;
    const key = keyOf(user, address);
    const waiting = countedByPage.get(key) ?? [];
    // Page requests whose log lines do not come (a flood past MAX_PENDING drops lines) must not pin memory: past
    // these bounds a refusal is counted from its log line alone, after its answer.
    if (waiting.length >= MAX_PENDING || (waiting.length === 0 && countedByPage.size >= MAX_PAGE_KEYS)) return;
    waiting.push(countEarly(user, address));
    countedByPage.set(key, waiting);
  };
  const count = async (user: string, address: string) => {
    const key = keyOf(user, address);
    const waiting = countedByPage.get(key);
    let subjects: Subjects | undefined;
    if (waiting !== undefined && waiting.length > 0) {
      subjects = waiting.shift();
      if (waiting.length === 0) countedByPage.delete(key);
    } else {
      subjects = countEarly(user, address);
    }
    if (subjects !== undefined) await countInStore(subjects);
  };
  const pageServer =
    pageSocket === undefined
      ? undefined
      : await serveRefusalPage({ socketPath: pageSocket, page: pageBody!, onRefused: onPage, log }).catch((error: unknown) => {
          log.error('cannot serve the refusal page; refused logins are counted from the log only', {
            socket: pageSocket,
            error: coerceError(error).message,
          });
          return undefined;
        });
  // The page's socket file, removed when this logger ends only while it is still this one's: at a graceful
  // reload the logger that replaces it may already listen at that path.
  const pageSocketInode = pageServer && pageSocket !== undefined ? inodeOf(pageSocket) : undefined;
  const removeOwnSocket = () => {
    if (pageSocket !== undefined && pageSocketInode !== undefined && inodeOf(pageSocket) === pageSocketInode)
      rmSync(pageSocket, { force: true });
  };
  // Apache stops its piped loggers with SIGTERM (and SIGKILL 3 s later).
  process.once('SIGTERM', () => {
    removeOwnSocket();
    log.info('lockout exiting', { reason: 'SIGTERM' });
    process.exit(0);
  });
  log.info('counting refused logins', { lock_dir: lockDir, ...(pageServer ? { page_socket: pageSocket } : {}) });
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (throttle.maxFailures === 0) continue;
    const space = line.lastIndexOf(' ');
    const user = line.slice(0, space);
    const address = clientAddress(line.slice(space + 1));
    if (space <= 0 || address === undefined) continue;
    // "-" is how Apache logs a 401 without a user (no credentials at all: nothing to count), and also a user
    // literally named "-": that one the refusal page has counted (by its address), and only then is the line
    // its count's way to the store.
    if (user === '-' && !countedByPage.has(keyOf(user, address))) continue;
    if (pending >= MAX_PENDING) {
      if (dropped++ % 1_000 === 0) log.error('too many refused logins waiting for the store; not counting some', { dropped });
      continue;
    }
    pending++;
    count(user, address)
      .catch((error: unknown) =>
        log.error('cannot count a refused login', {
          user: isUserName(user) ? user : undefined,
          ip: address,
          error: coerceError(error).message,
        }),
      )
      .finally(() => pending--);
  }
  replaced = true;
  clearInterval(expiry);
  // Not close(): that would unlink the socket path, which the logger Apache started in this one's place may
  // already listen on.
  pageServer?.unref();
  removeOwnSocket();
  await Promise.allSettled([lockouts.listener.close(), db.end()]);
  return 0;
}

function inodeOf(path: string): number | undefined {
  try {
    return lstatSync(path).ino;
  } catch {
    return undefined;
  }
}
