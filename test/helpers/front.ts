// A real Apache in front of a fresh plexer store, for end-to-end tests.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { startFront, type Front, type FrontOptions } from '../../src/demo/front.js';
import { freePort } from '../../src/demo/httpd.js';
import { formatConfig, loadConfig, type ConfigValues } from '../../src/config.js';
import { writeFileAtomic } from '../../src/files.js';
import { connectionValues, freshStore, runPlexer, type TestStore } from './plexer.js';
import { waitFor } from './wait.js';

export interface TestFront {
  store: TestStore;
  front: Front;
  configPath: string;
  stateDir: string;
  cli: Cli;
  // fresh: a new connection for this request alone, so an idle keep-alive connection that the server closes
  // (as Apache's old children do on a graceful reload, and as HTTP allows) cannot be mistaken for a drop.
  get(
    path: string,
    opts?: { user?: string; password?: string; headers?: Record<string, string>; fresh?: boolean },
  ): Promise<{ status: number; body: string; json(): any }>;
  close(): Promise<void>;
}

type Cli = (args: string[], input?: string) => ReturnType<typeof runPlexer>;

// `seed` runs before Apache starts, so the groups it adds are in the rendered config.
export interface TestFrontOptions {
  configExtra?: ConfigValues;
  front?: Partial<FrontOptions>;
  // Runs after seeding, before Apache starts; what it returns is added to the front options.
  beforeStart?: (stateDir: string, configPath: string) => Promise<Partial<FrontOptions>>;
}

export async function startTestFront(seed: (cli: Cli) => Promise<void>, opts: TestFrontOptions = {}): Promise<TestFront> {
  const store = await freshStore();
  // Short and world-traversable: www-data reads the config, mod_wsgi's socket paths must stay under 108 bytes.
  const stateDir = mkdtempSync('/tmp/pxe-');
  chmodSync(stateDir, 0o755);
  const configPath = join(stateDir, 'plexer.conf');
  // The helpers (Apache's, as www-data) connect as the store's helpers' role; the CLI as the admin.
  // Routing is checked here, not the deadline (test/store/helpers-outage.test.ts does that): a loaded CI machine must not
  // turn a slow query into a NULL and our 403.
  const values = { ...connectionValues(store.db.url), bcrypt_cost: 4, map_deadline_ms: 1000, ...opts.configExtra };
  writeFileAtomic(configPath, formatConfig(values), { mode: 0o644 });
  const cli: Cli = (args, input = 'pw\n') => runPlexer(args, { configPath, input });
  await seed(cli);
  const late = opts.beforeStart ? await opts.beforeStart(stateDir, configPath) : {};
  const front = await startFront({
    stateDir,
    configPath,
    config: loadConfig({ path: configPath }),
    port: await freePort(),
    ...opts.front,
    ...late,
  });
  const api: TestFront = {
    store,
    configPath,
    stateDir,
    cli,
    front,
    async get(path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.user !== undefined) headers.authorization = `Basic ${Buffer.from(`${o.user}:${o.password ?? 'pw'}`).toString('base64')}`;
      if (o.fresh) return getOnNewConnection(`${api.front.httpd.url}${path}`, headers);
      const response = await fetch(`${api.front.httpd.url}${path}`, { headers, redirect: 'manual' });
      const body = await response.text();
      return { status: response.status, body, json: () => JSON.parse(body) };
    },
    async close() {
      await front.stop();
      await store.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return api;
}

function getOnNewConnection(url: string, headers: Record<string, string>): Promise<{ status: number; body: string; json(): any }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, json: () => JSON.parse(body) }));
    });
    request.on('error', reject);
  });
}

// A map's first lookups after Apache starts may pass their deadline while its database connection is still
// being made (answered NULL, so our 403); wait until the user is really served before a test begins.
export async function waitUntilServed(t: TestFront, user: string, password: string, limitMs = 15_000): Promise<void> {
  let status = 0;
  await waitFor(
    async () => (status = (await t.get('/app/whoami', { user, password, fresh: true })).status) === 200,
    limitMs,
    () => `${user} to be served (still ${status}):\n${t.front.httpd.errorLog().slice(-2000)}`,
    100,
  );
}

// Runs a plexer command that must succeed, with its stderr in the failure message.
export async function cliOk(cli: Cli, args: string[], input?: string): Promise<Awaited<ReturnType<Cli>>> {
  const result = await cli(args, input);
  if (result.code !== 0) throw new Error(`plexer ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result;
}

// Two tenants with one user each (alice in tenant1, bob in tenant2), the common starting point.
export async function seedTwoTenants(cli: Cli): Promise<void> {
  for (const group of ['tenant1', 'tenant2']) await cliOk(cli, ['group', 'add', group, '--settings', 'tenants.settings_generic']);
  await cliOk(cli, ['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], 'alice-pw\n');
  await cliOk(cli, ['user', 'add', 'bob', '--group', 'tenant2', '--password-stdin'], 'bob-pw\n');
}

// One GET of /app/whoami as USER (password USER-pw) on a fresh connection that gives up after timeoutMs: an
// Apache stuck under mod_rewrite's map lock shows as 'timeout' instead of a test that never ends.
export function whoamiWithin(
  t: TestFront,
  user: string,
  timeoutMs: number,
): Promise<{ status: number | 'timeout'; group?: string; body?: string }> {
  return new Promise((resolve) => {
    const auth = Buffer.from(`${user}:${user}-pw`).toString('base64');
    const request = http.get(
      `${t.front.httpd.url}/app/whoami`,
      { headers: { authorization: `Basic ${auth}` }, agent: false },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          resolve({ status, body, group: status === 200 ? (JSON.parse(body) as { group: string }).group : undefined });
        });
      },
    );
    request.setTimeout(timeoutMs, () => {
      request.destroy();
      resolve({ status: 'timeout' });
    });
    request.on('error', () => resolve({ status: 'timeout' }));
  });
}
