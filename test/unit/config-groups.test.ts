// What the CLI reads back from a rendered Apache config (src/apache/config-groups.ts): the groups it defines, or the
// pool it serves from and where its binder keeps its files, from the golden configs the renderer writes.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readApacheConfigGroups } from '../../src/apache/config-groups.js';

const golden = (name: string) => join(import.meta.dirname, 'golden', `${name}.conf`);

describe('readApacheConfigGroups', () => {
  it("reads a pool's slots, state and data directories, prefix and python-path from the binder's line", () => {
    const read = readApacheConfigGroups(golden('form-wsgi-dbm-pool'))!;
    expect(read.groups).toBeNull();
    expect(read.slots).toBe(2);
    expect(read.pool).toEqual({
      stateDir: '/var/lib/plexer/apache',
      dataDir: '/var/lib/plexer/apache/data',
      prefix: 'pxa',
      pythonPath: '/opt/plexer/apache/example',
    });
    expect(readApacheConfigGroups(golden('debian-basic-wsgi-pool'))!.pool?.prefix).toBe('plexer');
  });

  it('reads the daemon groups of a config without a pool, and no pool', () => {
    const read = readApacheConfigGroups(golden('basic-wsgi-prg'))!;
    expect(read.pool).toBeUndefined();
    expect(read.groups).not.toBeNull();
  });

  it('says null for a file it cannot read', () => {
    expect(readApacheConfigGroups('/nonexistent/httpd.conf')).toBeNull();
  });
});
