// Small per-tenant backends for the proxy tests: HTTP servers on unix sockets or 127.0.0.1 ports, and a minimal
// FastCGI responder on a unix socket. Each answers JSON {tenant, kind, path, query, user, remoteUser, headers}
// so a test sees which backend served a request and what Apache told it.
import { chmodSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

export interface Backend {
  tenant: string;
  kind: 'http' | 'fcgi';
  // What to store in the group's `backend` column.
  target: string;
  stop(): Promise<void>;
}

export interface BackendAnswer {
  tenant: string;
  kind: 'http' | 'fcgi';
  path: string;
  query: string;
  user: string | null; // the X-Plexer-User header
  remoteUser: string | null; // REMOTE_USER (FastCGI only)
  headers: Record<string, string>;
}

function closeServer(server: net.Server, socketPath?: string): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      if (socketPath) rmSync(socketPath, { force: true });
      resolve();
    });
    // Keep-alive connections from mod_proxy would hold close() open.
    (server as http.Server).closeAllConnections?.();
  });
}

function listen(server: net.Server, where: { socketPath: string } | { port: 0 }): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      if ('socketPath' in where) {
        // Apache's workers (www-data) connect to it.
        chmodSync(where.socketPath, 0o666);
        resolve(undefined);
      } else {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : undefined);
      }
    };
    if ('socketPath' in where) {
      rmSync(where.socketPath, { force: true });
      server.listen(where.socketPath, done);
    } else server.listen(0, '127.0.0.1', done);
  });
}

function httpServer(tenant: string): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const headers: Record<string, string> = {};
    for (const [k, value] of Object.entries(req.headers)) headers[k] = Array.isArray(value) ? value.join(', ') : String(value);
    const answer: BackendAnswer = {
      tenant,
      kind: 'http',
      path: url.pathname,
      query: url.search,
      user: (req.headers['x-plexer-user'] as string | undefined) ?? null,
      remoteUser: null,
      headers,
    };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
}

export async function startHttpBackend(tenant: string, where: { socketPath: string } | 'tcp'): Promise<Backend> {
  const server = httpServer(tenant);
  if (where === 'tcp') {
    const port = await listen(server, { port: 0 });
    return { tenant, kind: 'http', target: `http://127.0.0.1:${port}/`, stop: () => closeServer(server) };
  }
  await listen(server, where);
  return { tenant, kind: 'http', target: `unix:${where.socketPath}|http://localhost/`, stop: () => closeServer(server, where.socketPath) };
}

// ---- A minimal FastCGI responder (FastCGI 1.0: BEGIN_REQUEST, PARAMS, STDIN in; STDOUT, END_REQUEST out) ----
const FCGI = { BEGIN_REQUEST: 1, END_REQUEST: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, KEEP_CONN: 1 } as const;

function record(type: number, requestId: number, content: Buffer): Buffer {
  const padding = (8 - (content.length % 8)) % 8;
  const header = Buffer.alloc(8);
  header.writeUInt8(1, 0);
  header.writeUInt8(type, 1);
  header.writeUInt16BE(requestId, 2);
  header.writeUInt16BE(content.length, 4);
  header.writeUInt8(padding, 6);
  return Buffer.concat([header, content, Buffer.alloc(padding)]);
}

function decodeParams(data: Buffer): Record<string, string> {
  const params: Record<string, string> = {};
  let i = 0;
  const length = () => {
    const first = data.readUInt8(i);
    if (first < 128) return ((i += 1), first);
    const value = data.readUInt32BE(i) & 0x7fffffff;
    i += 4;
    return value;
  };
  while (i < data.length) {
    const nameLength = length();
    const valueLength = length();
    const name = data.subarray(i, i + nameLength).toString('latin1');
    i += nameLength;
    params[name] = data.subarray(i, i + valueLength).toString('latin1');
    i += valueLength;
  }
  return params;
}

function fcgiConnection(tenant: string, socket: net.Socket) {
  let buffer = Buffer.alloc(0);
  const requests = new Map<number, { keep: boolean; params: Buffer[]; paramsDone: boolean; stdinDone: boolean }>();
  const respond = (id: number) => {
    const r = requests.get(id)!;
    requests.delete(id);
    const env = decodeParams(Buffer.concat(r.params));
    const headers: Record<string, string> = {};
    for (const [k, value] of Object.entries(env)) if (k.startsWith('HTTP_')) headers[k] = value;
    const answer: BackendAnswer = {
      tenant,
      kind: 'fcgi',
      path: env['SCRIPT_NAME'] ?? env['REQUEST_URI'] ?? '',
      query: env['QUERY_STRING'] ?? '',
      user: env['HTTP_X_PLEXER_USER'] ?? null,
      remoteUser: env['REMOTE_USER'] ?? null,
      headers,
    };
    (answer as BackendAnswer & { env: Record<string, string> }).env = Object.fromEntries(
      Object.entries(env).filter(([k]) =>
        ['REQUEST_URI', 'SCRIPT_NAME', 'PATH_INFO', 'SCRIPT_FILENAME', 'AUTH_TYPE', 'PLEXER_BACKEND_TOKEN'].includes(k),
      ),
    );
    const body = Buffer.from(JSON.stringify(answer));
    const head = Buffer.from(`Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    const end = Buffer.alloc(8); // appStatus 0, protocolStatus 0 (REQUEST_COMPLETE)
    socket.write(
      Buffer.concat([
        record(FCGI.STDOUT, id, Buffer.concat([head, body])),
        record(FCGI.STDOUT, id, Buffer.alloc(0)),
        record(FCGI.END_REQUEST, id, end),
      ]),
    );
    if (!r.keep) socket.end();
  };
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 8) {
      const type = buffer.readUInt8(1);
      const id = buffer.readUInt16BE(2);
      const contentLength = buffer.readUInt16BE(4);
      const padding = buffer.readUInt8(6);
      if (buffer.length < 8 + contentLength + padding) break;
      const content = buffer.subarray(8, 8 + contentLength);
      buffer = buffer.subarray(8 + contentLength + padding);
      if (type === FCGI.BEGIN_REQUEST) {
        requests.set(id, { keep: (content.readUInt8(2) & FCGI.KEEP_CONN) !== 0, params: [], paramsDone: false, stdinDone: false });
      } else if (type === FCGI.PARAMS) {
        const r = requests.get(id);
        if (!r) continue;
        if (content.length === 0) r.paramsDone = true;
        else r.params.push(Buffer.from(content));
      } else if (type === FCGI.STDIN) {
        const r = requests.get(id);
        if (!r) continue;
        if (content.length === 0) {
          r.stdinDone = true;
          if (r.paramsDone) respond(id);
        }
      }
      // GET_VALUES, ABORT_REQUEST and the rest are not needed by mod_proxy_fcgi's plain requests.
    }
  });
  socket.on('error', () => socket.destroy());
}

export async function startFcgiBackend(tenant: string, socketPath: string): Promise<Backend> {
  const server = net.createServer((socket) => fcgiConnection(tenant, socket));
  await listen(server, { socketPath });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  return {
    tenant,
    kind: 'fcgi',
    target: `unix:${socketPath}|fcgi://localhost/`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server, socketPath);
    },
  };
}
