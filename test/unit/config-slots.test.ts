// What the CLI reads back from a rendered Apache config (src/apache/config-slots.ts): the accounts' own slots, or
// the pool it serves from and where its binder keeps its files, from the golden configs the renderer writes.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readApacheConfigSlots } from '../../src/apache/config-slots.js';

const golden = (name: string) => join(import.meta.dirname, 'golden', `${name}.conf`);

describe('readApacheConfigSlots', () => {
  it("reads a pool's slots, state and data directories, prefix and python-path from the binder's line", () => {
    const read = readApacheConfigSlots(golden('form-wsgi-dbm-pool'))!;
    expect(read.ownSlots).toBeNull();
    expect(read.slots).toBe(2);
    expect(read.pool).toEqual({
      stateDir: '/var/lib/plexer/apache',
      dataDir: '/var/lib/plexer/apache/data',
      prefix: 'pxa',
      pythonPath: '/opt/plexer/apache/example',
    });
    expect(readApacheConfigSlots(golden('debian-basic-wsgi-pool'))!.pool?.prefix).toBe('plexer');
  });

  it('reads the own slots of a config without a pool, and no pool', () => {
    const read = readApacheConfigSlots(golden('basic-wsgi-prg'))!;
    expect(read.pool).toBeUndefined();
    expect(read.ownSlots).toEqual(new Set(['alpha', 'beta']));
  });

  it('says null for a file it cannot read', () => {
    expect(readApacheConfigSlots('/nonexistent/httpd.conf')).toBeNull();
  });
});
