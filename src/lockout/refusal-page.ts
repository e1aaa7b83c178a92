// The 401 page of the Basic sections, served by `plexer lockout` itself so that a refused guess is counted
// BEFORE its answer leaves Apache. mod_authn_socache answers a wrong password for a cached user without asking
// plexer; the access log that tells `plexer lockout` about it is written only once the 401 has been sent, so a
// guesser's next request races the count. With `ErrorDocument 401 /_plexer/refused` Apache fetches the body of
// every 401 from here (mod_proxy over a unix socket only Apache's user can open; an internal redirect carries the
// request's Authorization header, and mod_proxy_http appends the client's address as Apache sees it to
// X-Forwarded-For): the failure goes into the count and its lock file is made, and only then does the page go
// back. If this server cannot answer (the logger restarting), Apache still sends the 401 and the log line counts
// the failure, later.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';

// The user name Apache itself took from an Authorization header, read as mod_auth_basic reads it
// (get_basic_auth): the first word, up to a space, is "Basic" in any case; spaces and tabs are skipped; base64 is
// decoded up to the first character that is not base64 (whatever follows, a second header's ", Basic …"
// included, is ignored); the text ends at a NUL; the name is what comes before the first ":", or all of it.
// Anything Apache would accept as credentials must name the same user here, or a suffix would skip the count.
// The password is never kept. Undefined when Apache would have found no credentials.
export function basicUser(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const space = authorization.indexOf(' ');
  const scheme = space < 0 ? authorization : authorization.slice(0, space);
  if (scheme.toLowerCase() !== 'basic') return undefined;
  const encoded = /^[ \t]*([A-Za-z0-9+/]*)/.exec(space < 0 ? '' : authorization.slice(space + 1))![1]!;
  const decoded = Buffer.from(encoded, 'base64').toString('latin1');
  const text = decoded.includes('\0') ? decoded.slice(0, decoded.indexOf('\0')) : decoded;
  const colon = text.indexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

// The client as Apache saw it: mod_proxy_http appends it as the LAST entry of X-Forwarded-For, after whatever
// the client sent itself (mod_remoteip has already consumed the entries of trusted proxies).
export function lastForwardedAddress(forwardedFor: string | undefined): string | undefined {
  const last = forwardedFor?.split(',').pop()?.trim();
  return last !== undefined && isIP(last) !== 0 ? last : undefined;
}

export interface RefusalPageOptions {
  socketPath: string;
  page: Buffer;
  // Runs synchronously before the page is sent: the refused login's early count and lock file.
  onRefused(user: string, address: string): void;
  log: Logger;
}

export async function serveRefusalPage({ socketPath, page, onRefused, log }: RefusalPageOptions): Promise<Server> {
  // Apache lets a request carry 100 header fields of 8190 bytes and mod_proxy passes them all on; at Node's
  // default limit (16 KiB) a guess with large headers would get 431 before it is counted.
  const server = createServer({ maxHeaderSize: 1 << 20 }, (request, response) => {
    const user = basicUser(request.headers.authorization);
    const address = lastForwardedAddress(request.headers['x-forwarded-for'] as string | undefined);
    if (user !== undefined && address !== undefined) {
      try {
        onRefused(user, address);
      } catch (error) {
        log.error('cannot count a refused login before its answer', { ip: address, error: coerceError(error).message });
      }
    }
    // 401 itself, whatever Apache makes of a proxied error document's status; Apache keeps its own
    // WWW-Authenticate header for the answer.
    response.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    response.end(page);
  });
  // Apache's own connections only, each asking for one small page: no reason to wait long for anything.
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;
  // A socket left by a logger that Apache replaced (graceful reload) or that was killed.
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Apache's children run as the user this process now runs as; no one else may feed it refusals.
  chmodSync(socketPath, 0o600);
  server.on('error', (error) => log.error('refusal page server failed', { error: error.message }));
  return server;
}
