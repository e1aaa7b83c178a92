// A minimal FastCGI client doing what mod_authnz_fcgi does — one AUTHORIZER request per connection, no STDIN
// — for tests and the latency benchmark. Not used by the daemon.
import net from 'node:net';
import {
  decodeEndRequest,
  encodeBeginRequest,
  encodeNameValuePairs,
  encodeStream,
  FCGI_KEEP_CONN,
  RecordDecoder,
  RecordType,
  Role,
  type FastCgiRecord,
} from './protocol.js';
import { coerceError } from '../errors.js';

export interface AuthorizerAnswer {
  status: number;
  headers: Map<string, string>;
  appStatus: number;
  protocolStatus: number;
}

export type Target = { host: string; port: number } | { path: string };

export function encodeAuthorizerRequest(requestId: number, params: Record<string, string>, keepConn = false): Buffer {
  return Buffer.concat([
    encodeBeginRequest(requestId, Role.Authorizer, keepConn ? FCGI_KEEP_CONN : 0),
    ...encodeStream(RecordType.Params, requestId, encodeNameValuePairs(Object.entries(params))),
  ]);
}

export function parseAuthorizerAnswer(stdout: Buffer, end: FastCgiRecord): AuthorizerAnswer {
  const { appStatus, protocolStatus } = decodeEndRequest(end.content);
  const text = stdout.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  const headers = new Map<string, string>();
  for (const line of (headEnd === -1 ? text : text.slice(0, headEnd)).split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const status = Number.parseInt(headers.get('status') ?? '200', 10);
  return { status, headers, appStatus, protocolStatus };
}

// Sends one request on a fresh connection and reads up to END_REQUEST, as mod_authnz_fcgi does.
export function authorizerRequest(target: Target, params: Record<string, string>, timeoutMs = 10_000): Promise<AuthorizerAnswer> {
  return new Promise((resolve, reject) => {
    const socket = 'path' in target ? net.connect(target.path) : net.connect({ host: target.host, port: target.port, noDelay: true });
    const decoder = new RecordDecoder();
    const stdout: Buffer[] = [];
    let settled = false;
    const settle = (error: Error | null, answer?: AuthorizerAnswer) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (error) reject(error);
      else resolve(answer!);
    };
    socket.setTimeout(timeoutMs, () => settle(new Error(`no answer within ${timeoutMs} ms`)));
    socket.on('connect', () => socket.write(encodeAuthorizerRequest(1, params)));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const record of decoder.push(chunk)) {
          if (record.type === RecordType.Stdout) stdout.push(record.content);
          else if (record.type === RecordType.EndRequest) return settle(null, parseAuthorizerAnswer(Buffer.concat(stdout), record));
        }
      } catch (error) {
        settle(coerceError(error));
      }
    });
    socket.on('error', (error) => settle(error));
    socket.on('close', () => settle(new Error('connection closed before END_REQUEST')));
  });
}
