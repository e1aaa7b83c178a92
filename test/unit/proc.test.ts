// The one /proc reader (src/proc.ts) against real processes, one of which names itself to fool a parser.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parentPid, processIdentity, processTitle } from '../../src/proc.js';
import { waitFor } from '../helpers/wait.js';

describe('/proc reader', () => {
  it('finds a process\'s parent even when its name holds ") " and a fake parent', async () => {
    // PR_SET_NAME (15) sets the name /proc/PID/stat shows in parentheses.
    const child = spawn('/usr/bin/python3', [
      '-c',
      "import ctypes,time; ctypes.CDLL(None).prctl(15, b'x) S 1 1 ', 0, 0, 0); time.sleep(30)",
    ]);
    try {
      await waitFor(() => /\) S 1 1 /.test(readFileSync(`/proc/${child.pid}/stat`, 'latin1')), 5_000, 'the new name');
      expect(parentPid(child.pid!)).toBe(process.pid);
      expect(processTitle(child.pid!)).toBe('/usr/bin/python3');
      expect(processIdentity(child.pid!)).toMatchObject({ uid: process.getuid!() });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('says null for a process that is gone', () => {
    expect(parentPid(2 ** 22 + 1)).toBeNull();
    expect(processIdentity(2 ** 22 + 1)).toBeNull();
  });
});
