// A FastCGI application server for the AUTHORIZER role (what mod_authnz_fcgi speaks), over TCP or a Unix
// socket. Per connection: any number of requests in sequence (FCGI_KEEP_CONN) and several at once
// (multiplexed by request id), each bounded in size. A record that breaks the protocol closes that
// connection with one log line; nothing a peer sends can throw out of here.
//
// mod_authnz_fcgi (httpd 2.4) opens one connection per check, sends BEGIN_REQUEST (role AUTHORIZER, flags 0:
// no keep-conn) with request id 1, the PARAMS stream and no STDIN, then reads STDOUT records up to
// END_REQUEST. So a request is answered as soon as its PARAMS stream ends.
import net from 'node:net';
import type { Logger } from '../log.js';
import {
  decodeBeginRequest,
  decodeNameValuePairs,
  encodeEndRequest,
  encodeNameValuePairs,
  encodeRecord,
  encodeAnswer,
  encodeUnknownType,
  FastCgiProtocolError,
  FCGI_KEEP_CONN,
  FCGI_NULL_REQUEST_ID,
  NameValueIndex,
  ProtocolStatus,
  RecordDecoder,
  RecordType,
  Role,
  type FastCgiRecord,
  type NameValueLookup,
} from './protocol.js';
import { coerceError } from '../errors.js';

// The two ends of the connection a request came on; one object per connection, so a handler can remember a
// per-connection verdict (a WeakMap keyed by it). Addresses are undefined on a Unix socket.
export interface FastCgiConnection {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
}

export interface FastCgiRequest {
  requestId: number;
  role: number;
  // Absent only in requests built by hand (tests); the server always sets it.
  connection?: FastCgiConnection;
  // Names and values as latin1 strings, one character per byte (see protocol.ts `utf8`).
  params: NameValueLookup;
  // Aborted on ABORT_REQUEST or when the connection closes: the answer would go nowhere.
  signal: AbortSignal;
}

export interface FastCgiResponse {
  status: number;
  // Extra response headers, e.g. mod_authnz_fcgi's `Variable-NAME` (copied into the request's environment on
  // a 200). CR, LF and NUL are stripped.
  headers?: ReadonlyArray<readonly [string, string]>;
  body?: string;
}

export type FastCgiHandler = (request: FastCgiRequest) => Promise<FastCgiResponse>;

export interface FastCgiLimits {
  maxParamsBytes: number; // one request's PARAMS stream
  maxStdinBytes: number; // STDIN/DATA, read and discarded (an authorizer has no body)
  maxRequestsPerConnection: number; // in flight at once on one connection
  maxConnections: number;
  idleTimeoutMs: number; // a connection with nothing in flight and no bytes for this long is closed
  // From its BEGIN_REQUEST (or from the connection's start, for its first), a request's PARAMS must be complete
  // within this; else the connection is closed. Apache sends a check in one write.
  requestTimeoutMs: number;
  // PARAMS held for requests still arriving, all connections together; the connection that would pass it is
  // closed.
  maxBufferedBytes: number;
}

export const DEFAULT_LIMITS: FastCgiLimits = {
  // Apache sends every request header as an HTTP_* parameter; its own limits (100 fields of 8190 bytes)
  // stay well under this.
  maxParamsBytes: 1024 * 1024,
  maxStdinBytes: 64 * 1024,
  maxRequestsPerConnection: 32,
  maxConnections: 1024,
  idleTimeoutMs: 60_000,
  requestTimeoutMs: 5_000,
  maxBufferedBytes: 64 * 1024 * 1024,
};

export interface FastCgiServerOptions {
  handler: FastCgiHandler;
  log: Logger;
  // Asked once per connection before anything it sends is read (the socket is paused meanwhile): false closes
  // it, so a caller that may not ask holds neither a request slot nor memory.
  admit?: (connection: FastCgiConnection) => Promise<boolean>;
  roles?: readonly number[]; // roles served; others get END_REQUEST UNKNOWN_ROLE. Default: AUTHORIZER
  limits?: Partial<FastCgiLimits>;
}

interface RequestState {
  role: number;
  keepConn: boolean;
  params: Buffer[];
  paramsBytes: number;
  // How many of paramsBytes have left the server-wide count (handed over or dropped).
  releasedBytes: number;
  paramsDone: boolean;
  stdinBytes: number;
  // Made when the handler first reads `signal`: most never do, and one per check is measurable.
  controller?: AbortController;
  aborted: boolean;
}

function abort(state: RequestState): void {
  state.aborted = true;
  state.controller?.abort();
}

function signalOf(state: RequestState): AbortSignal {
  if (!state.controller) {
    state.controller = new AbortController();
    if (state.aborted) state.controller.abort();
  }
  return state.controller.signal;
}

// PARAMS bytes buffered by every connection of one server.
interface Buffered {
  bytes: number;
}

export function createFastCgiServer(options: FastCgiServerOptions): net.Server {
  const limits: FastCgiLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const roles = new Set(options.roles ?? [Role.Authorizer]);
  const buffered: Buffered = { bytes: 0 };
  const server = net.createServer((socket) => serveConnection(socket, options, limits, roles, buffered));
  server.maxConnections = limits.maxConnections;
  return server;
}

function serveConnection(
  socket: net.Socket,
  options: FastCgiServerOptions,
  limits: FastCgiLimits,
  roles: Set<number>,
  buffered: Buffered,
): void {
  const { log, handler } = options;
  const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
  const connection: FastCgiConnection = Object.freeze({
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    localAddress: socket.localAddress,
    localPort: socket.localPort,
  });
  const decoder = new RecordDecoder();
  const requests = new Map<number, RequestState>();
  let closed = false;
  // Close once the last answer is written when the peer asked for it (no FCGI_KEEP_CONN).
  let closeWhenIdle = false;
  let noDelay = false;

  // A request's PARAMS leave the shared count when they are handed over (run) or dropped with the request.
  const release = (state: RequestState) => {
    buffered.bytes -= state.paramsBytes - state.releasedBytes;
    state.releasedBytes = state.paramsBytes;
  };
  const dropAll = () => {
    for (const state of requests.values()) {
      release(state);
      abort(state);
    }
    requests.clear();
    clearTimeout(requestTimer);
  };

  // Armed while a request's PARAMS are still arriving: from the connection's start, then from each BEGIN_REQUEST.
  let requestTimer: NodeJS.Timeout | undefined;
  const armRequestTimer = () => {
    if (requestTimer !== undefined) return;
    requestTimer = setTimeout(() => {
      requestTimer = undefined;
      if (closed) return;
      const waiting = [...requests.values()].some((state) => !state.paramsDone);
      if (waiting || requests.size === 0) {
        log.warn('FastCGI request not complete in time; closing the connection', { peer, limit_ms: limits.requestTimeoutMs });
        close();
      }
    }, limits.requestTimeoutMs);
    requestTimer.unref();
  };
  const settleRequestTimer = () => {
    if ([...requests.values()].every((state) => state.paramsDone)) {
      clearTimeout(requestTimer);
      requestTimer = undefined;
    }
  };

  const close = () => {
    if (closed) return;
    closed = true;
    dropAll();
    socket.destroy();
  };

  const fail = (reason: string) => {
    if (closed) return;
    log.warn('malformed FastCGI input; closing the connection', { peer, reason });
    close();
  };

  const write = (data: Buffer) => {
    if (closed || socket.destroyed) return;
    socket.write(data);
  };

  // The last answer goes out with the end of the connection, in one call.
  const finish = (requestId: number, state: RequestState, answer: Buffer) => {
    release(state);
    requests.delete(requestId);
    if (!state.keepConn) closeWhenIdle = true;
    if (closeWhenIdle && requests.size === 0 && !closed) {
      closed = true;
      if (!socket.destroyed) socket.end(answer);
      return;
    }
    write(answer);
  };

  const endRequest = (requestId: number, state: RequestState, protocolStatus: number, appStatus = 0) => {
    finish(requestId, state, encodeEndRequest(requestId, appStatus, protocolStatus));
  };

  const respond = (requestId: number, state: RequestState, response: FastCgiResponse) => {
    // The request may have been aborted, or the connection closed, while the handler ran.
    if (requests.get(requestId) !== state || closed) return;
    finish(requestId, state, encodeAnswer(requestId, renderResponse(response), 0, ProtocolStatus.RequestComplete));
  };

  const run = (requestId: number, state: RequestState) => {
    let params: NameValueIndex;
    try {
      params = new NameValueIndex(state.params.length === 1 ? state.params[0]! : Buffer.concat(state.params, state.paramsBytes));
    } catch (error) {
      return fail(coerceError(error).message);
    }
    state.params = [];
    release(state);
    settleRequestTimer();
    const request: FastCgiRequest = {
      requestId,
      role: state.role,
      connection,
      params,
      get signal() {
        return signalOf(state);
      },
    };
    handler(request).then(
      (response) => respond(requestId, state, response),
      (error: unknown) => {
        log.error('request handler failed; answering 500', { peer, error: coerceError(error).message });
        respond(requestId, state, { status: 500 });
      },
    );
  };

  const handleManagement = (record: FastCgiRecord) => {
    if (record.type === RecordType.GetValues) {
      const asked = decodeNameValuePairs(record.content, { maxPairs: 16 });
      const known: Record<string, string> = {
        FCGI_MAX_CONNS: String(limits.maxConnections),
        FCGI_MAX_REQS: String(limits.maxConnections * limits.maxRequestsPerConnection),
        FCGI_MPXS_CONNS: '1',
      };
      const answer = [...asked.keys()].filter((name) => name in known).map((name) => [name, known[name]!] as const);
      write(encodeRecord(RecordType.GetValuesResult, FCGI_NULL_REQUEST_ID, encodeNameValuePairs(answer)));
      return;
    }
    if (record.type === RecordType.BeginRequest) throw new FastCgiProtocolError('BEGIN_REQUEST with request id 0');
    write(encodeUnknownType(record.type));
  };

  const handleRecord = (record: FastCgiRecord) => {
    const { type, requestId, content } = record;
    if (requestId === FCGI_NULL_REQUEST_ID) return handleManagement(record);
    const state = requests.get(requestId);
    switch (type) {
      case RecordType.BeginRequest: {
        if (state) throw new FastCgiProtocolError(`BEGIN_REQUEST for request ${requestId}, which is already active`);
        const begin = decodeBeginRequest(content);
        const fresh: RequestState = {
          role: begin.role,
          keepConn: (begin.flags & FCGI_KEEP_CONN) !== 0,
          params: [],
          paramsBytes: 0,
          paramsDone: false,
          releasedBytes: 0,
          stdinBytes: 0,
          aborted: false,
        };
        requests.set(requestId, fresh);
        armRequestTimer();
        // Nagle's algorithm only holds back an answer written while an earlier one is unacknowledged: a
        // connection with one request (mod_authnz_fcgi's) writes once, so the system call is saved there.
        if (!noDelay && (fresh.keepConn || requests.size > 1)) {
          noDelay = true;
          socket.setNoDelay(true);
        }
        if (!roles.has(begin.role)) return endRequest(requestId, fresh, ProtocolStatus.UnknownRole);
        if (requests.size > limits.maxRequestsPerConnection) return endRequest(requestId, fresh, ProtocolStatus.Overloaded);
        return;
      }
      case RecordType.AbortRequest:
        if (!state) return;
        abort(state);
        return endRequest(requestId, state, ProtocolStatus.RequestComplete, 1);
      case RecordType.Params:
        // Records for a request that is not active are ignored, as the specification says (a late record
        // after an abort, say).
        if (!state) return;
        if (state.paramsDone) throw new FastCgiProtocolError(`PARAMS after the end of request ${requestId}'s PARAMS stream`);
        if (content.length === 0) {
          state.paramsDone = true;
          return run(requestId, state);
        }
        state.paramsBytes += content.length;
        buffered.bytes += content.length;
        if (state.paramsBytes > limits.maxParamsBytes)
          throw new FastCgiProtocolError(`PARAMS of request ${requestId} exceed ${limits.maxParamsBytes} bytes`);
        if (buffered.bytes > limits.maxBufferedBytes)
          throw new FastCgiProtocolError(`PARAMS held for all connections would exceed ${limits.maxBufferedBytes} bytes`);
        state.params.push(content);
        return;
      case RecordType.Stdin:
      case RecordType.Data:
        if (!state) return;
        state.stdinBytes += content.length;
        if (state.stdinBytes > limits.maxStdinBytes)
          throw new FastCgiProtocolError(`STDIN of request ${requestId} exceeds ${limits.maxStdinBytes} bytes`);
        return;
      default:
        // STDOUT, STDERR, END_REQUEST, GET_VALUES_RESULT, UNKNOWN_TYPE flow the other way; anything else is
        // not FastCGI 1.0.
        throw new FastCgiProtocolError(`unexpected record type ${type} for request ${requestId}`);
    }
  };

  socket.setTimeout(limits.idleTimeoutMs, () => {
    if (requests.size === 0) close();
  });
  // The first request, too, must arrive in time: a connection that only trickles bytes holds a slot.
  armRequestTimer();
  if (options.admit) {
    socket.pause();
    options.admit(connection).then(
      (admitted) => {
        if (!admitted) return close();
        if (!closed) socket.resume();
      },
      (error: unknown) => {
        log.error('cannot tell who is connecting; closing the connection', { peer, error: coerceError(error).message });
        close();
      },
    );
  }
  socket.on('data', (chunk: Buffer) => {
    if (closed) return;
    try {
      for (const record of decoder.push(chunk)) {
        handleRecord(record);
        if (closed) return;
      }
    } catch (error) {
      if (error instanceof FastCgiProtocolError) return fail(error.message);
      // A bug of ours, not the peer's: still only this connection goes.
      log.error('unexpected error on a FastCGI connection; closing it', { peer, error: coerceError(error).message });
      close();
    }
  });
  socket.on('error', (error) => {
    log.debug('FastCGI connection error', { peer, error: error.message });
    close();
  });
  socket.on('close', () => {
    closed = true;
    dropAll();
  });
}

const unsafeHeaderText = /[\r\n\0]/g;

// CGI-style response headers, as ap_scan_script_header reads them: `Status: NNN`, then headers, a blank line,
// and the body.
export function renderResponse(response: FastCgiResponse): Buffer {
  let head = `Status: ${Math.trunc(response.status)}\r\n`;
  for (const [name, value] of response.headers ?? []) {
    head += `${name.replace(unsafeHeaderText, '')}: ${value.replace(unsafeHeaderText, '')}\r\n`;
  }
  return Buffer.from(head + '\r\n' + (response.body ?? ''), 'utf8');
}
