// `--two-maps --settings-from config`: the settings map is asked only for groups whose settings module is not
// written into the config. The rules' retries (a prg: pipe that fell behind) must be skipped exactly when the
// lookup is: a retry that asked anyway for every other group would flag each such request as a desync, and the
// watchdog would reload Apache every few seconds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

let t: TestFront;
const logged = (id: string) => (t.front.httpd.errorLog().match(new RegExp(id, 'g')) ?? []).length;

beforeAll(async () => {
  t = await startTestFront(
    async (cli) => {
      await cliOk(cli, ['group', 'add', 'tenant1', '--settings', 'tenants.settings_alpha']);
      // No settings module: rendered as "from the settings map".
      await cliOk(cli, ['group', 'add', 'tenant2']);
      await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
      await cliOk(cli, ['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], 'bob-pw\n');
    },
    { front: { settingsFrom: 'config', extra: { twoMaps: true } } },
  );
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitFor(() => /watchdog info/.test(t.front.httpd.errorLog()), 15_000, 'the watchdog to start');
}, 120_000);

afterAll(() => t?.close());

describe('two maps, settings from the config for some groups', () => {
  it('routes with the rendered settings and reports no desync', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await t.get('/app/whoami', { user: 'alice', password: 'alice-pw' });
      expect(r.status, r.body).toBe(200);
      expect(r.json()).toMatchObject({ group: 'tenant1', settings: 'tenants.settings_alpha' });
      // The group without a settings module anywhere: our 503, from an answer that names it ("tenant2=").
      expect((await t.get('/app/whoami', { user: 'bob', password: 'bob-pw' })).status).toBe(503);
    }
    // A desync line reaches the watchdog within milliseconds (test/apache/map-desync waits for it); a quiet second
    // after 40 requests means none was written.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(logged('PLX0905'), t.front.httpd.errorLog().slice(-3000)).toBe(0);
  });
});
