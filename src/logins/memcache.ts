// The few memcached commands plexer needs (its text protocol, on a unix socket): remove a cached login, empty the
// whole cache, keep a small note of its own, ask whether it is up. One connection, commands answered in order; a
// lost connection fails what was waiting and the next command connects again.
import net from 'node:net';

// A reply is one line, or for `get` the lines up to END.
interface Pending {
  lines: string[];
  complete: (line: string) => boolean;
  resolve: (lines: string[]) => void;
  reject: (error: Error) => void;
}

export class MemcacheError extends Error {
  override name = 'MemcacheError';
}

// memcached's key rule: 1..250 bytes, no space or control character.
const KEY = /^[\x21-\x7e]{1,250}$/;

function checkKey(key: string): void {
  if (!KEY.test(key)) throw new MemcacheError(`not a memcached key: ${JSON.stringify(key)}`);
}

export class MemcacheClient {
  private socket: net.Socket | null = null;
  private buffer = '';
  private readonly waiting: Pending[] = [];

  constructor(
    private readonly path: string,
    private readonly timeoutMs = 2_000,
  ) {}

  // true when the key was there.
  async delete(key: string): Promise<boolean> {
    checkKey(key);
    const [reply] = await this.command(`delete ${key}`);
    if (reply === 'DELETED') return true;
    if (reply === 'NOT_FOUND') return false;
    throw new MemcacheError(`memcached answered "${reply}" to delete`);
  }

  // The value under the key (text without line breaks), or undefined.
  async get(key: string): Promise<string | undefined> {
    checkKey(key);
    const lines = await this.command(`get ${key}`, (line) => line === 'END' || line === 'ERROR' || line.startsWith('SERVER_ERROR'));
    if (lines.length === 3 && lines[0]!.startsWith(`VALUE ${key} `)) return lines[1];
    if (lines.length === 1 && lines[0] === 'END') return undefined;
    throw new MemcacheError(`memcached answered "${lines.join(' | ')}" to get`);
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    checkKey(key);
    if (/[\r\n]/.test(value)) throw new MemcacheError('a value holds a line break');
    const [reply] = await this.command(`set ${key} 0 ${ttlSeconds} ${Buffer.byteLength(value, 'latin1')}\r\n${value}`);
    if (reply !== 'STORED') throw new MemcacheError(`memcached answered "${reply}" to set`);
  }

  async flushAll(): Promise<void> {
    const [reply] = await this.command('flush_all');
    if (reply !== 'OK') throw new MemcacheError(`memcached answered "${reply}" to flush_all`);
  }

  async version(): Promise<string> {
    const [reply = ''] = await this.command('version');
    if (!reply.startsWith('VERSION ')) throw new MemcacheError(`memcached answered "${reply}" to version`);
    return reply.slice('VERSION '.length);
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private command(line: string, complete: (line: string) => boolean = () => true): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = this.connection();
      const timer = setTimeout(
        () => this.fail(new MemcacheError(`memcached at ${this.path} did not answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.waiting.push({
        lines: [],
        complete,
        resolve: (lines) => (clearTimeout(timer), resolve(lines)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      socket.write(`${line}\r\n`);
    });
  }

  private connection(): net.Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = net.createConnection(this.path);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\r\n'); end !== -1; end = this.buffer.indexOf('\r\n')) {
        const reply = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        const pending = this.waiting[0];
        if (!pending) continue;
        pending.lines.push(reply);
        if (pending.complete(reply)) {
          this.waiting.shift();
          pending.resolve(pending.lines);
        }
      }
    });
    socket.on('error', (error) => this.fail(new MemcacheError(`memcached at ${this.path}: ${error.message}`)));
    socket.on('close', () => this.fail(new MemcacheError(`memcached at ${this.path} closed the connection`)));
    this.socket = socket;
    this.buffer = '';
    return socket;
  }

  // Every command waiting fails; the next one connects again.
  private fail(error: Error): void {
    this.socket?.destroy();
    this.socket = null;
    for (let p = this.waiting.shift(); p; p = this.waiting.shift()) p.reject(error);
  }
}
