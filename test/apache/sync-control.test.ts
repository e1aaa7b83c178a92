// Negative control for the torn-map check in sync.test.ts: the same hammering against a map rewritten IN PLACE
// (truncate + httxt2dbm onto the live file) must catch bad answers, or the torn-map check proves nothing.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startHttpd, type Httpd } from '../helpers/httpd.js';

const haveApache = existsSync('/usr/sbin/apache2') && existsSync('/usr/sbin/httxt2dbm') && process.getuid?.() === 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const N = 40;

function ask(httpd: Httpd, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`${httpd.url}${path}`, { agent }, (res) => {
        res.resume();
        resolve((res.headers.location ?? '').replace(/^https?:\/\/[^/]+\/answer\//, ''));
      })
      .on('error', reject);
  });
}

function mapText(group: string): string {
  let text = '';
  for (let i = 0; i < N; i++) text += `torn${i} ${group}\n`;
  for (let i = 1; i <= 20000; i++) text += `bulk${i} beta\n`;
  return text;
}

describe.skipIf(!haveApache)('torn-map control: an in-place rewrite is caught', () => {
  let root: string;
  let httpd: Httpd;
  let map: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'plexer-sync-control-'));
    chmodSync(root, 0o755);
    mkdirSync(join(root, 'maps'), { mode: 0o755 });
    map = join(root, 'maps', 'group.map');
    execFileSync('/usr/sbin/httxt2dbm', ['-f', 'GDBM', '-i', '-', '-o', map], { input: mapText('alpha') });
    chmodSync(map, 0o644);
    const run = join(root, 'httpd');
    const port = await freePort();
    const m = '/usr/lib/apache2/modules';
    httpd = await startHttpd({
      dir: run,
      config: `Listen 127.0.0.1:${port}
ServerName 127.0.0.1
PidFile ${run}/httpd.pid
DefaultRuntimeDir ${run}
Mutex file:${run} default
ErrorLog ${run}/error.log
User www-data
Group www-data
LoadModule mpm_event_module ${m}/mod_mpm_event.so
LoadModule authz_core_module ${m}/mod_authz_core.so
LoadModule rewrite_module ${m}/mod_rewrite.so
RewriteEngine On
RewriteMap grp "dbm=gdbm:${map}"
RewriteRule ^/who/([^/]+)$ /answer/\${grp:$1|NONE} [R=302,L]
`,
    });
  });

  afterAll(async () => {
    await httpd?.stop();
    agent.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('sees wrong answers while the live file is rewritten in place', async () => {
    // A separate process, so the rewrites overlap the requests (a sync call would block this event loop).
    writeFileSync(join(root, 'alpha.txt'), mapText('alpha'));
    writeFileSync(join(root, 'beta.txt'), mapText('beta'));
    // Its own process group, stopped in `finally` by that group's id; the loop also ends by itself after 10 s or
    // when the directory is gone, so it cannot outlive a crashed test worker.
    const writer = spawn(
      '/bin/bash',
      [
        '-c',
        `n=0; end=$((SECONDS + 10)); while [ $SECONDS -lt $end ] && [ -d ${root}/maps ]; do for g in alpha beta; do : > ${map}; /usr/sbin/httxt2dbm -f GDBM -i ${root}/$g.txt -o ${map}; n=$((n+1)); echo $n > ${root}/rewrites; sleep 0.02; done; done`,
      ],
      { stdio: 'ignore', detached: true },
    );
    const exited = new Promise((r) => writer.once('exit', r));
    const answers = new Map<string, number>();
    try {
      const until = Date.now() + 3_000;
      for (let i = 0; Date.now() < until; i++) {
        // A torn file can also crash the worker that reads it (gdbm on a half-written file): a reset connection.
        const a = await ask(httpd, `/who/torn${i % N}`).catch((error: Error) => `error: ${error.message}`);
        answers.set(a, (answers.get(a) ?? 0) + 1);
      }
    } finally {
      try {
        process.kill(-writer.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
    const rewrites = readFileSync(join(root, 'rewrites'), 'utf8').trim() || '?';
    const crashes = httpd.errorLog().match(/exit signal \w+/g) ?? [];
    console.log(
      `control: ${rewrites} in-place rewrites, answers ${JSON.stringify(Object.fromEntries(answers))}, worker crashes: ${crashes.length} ${[...new Set(crashes)].join(', ')}`,
    );
    expect([...answers.keys()].some((a) => a !== 'alpha' && a !== 'beta')).toBe(true);
  });
});
