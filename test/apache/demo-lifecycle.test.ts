// `plexer demo` (what `npm start` runs) as a person runs it: it stays up until SIGINT, SIGTERM or SIGHUP, then
// stops everything it started; a SIGKILLed demo leaves Apache's whole tree and PostgreSQL running, and the next
// demo on the same state directory stops them before it starts. Each start costs PostgreSQL + Apache + three
// Django daemons, so the file starts the demo four times in all.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/httpd.js';
import { PLEXER_BIN } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

// Short: mod_wsgi's socket paths (STATE/apache/wsgi.PID.GEN.N.sock) must fit in 108 bytes.
const stateDir = mkdtempSync('/tmp/plexer-demo-');
const START_MS = 120_000;

interface Demo {
  child: ChildProcess;
  url: string;
  apachePid: number;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: Demo[] = [];

async function startDemo(port: number): Promise<Demo> {
  const child = spawn(process.execPath, [PLEXER_BIN, 'demo', '--state-dir', stateDir, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const up = await waitFor(
    () => {
      if (gone) throw new Error(`the demo exited before it was up:\n${out}`);
      return /plexer demo is up: (\S+)\/app\/\s+\(Apache PID (\d+)\)/.exec(out);
    },
    START_MS,
    'the demo to be up',
    100,
  );
  const demo = { child, url: up[1]!, apachePid: Number(up[2]), output: () => out, exited };
  started.push(demo);
  return demo;
}

// A 503 says "try again" (a slot being bound, a first lookup slower than the demo's 50 ms deadline on a loaded
// machine): asked again for up to 15 s, as its Retry-After asks. Anything else is answered at once.
async function whoami(url: string, user: string): Promise<{ group?: string }> {
  const ask = () =>
    fetch(`${url}/app/whoami`, { headers: { authorization: `Basic ${Buffer.from(`${user}:${user}-password`).toString('base64')}` } });
  let response = await ask();
  for (const until = Date.now() + 15_000; response.status === 503 && Date.now() < until; response = await ask()) {
    await response.text();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  expect(response.status, `${user}: ${await response.clone().text()}`).toBe(200);
  return (await response.json()) as { group?: string };
}

// Every process whose command line, working directory or open files lie in the state directory: Apache's
// parent, workers, maps, watchdog and WSGI daemons (they hold its error log), PostgreSQL and its backends (its
// data directory), the demo itself. Keyed with the start time, so a recycled PID is not taken for the old one.
function processesOfStateDir(): Map<string, string> {
  const inDir = (path: string) => path === stateDir || path.startsWith(`${stateDir}/`);
  const found = new Map<string, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0');
      const links = [`/proc/${entry}/cwd`, ...readdirSync(`/proc/${entry}/fd`).map((fd) => `/proc/${entry}/fd/${fd}`)].map((link) => {
        try {
          return readlinkSync(link);
        } catch {
          return '';
        }
      });
      if (argv.some((arg) => arg.includes(`${stateDir}/`) || arg.endsWith(stateDir)) || links.some(inDir)) {
        found.set(`${entry}@${fields[19]}`, argv.join(' ').trim());
      }
    } catch {
      // exited while we looked
    }
  }
  return found;
}

async function stopWith(demo: Demo, signal: NodeJS.Signals): Promise<void> {
  // Still running long after it said it was up: the bug this file was written for returned at once.
  expect(demo.child.exitCode, demo.output()).toBeNull();
  expect(demo.child.signalCode).toBeNull();
  demo.child.kill(signal);
  const result = await demo.exited;
  expect(result, demo.output()).toEqual({ code: 0, signal: null });
  expect(demo.output()).toContain(`${signal}: stopping`);
  expect([...processesOfStateDir().values()]).toEqual([]);
}

afterAll(async () => {
  // Only if a test failed half-way: whatever is still running from our state directory was started here.
  for (const demo of started) if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGINT');
  await Promise.all(started.map((demo) => Promise.race([demo.exited, new Promise((r) => setTimeout(r, 30_000))])));
  for (const key of processesOfStateDir().keys()) {
    try {
      process.kill(Number(key.split('@')[0]), 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(stateDir, { recursive: true, force: true });
}, 60_000);

describe.sequential('plexer demo', () => {
  it(
    'after a SIGKILLed demo, the next one on the same state directory stops its whole Apache tree and PostgreSQL, then serves',
    async () => {
      const port = await freePort();
      const first = await startDemo(port);
      expect((await whoami(first.url, 'alice')).group).toBe('alpha');
      // What a killed demo leaves behind: Apache's parent and workers, the group map, the watchdog and the binder
      // (piped loggers, restarted by Apache whenever they exit), the pool's two slots, and PostgreSQL.
      const parts = [' map group ', ' watchdog ', ' binder ', '(wsgi:slot-1)', '(wsgi:slot-2)', 'postgres'];
      const before = await waitFor(
        () => {
          const found = processesOfStateDir();
          const commands = [...found.values()];
          const complete =
            commands.filter((c) => c.startsWith('/usr/sbin/apache2')).length >= 2 &&
            parts.every((part) => commands.some((c) => c.includes(part)));
          return complete ? found : undefined;
        },
        15_000,
        'every part of the demo in /proc',
      );

      // Its lock files' directory on tmpfs, named in the state directory.
      const firstLocks = readFileSync(join(stateDir, 'apache', 'lock-dir'), 'utf8').trim();
      expect(existsSync(join(firstLocks, 'locks'))).toBe(true);

      first.child.kill('SIGKILL');
      await first.exited;
      // Killing the demo alone leaves Apache's whole tree running (PostgreSQL too; its autovacuum workers come
      // and go, so only Apache's processes are counted).
      const apacheTree = [...before].filter(([, c]) => !c.includes('postgres') && !c.includes(' demo ')).map(([key]) => key);
      const afterKill = processesOfStateDir();
      expect(apacheTree.filter((key) => !afterKill.has(key))).toEqual([]);
      const orphans = [...afterKill.keys()].filter((key) => before.has(key));

      const second = await startDemo(port);
      // The same port: the old Apache was stopped before the new one looked for a free port.
      expect(second.url).toBe(`http://127.0.0.1:${port}`);
      expect(second.output()).toMatch(/stopped \d+ Apache process\(es\) a killed earlier demo left running/);
      expect(second.output()).toMatch(/stopping leftover postgres/);
      const now = processesOfStateDir();
      expect(orphans.filter((key) => now.has(key)).map((key) => before.get(key))).toEqual([]);
      expect((await whoami(second.url, 'alice')).group).toBe('alpha');
      expect((await whoami(second.url, 'bob')).group).toBe('beta');
      // The killed demo's lock directory went with the rest of what it left; the new one's goes when it stops.
      expect(existsSync(firstLocks)).toBe(false);
      const secondLocks = readFileSync(join(stateDir, 'apache', 'lock-dir'), 'utf8').trim();
      expect(secondLocks).not.toBe(firstLocks);
      await stopWith(second, 'SIGINT');
      expect(existsSync(secondLocks)).toBe(false);
    },
    4 * START_MS,
  );

  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(
      `${signal} stops it with status 0 and leaves no process of it`,
      async () => {
        const demo = await startDemo(await freePort());
        expect((await whoami(demo.url, 'bob')).group).toBe('beta');
        if (signal === 'SIGTERM') {
          // The banner's doctor line, pasted, says the demo is healthy (the lockout logger may still be starting).
          const check = /^Check: (.+)$/m.exec(demo.output())?.[1];
          expect(check, demo.output()).toBeDefined();
          await waitFor(() => spawnSync('/bin/sh', ['-c', check!], { encoding: 'utf8' }).status === 0, 15_000, `${check} to exit 0`, 500);
        }
        await stopWith(demo, signal);
      },
      2 * START_MS,
    );
  }
});
