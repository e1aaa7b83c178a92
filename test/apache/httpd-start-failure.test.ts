// When an Apache that plexer starts itself (the demo's, the tests') does not come up, the error says why in a
// few lines and names the error log: no stack, not the whole log on one line.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ServiceStartError } from '../../src/errors.js';
import { freePort, startHttpd } from '../helpers/httpd.js';

const dir = mkdtempSync('/tmp/plexer-httpd-fail-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(port: number, extra = ''): string {
  return [
    `ServerRoot "${dir}"`,
    `DefaultRuntimeDir "${dir}"`,
    `PidFile "${dir}/httpd.pid"`,
    `Mutex file:${dir} default`,
    `ErrorLog "${dir}/error.log"`,
    'LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so',
    'LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so',
    `Listen 127.0.0.1:${port}`,
    'ServerName localhost',
    extra,
    '',
  ].join('\n');
}

async function failure(start: Promise<unknown>): Promise<ServiceStartError> {
  const error = await start.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ServiceStartError);
  return error as ServiceStartError;
}

describe('startHttpd failures', () => {
  it('a configuration error: the offending line and the log path', async () => {
    const e = await failure(startHttpd({ config: config(await freePort(), 'NoSuchDirective on'), dir }));
    expect(e.message).toMatch(/refused its configuration/);
    expect(e.message).toMatch(/NoSuchDirective/);
    expect(e.message).toContain(`Apache's error log: ${dir}/error.log`);
    expect(e.message.split('\n').length).toBeLessThanOrEqual(5);
  });

  it('a port someone else holds: the bind error and the log path', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (holder.address() as net.AddressInfo).port;
      const e = await failure(startHttpd({ config: config(port), dir, startTimeoutMs: 5_000 }));
      expect(e.message).toMatch(/could not bind|Address already in use/);
      expect(e.message).toContain(`Apache's error log: ${dir}/error.log`);
      expect(e.message.split('\n').length).toBeLessThanOrEqual(5);
      expect(e.message).not.toMatch(/^\s+at /m);
    } finally {
      holder.close();
    }
  });
});
