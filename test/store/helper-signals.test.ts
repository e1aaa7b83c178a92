// SIGUSR1 opens Node's inspector on 127.0.0.1:9229, where any local user can run code as the process. Apache's
// root parent sends SIGUSR1 to every process its scoreboard lists at a graceful restart, and plexer's helpers share
// its process group; an attack review had a tenant list the root watchdog there and took root through the
// inspector. Every plexer process now ignores SIGUSR1 (bin/plexer, before anything else loads).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MapProcess } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const inspectorAnswers = () =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: 9229 }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

describe('a plexer helper sent SIGUSR1', () => {
  it('keeps running and opens no inspector (a plain Node process does, which shows the check can see one)', async () => {
    // The control: plain Node opens its inspector on SIGUSR1.
    const control = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      control.kill('SIGUSR1');
      await waitFor(inspectorAnswers, 5_000, "the control's inspector on 9229");
    } finally {
      control.kill('SIGKILL');
    }
    await waitFor(async () => !(await inspectorAnswers()), 5_000, 'port 9229 free again');

    // A map with a config it cannot use: it answers "no value" to every key and lives until EOF, needing no database.
    // Its main thread stays in read(2) (the map's blocking loop), so the listener never even runs: its being there
    // is what keeps the inspector shut.
    const configPath = join(mkdtempSync(join(tmpdir(), 'plexer-sig-')), 'plexer.conf');
    writeFileSync(configPath, 'pg_port = not-a-number\n');
    const map = new MapProcess('group', configPath);
    try {
      map.child.stdin.write('alice\n');
      expect(await map.nextLine()).toBe('#alice=');
      map.child.kill('SIGUSR1');
      // As long as the control took to open its inspector, and more.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(await inspectorAnswers()).toBe(false);
      map.child.stdin.write('bob\n');
      expect(await map.nextLine()).toBe('#bob=');
      expect(map.child.exitCode).toBeNull();
    } finally {
      map.child.stdin.end();
    }
  });
});
