// A private memcached for Apache's login cache, as the demo and the tests run it and as apache/plexer-logins.service runs it
// on a server: as www-data, listening only on a unix socket (no TCP: any local user reaches 127.0.0.1) in a
// directory of www-data's alone (0700), so that Apache's workers and root reach it and tenants do not. An entry
// written there would log anyone in as anyone.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceStartError } from '../errors.js';
import { MemcacheClient } from '../logins/memcache.js';
import { processArgv } from '../proc.js';
import { apacheOwner } from '../tenant-users.js';

export const MEMCACHED = '/usr/bin/memcached';

export interface LoginCacheServer {
  socket: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startLoginCacheServer(dir: string, o: { memoryMiB?: number } = {}): Promise<LoginCacheServer> {
  if (!existsSync(MEMCACHED)) throw new ServiceStartError(`${MEMCACHED} is missing: apt-get install memcached (bin/setup does)`);
  const apache = apacheOwner();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!lstatSync(dir).isDirectory()) throw new ServiceStartError(`${dir} is not a directory`);
  chownSync(dir, apache.uid, apache.gid);
  chmodSync(dir, 0o700);
  const socket = join(dir, 'cache.sock');
  const pidFile = join(dir, 'memcached.pid');
  await stopLeftover(pidFile, socket);
  rmSync(socket, { force: true });
  const child: ChildProcess = spawn(
    MEMCACHED,
    ['-u', 'www-data', '-s', socket, '-a', '0600', '-m', String(o.memoryMiB ?? 64), '-c', '1024', '-P', pidFile],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(socket, { force: true });
    rmSync(pidFile, { force: true });
  };
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new ServiceStartError(`memcached exited at start: ${stderr.trim()}`);
    if (existsSync(socket)) {
      const client = new MemcacheClient(socket, 500);
      const up = await client.version().then(
        () => true,
        () => false,
      );
      client.close();
      if (up) return { socket, pid: child.pid!, stop };
    }
    if (Date.now() > until) {
      await stop();
      throw new ServiceStartError(`memcached did not answer on ${socket} within 10 s: ${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The memcached a killed demo left (its pid file names it, and it is still a memcached on this very socket): stopped,
// and gone before the new one listens there.
async function stopLeftover(pidFile: string, socket: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  const isOurs = () => {
    const command = processArgv(pid);
    return command[0] === MEMCACHED && command.includes(socket);
  };
  if (Number.isInteger(pid) && pid > 1 && isOurs()) {
    process.kill(pid, 'SIGTERM');
    const until = Date.now() + 5_000;
    while (isOurs()) {
      if (Date.now() > until) process.kill(pid, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  rmSync(pidFile, { force: true });
}
