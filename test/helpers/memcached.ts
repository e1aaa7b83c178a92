// Talking to the login cache's memcached from a test, as root, in its text protocol.
import net from 'node:net';
import { LOGIN_CACHE_CONTEXT, loginCacheKey } from '../../src/logins/cache-key.js';

// One command, and its whole answer (up to the line that ends it).
export function memcachedCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = net.createConnection(socket);
    let text = '';
    connection.setEncoding('latin1');
    connection.on('connect', () => connection.write(command.endsWith('\r\n') ? command : `${command}\r\n`));
    connection.on('data', (chunk: string) => {
      text += chunk;
      if (/(END|STORED|DELETED|NOT_FOUND|ERROR)\r\n$/.test(text)) {
        connection.destroy();
        resolve(text);
      }
    });
    connection.on('error', reject);
  });
}

// Each user's cached login (Basic's, or the login page's) and the CAS number memcached gave it when it was stored:
// a login stored again (a password checked again) gets a new one.
export async function storedLogins(
  socket: string,
  users: readonly string[],
  context: string = LOGIN_CACHE_CONTEXT.basic,
): Promise<Map<string, string>> {
  const keys = users.map((u) => loginCacheKey(context, u));
  const found = new Map<string, string>();
  for (let i = 0; i < keys.length; i += 100) {
    const text = await memcachedCommand(socket, `gets ${keys.slice(i, i + 100).join(' ')}`);
    for (const m of text.matchAll(/^VALUE (\S+) \d+ \d+ (\d+)\r$/gm)) found.set(m[1]!, m[2]!);
  }
  return found;
}

// The counters that say what happened to stores and lookups, on one line.
export async function memcachedStats(socket: string): Promise<string> {
  const text = await memcachedCommand(socket, 'stats');
  return text
    .split('\r\n')
    .filter((l) => /cmd_set|delete_hits|curr_items|evictions|get_misses|get_hits/.test(l))
    .join(' ');
}
