// Start and stop a private Apache httpd (Debian's /usr/sbin/apache2) with our own config, for the demo and the tests.
// Never touches the system apache2 service: every PID signalled is read from our own PidFile.
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { ServiceStartError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { stopApacheTree } from './tree.js';
import { createRootOnlyLog, fileLogsOf } from '../apache/log-files.js';

export const APACHE_BINARY = '/usr/sbin/apache2';

export interface StartHttpdOptions {
  config: string; // rendered config text
  dir: string; // where to write httpd.conf; must be the config's stateDir (pid file and logs are read from it)
  port?: number; // to wait on; default: parsed from the config's Listen line
  startTimeoutMs?: number;
}

export interface Httpd {
  port: number;
  pid: number; // the parent's PID, from the PidFile
  url: string;
  configPath: string;
  stop(): Promise<void>;
  graceful(): Promise<void>;
  errorLog(): string;
  accessLog(): string;
}

// A clean environment: Apache passes its own to WSGI daemons and helpers, and a developer's PYTHONPATH,
// PYTHONHOME (pyenv) or DJANGO_SETTINGS_MODULE must not leak into them.
const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(APACHE_BINARY, args, { env: CLEAN_ENV, timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function configValue(config: string, directive: string): string | undefined {
  const m = new RegExp(`^\\s*${directive}\\s+"?([^"\\n]+?)"?\\s*$`, 'm').exec(config);
  return m?.[1];
}

function pidFileOf(config: string, dir: string): string {
  return configValue(config, 'PidFile') ?? join(dir, 'httpd.pid');
}

function errorLogOf(config: string, dir: string): string {
  return configValue(config, 'ErrorLog') ?? join(dir, 'error.log');
}

/**
 * Stops what an earlier run (killed before it could stop its Apache) left of the Apache configured in
 * DIR/httpd.conf, the whole tree, and returns how many processes that was (0: nothing was left).
 */
export async function stopLeftoverHttpd(dir: string): Promise<number> {
  let config: string;
  try {
    config = readFileSync(join(dir, 'httpd.conf'), 'utf8');
  } catch {
    return 0;
  }
  const pid = readPid(pidFileOf(config, dir));
  return pid === undefined ? 0 : stopApacheTree(pid, errorLogOf(config, dir));
}

// What an operator needs from a failed start: the few lines that say why, and where the rest is.
function startFailure(what: string, output: string, errorLogPath: string): ServiceStartError {
  const lines = output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  // From the first line that names an error (an AHnnnnn code, an errno, a severity), which is followed by its
  // detail ("Invalid command …" after "AH00526: Syntax error on line …").
  const first = lines.findIndex((line) => /AH\d{5}|\[(emerg|alert|crit|error)\]|\(\d+\)/.test(line));
  const reason = (first >= 0 ? lines.slice(first, first + 3) : lines.slice(-3)).join('\n  ');
  return new ServiceStartError(`${what}${reason ? `:\n  ${reason}` : ''}\nApache's error log: ${errorLogPath}`);
}

export async function startHttpd(options: StartHttpdOptions): Promise<Httpd> {
  const { config, dir } = options;
  const listen = configValue(config, 'Listen');
  const port = options.port ?? Number(listen?.split(':').pop());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot find the port in the config (Listen ${listen})`);
  const host = listen?.replace(/:\d+$/, '') ?? '127.0.0.1';
  const pidFile = pidFileOf(config, dir);
  const errorLogPath = errorLogOf(config, dir);
  const accessLogPath = configValue(config, 'CustomLog')?.split(/\s+/)[0]?.replace(/"/g, '') ?? join(dir, 'access.log');
  const tls = /^\s*SSLEngine\s+on/im.test(config);

  mkdirSync(dir, { recursive: true });
  // An Apache left by a killed earlier run would hold the port, the maps and the WSGI sockets of this directory.
  await stopLeftoverHttpd(dir);
  // A killed Apache leaves its PidFile: read before the new parent writes its own, it would name the dead one.
  rmSync(pidFile, { force: true });
  // www-data must reach mod_wsgi's sockets in here (mod_wsgi chowns them, but the directory needs o+x); no one
  // but root needs to list it.
  chmodSync(dir, 0o711);
  const configPath = join(dir, 'httpd.conf');
  // Root's alone: Apache's parent reads it as root; it names every tenant and may hold a session passphrase.
  writeFileAtomic(configPath, config, { mode: 0o600, owner: { uid: 0, gid: 0 } });
  for (const log of new Set([errorLogPath, accessLogPath, ...fileLogsOf(config)])) createRootOnlyLog(log);
  const errorLog = () => (existsSync(errorLogPath) ? readFileSync(errorLogPath, 'utf8') : '');
  const accessLog = () => (existsSync(accessLogPath) ? readFileSync(accessLogPath, 'utf8') : '');

  const syntax = await run(['-t', '-f', configPath], 15_000);
  if (syntax.code !== 0) throw startFailure(`Apache refused its configuration ${configPath}`, syntax.stderr + syntax.stdout, errorLogPath);

  const logBefore = errorLog().length;
  const started = await run(['-f', configPath, '-k', 'start'], 30_000);
  if (started.code !== 0)
    throw startFailure(
      `Apache did not start (apache2 -k start exit ${started.code})`,
      `${started.stderr}\n${errorLog().slice(logBefore)}`,
      errorLogPath,
    );

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  let pid: number | undefined;
  for (;;) {
    pid ??= readPid(pidFile);
    if (pid !== undefined && (await portAnswers(port))) break;
    if (Date.now() > deadline) {
      if (pid !== undefined) await stopApacheTree(pid, errorLogPath);
      throw startFailure(
        `Apache did not answer on port ${port} within ${options.startTimeoutMs ?? 15_000} ms`,
        errorLog().slice(logBefore),
        errorLogPath,
      );
    }
    await sleep(50);
  }
  const parentPid = pid;

  // The parent stops its children, WSGI daemons, prg: maps and piped loggers; whatever it leaves goes by force.
  const stop = async () => {
    await stopApacheTree(parentPid, errorLogPath);
  };

  const graceful = async () => {
    const before = errorLog().length;
    const r = await run(['-f', configPath, '-k', 'graceful'], 15_000);
    if (r.code !== 0) throw new Error(`apache2 -k graceful failed (${r.code}): ${r.stderr}`);
    // Wait for the parent to log the restart ("AH00493"/"resuming normal operations") and to answer again.
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      if (/resuming normal operations/.test(errorLog().slice(before)) && (await portAnswers(port))) return;
      await sleep(50);
    }
    throw new Error(`httpd did not come back after graceful:\n${errorLog().slice(before)}`);
  };

  return {
    port,
    pid: parentPid,
    url: `${tls ? 'https' : 'http'}://${host}:${port}`,
    configPath,
    stop,
    graceful,
    errorLog,
    accessLog,
  };
}
