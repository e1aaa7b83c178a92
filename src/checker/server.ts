// The checker's side of the socket (wire.ts): one request per connection, answered with the exit status authn ends
// with. Anything malformed is answered "bad input" and nothing else happens; a check that does not settle within
// the deadline is answered "timed out" (the check itself is bounded by authn_timeout_ms too).
import net from 'node:net';
import type { AuthService } from '../authd/service.js';
import { AuthExit, passwordExit } from '../cli/auth-exit.js';
import { withDeadline } from '../deadline.js';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { decodeRequest, encodeAnswer, MAX_REQUEST_BYTES } from './wire.js';

export function serveChecks(service: Pick<AuthService, 'authenticate'>, log: Logger, deadlineMs: number): net.Server {
  return net.createServer((socket) => {
    let buffered = '';
    let asked = false;
    socket.setEncoding('utf8');
    // The request must come at once: an idle connection holds nothing open for long.
    socket.setTimeout(deadlineMs, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const answer = (code: number) => socket.end(encodeAnswer(code));
    socket.on('data', (chunk: string) => {
      if (asked) return;
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end === -1) {
        if (Buffer.byteLength(buffered) > MAX_REQUEST_BYTES) answer(AuthExit.BadInput);
        return;
      }
      asked = true;
      // The request is in: its own deadline (below) bounds the rest, with an answer.
      socket.setTimeout(0);
      const request = decodeRequest(buffered.slice(0, end));
      if (!request) {
        log.warn('login refused', { reason: 'bad-input', detail: 'malformed checker request' });
        answer(AuthExit.BadInput);
        return;
      }
      withDeadline(Promise.resolve(service.authenticate(request.user, request.password, request.ip, request.count)), deadlineMs, () => null)
        .then((outcome) => answer(outcome === null ? AuthExit.TimedOut : passwordExit(outcome)))
        .catch((error: unknown) => {
          log.error('check failed', { error: coerceError(error).message });
          answer(AuthExit.StoreError);
        });
    });
  });
}
