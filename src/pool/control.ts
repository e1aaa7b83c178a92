// The binder's control socket (STATE/binder-control.sock, root's alone): `plexer group exec` runs a command for an
// account of a pool (python3 manage.py migrate) as the slot user that serves it, so the command reaches that
// account's data and nothing else, the same wall its web requests meet. The slot is held while the command runs:
// busy, never taken for another account. One line each way:
//   client: "hold ACCOUNT\n"
//   binder: "held SLOT\n" | "busy\n" (every slot stayed busy) | "refused REASON\n" | "error REASON\n"
// and the hold lasts until the client closes the connection, so a client that dies lets its slot go.
import net from 'node:net';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { isAccountName } from '../names.js';
import type { Binder } from './binder.js';
import { SLOT_NAME_PATTERN } from './names.js';

const MAX_LINE = 256;
// The request line must come at once: a client that sends nothing does not keep a descriptor open.
const REQUEST_TIMEOUT_MS = 5_000;

export function serveControl(binder: Binder, log: Logger): net.Server {
  return net.createServer((socket) => {
    let line = '';
    let held: string | null = null;
    socket.setEncoding('utf8');
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => {
      if (held === null) socket.destroy();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (held === null) return;
      binder.unhold(held);
      log.info('slot hold ended', { slot: held });
    });
    const answer = (text: string) => socket.write(`${text}\n`);
    socket.on('data', (chunk: string) => {
      if (line.endsWith('\n')) return; // one request per connection
      line += chunk;
      if (!line.includes('\n')) {
        if (line.length > MAX_LINE) socket.destroy();
        return;
      }
      // The request is in: a binding may wait (for busy slots, for a slot being emptied) longer than the limit above.
      socket.setTimeout(0);
      const [verb, account, ...extra] = line.slice(0, line.indexOf('\n')).split(' ');
      line = line.slice(0, line.indexOf('\n') + 1);
      if (verb !== 'hold' || account === undefined || !isAccountName(account) || extra.length > 0) {
        answer('error expected "hold ACCOUNT"');
        socket.end();
        return;
      }
      binder.hold(account).then(
        (result) => {
          if (result.kind !== 'bound') {
            answer(result.kind === 'busy' ? 'busy' : `refused ${result.reason}`);
            socket.end();
            return;
          }
          if (socket.destroyed) {
            binder.unhold(result.slot);
            return;
          }
          held = result.slot;
          log.info('slot held for a command', { slot: held, account });
          answer(`held ${held}`);
        },
        (error) => {
          log.error('holding a slot failed', { account, error: coerceError(error).message });
          answer("error holding a slot failed; see the binder's log");
          socket.end();
        },
      );
    });
  });
}

export type HoldAnswer = { kind: 'held'; slot: string; release: () => void } | { kind: 'not-held'; reason: string };

// Asks the binder at `path` to hold the account's slot. The hold ends with release() (or this process's end).
export function holdSlot(path: string, account: string, timeoutMs = 30_000): Promise<HoldAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the binder did not answer within ${timeoutMs / 1000} s (${path})`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the pool's binder at ${path} (${error.message}): is Apache running with this config?`));
    });
    socket.on('connect', () => socket.write(`hold ${account}\n`));
    socket.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end === -1) return;
      clearTimeout(timer);
      const reply = text.slice(0, end);
      const slot = /^held (\S+)$/.exec(reply)?.[1];
      if (slot !== undefined && SLOT_NAME_PATTERN.test(slot)) {
        resolve({ kind: 'held', slot, release: () => socket.end() });
        return;
      }
      socket.destroy();
      resolve({ kind: 'not-held', reason: reply === 'busy' ? 'every slot stayed busy; try again' : reply.replace(/^\w+ /, '') });
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!text.includes('\n')) reject(new Error(`the pool's binder at ${path} closed the connection without an answer`));
    });
  });
}
