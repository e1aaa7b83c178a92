// An SCGI responder on a unix socket (mod_proxy_scgi's protocol): a netstring of NUL-separated header pairs,
// CONTENT_LENGTH first, then the body; the answer is a CGI response, and the connection closes after it.
// Anything malformed gets the connection closed: Apache answers its client 502, nothing here crashes.
import net from 'node:net';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';

export interface ScgiRequest {
  env: Map<string, string>;
}

export interface ScgiResponse {
  status: number;
  headers: Array<[string, string]>;
  body?: Buffer | string;
}

export interface ScgiServerOptions {
  // The header block (mod_proxy_scgi sends every CGI variable of the request): at most this many bytes.
  maxHeaderBytes?: number; // default 64 KiB
  // A body is read and dropped (the responders here need none) up to this; beyond it the connection closes.
  maxBodyBytes?: number; // default 16 MiB
  // A client that has not sent its whole request within this is dropped (the handler's own time is not limited).
  requestTimeoutMs?: number; // default 10 000
}

const REASONS: Record<number, string> = {
  200: 'OK',
  307: 'Temporary Redirect',
  400: 'Bad Request',
  404: 'Not Found',
  503: 'Service Unavailable',
};

export function formatResponse(r: ScgiResponse): Buffer {
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
  let head = `Status: ${r.status} ${REASONS[r.status] ?? ''}`.trimEnd() + '\r\n';
  for (const [name, value] of r.headers) {
    if (!/^[A-Za-z0-9-]+$/.test(name) || /[\r\n]/.test(value)) throw new Error(`unsafe response header ${name}`);
    head += `${name}: ${value}\r\n`;
  }
  head += `Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

// Parses a complete header netstring from the start of `data`: the variables and where the body starts, or
// null when more bytes are needed. Throws on anything malformed.
export function parseScgiHeaders(data: Buffer, maxHeaderBytes: number): { env: Map<string, string>; bodyStart: number } | null {
  const colon = data.indexOf(0x3a);
  if (colon < 0) {
    if (data.length > 10) throw new Error('no netstring length');
    return null;
  }
  const lengthText = data.subarray(0, colon).toString('latin1');
  if (!/^[1-9][0-9]{0,8}$/.test(lengthText)) throw new Error('bad netstring length');
  const length = Number(lengthText);
  if (length > maxHeaderBytes) throw new Error('header block too large');
  const end = colon + 1 + length;
  if (data.length < end + 1) return null;
  if (data[end] !== 0x2c) throw new Error('netstring not terminated by ","');
  const parts = data
    .subarray(colon + 1, end)
    .toString('latin1')
    .split('\0');
  if (parts.pop() !== '' || parts.length % 2 !== 0) throw new Error('header block is not NUL-terminated pairs');
  const env = new Map<string, string>();
  for (let i = 0; i < parts.length; i += 2) env.set(parts[i]!, parts[i + 1]!);
  if (parts[0] !== 'CONTENT_LENGTH' || !/^(0|[1-9][0-9]{0,12})$/.test(env.get('CONTENT_LENGTH') ?? '')) {
    throw new Error('CONTENT_LENGTH missing or not first');
  }
  return { env, bodyStart: end + 1 };
}

export function serveScgi(handler: (request: ScgiRequest) => Promise<ScgiResponse>, log: Logger, o: ScgiServerOptions = {}): net.Server {
  const maxHeaderBytes = o.maxHeaderBytes ?? 64 * 1024;
  const maxBodyBytes = o.maxBodyBytes ?? 16 * 1024 * 1024;
  return net.createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let parsed: ReturnType<typeof parseScgiHeaders> = null;
    let bodyLeft = 0;
    let answered = false;
    socket.setTimeout(o.requestTimeoutMs ?? 10_000, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const answer = () => {
      answered = true;
      // The time limit is for sending the request; the handler bounds its own (the binder's --wait-seconds), and a
      // binding that waits longer than this must not lose its answer.
      socket.setTimeout(0);
      handler({ env: parsed!.env })
        .then((response) => socket.end(formatResponse(response)))
        .catch((error: unknown) => {
          log.error('request failed', { error: coerceError(error).message });
          socket.end(formatResponse({ status: 503, headers: [['Content-Type', 'text/plain']], body: 'temporarily unavailable\n' }));
        });
    };
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      if (parsed === null) {
        buffered = Buffer.concat([buffered, chunk]);
        try {
          parsed = parseScgiHeaders(buffered, maxHeaderBytes);
        } catch (error) {
          log.warn('malformed SCGI request', { error: coerceError(error).message });
          socket.destroy();
          return;
        }
        if (parsed === null) return;
        const length = Number(parsed.env.get('CONTENT_LENGTH'));
        if (length > maxBodyBytes) {
          socket.destroy();
          return;
        }
        bodyLeft = length - (buffered.length - parsed.bodyStart);
        buffered = Buffer.alloc(0);
      } else {
        bodyLeft -= chunk.length;
      }
      // mod_proxy_scgi sends the whole body before it reads the answer: read it (dropped) first.
      if (bodyLeft <= 0) answer();
    });
  });
}
