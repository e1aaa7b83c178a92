// Regression test from an attack review: a worker that dies while READING an answer.
//
// mod_rewrite reads a prg: answer one byte per read(2) (lookup_map_program: apr_file_read(fpout, &c, 1) on an
// unbuffered pipe). A worker killed after reading "#al" of "#alice=tenant1\n" leaves "ice=tenant1\n" in the
// pipe. Before answers carried a mark, that tail named the key "ice" and routed the user "ice" into alice's
// group. Now the rules accept only "#" + the key asked + "=": the tail is not an answer, so the next lookup asks
// again and reads its own.
//
// Made deterministic with strace: it kills the worker on its 4th read after attaching (3 bytes read).
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mapProcesses, workersWaitingOnPipe } from '../helpers/apache-procs.js';
import { cliOk, startTestFront, type TestFront, waitUntilServed, whoamiWithin } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

// Every proper suffix of "alice" that is a valid user name, in another tenant's group.
const SUFFIXES = ['lice', 'ice', 'ce', 'e'];
let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(async (cli) => {
    for (const group of ['tenant1', 'tenant2']) await cliOk(cli, ['group', 'add', group, '--settings', 'tenants.settings_generic']);
    await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
    for (const u of SUFFIXES) await cliOk(cli, ['user', 'add', u, '--group', 'tenant2', '--password-stdin'], `${u}-pw\n`);
  });
  for (const u of ['alice', ...SUFFIXES]) await waitUntilServed(t, u, `${u}-pw`);
}, 120_000);

afterAll(() => t?.close());

const get = (user: string, timeoutMs: number) => whoamiWithin(t, user, timeoutMs);

describe('a worker killed in the middle of reading an answer', () => {
  it('never lets the tail of alice\'s answer route a user whose name is a suffix of "alice"', async () => {
    const apachePid = t.front.httpd.pid;
    const [map] = mapProcesses(apachePid, 'route');
    const trace = join(t.stateDir, 'partial-read.strace');
    let strace: ReturnType<typeof spawn> | undefined;
    process.kill(map!, 'SIGSTOP');
    try {
      const victim = get('alice', 10_000);
      const [worker] = await waitFor(
        () => {
          const w = workersWaitingOnPipe(apachePid);
          return w.length > 0 ? w : undefined;
        },
        10_000,
        "alice's worker on the stopped map",
      );
      strace = spawn('strace', ['-qq', '-p', String(worker), '-e', 'trace=read', '-e', 'inject=read:signal=SIGKILL:when=4', '-o', trace], {
        stdio: 'ignore',
      });
      await waitFor(() => /TracerPid:\s+[1-9]/.test(readFileSync(`/proc/${worker}/status`, 'latin1')), 5_000, 'strace attached');
      process.kill(map!, 'SIGCONT');
      await victim;
      await waitFor(
        () => {
          try {
            return readFileSync(`/proc/${worker}/status`).length === 0;
          } catch {
            return true;
          }
        },
        5_000,
        'the worker gone',
      );
    } finally {
      process.kill(map!, 'SIGCONT');
      if (strace?.pid)
        try {
          process.kill(strace.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
    }
    // strace writes the rest of its log as it exits.
    if (strace && strace.exitCode === null && strace.signalCode === null) await new Promise((resolve) => strace!.once('exit', resolve));
    const log = readFileSync(trace, 'utf8');
    rmSync(trace, { force: true });
    const bytes = [...log.matchAll(/read\(\d+, "(.)", 1\) += 1/g)].map((m) => m[1]).join('');
    const tailKey = '#alice'.slice(bytes.length);
    console.log(
      `the killed worker read ${JSON.stringify(bytes)} of "#alice=tenant1 …"; left in the pipe: ${JSON.stringify(`${tailKey}=tenant1`)}\n${log.trim().split('\n').slice(-6).join('\n')}`,
    );
    expect(SUFFIXES, 'the kill landed inside the key part of the answer').toContain(tailKey);

    // The user named like the tail asks next: the tail is no answer, the rules ask again and route by its own.
    const r = await get(tailKey, 5_000);
    console.log(`${tailKey} (tenant2) next: ${JSON.stringify(r)}`);
    expect(r.group, `${tailKey} served by alice's group tenant1`).not.toBe('tenant1');
    expect(r).toMatchObject({ status: 200, group: 'tenant2' });
    // The pipe stays one answer behind until the watchdog's reload; routing stays right meanwhile.
    for (const u of ['alice', ...SUFFIXES]) expect((await get(u, 5_000)).group, u).toBe(u === 'alice' ? 'tenant1' : 'tenant2');
  }, 60_000);
});
