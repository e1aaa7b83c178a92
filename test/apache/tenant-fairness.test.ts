// One tenant's flood against another tenant's latency (issue "walls": one tenant's user with 40 connections made
// another tenant's p50 2.5 s). Here alice (tenant1) floods from two addresses with 20 keep-alive connections each
// (the per-address limit) while bob (tenant2) asks one request at a time; every answer bob gets must be his own.
// The figures are printed, not asserted (a timed test is a benchmark's job): `npm run bench:fairness` runs this
// for longer and reports them. PLEXER_FAIRNESS_SECONDS (default 4) is the flood's length.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from '../helpers/front.js';

const SECONDS = Number(process.env['PLEXER_FAIRNESS_SECONDS'] ?? 4);
let t: TestFront;

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
  await waitUntilServed(t, 'bob', 'bob-pw');
}, 120_000);

afterAll(() => t?.close());

const auth = (user: string) => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`;

function once(agent: http.Agent, user: string, localAddress?: string): Promise<{ status: number; group?: string; ms: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    const request = http.get(
      { host: '127.0.0.1', port: t.front.httpd.port, path: '/app/whoami', agent, localAddress, headers: { authorization: auth(user) } },
      (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => {
          let group: string | undefined;
          try {
            group = JSON.parse(body).group;
          } catch {
            // an error page
          }
          resolve({ status: response.statusCode ?? 0, group, ms: performance.now() - start });
        });
      },
    );
    request.on('error', () => resolve({ status: 0, ms: performance.now() - start }));
    request.setTimeout(30_000, () => request.destroy());
  });
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

async function measureBob(untilMs: number, agent: http.Agent): Promise<Array<{ status: number; group?: string; ms: number }>> {
  const answers = [];
  while (performance.now() < untilMs) answers.push(await once(agent, 'bob'));
  return answers;
}

describe("one tenant's flood and another tenant's requests (real Apache)", () => {
  it(
    'bob is answered, always by his own tenant, while alice floods from two addresses; latencies printed',
    async () => {
      const bobAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const alone = await measureBob(performance.now() + (SECONDS * 1000) / 2, bobAgent);

      const floodUntil = performance.now() + SECONDS * 1000;
      const flood = { ok: 0, other: 0 };
      const agents: http.Agent[] = [];
      const loops = ['127.0.0.2', '127.0.0.3'].flatMap((address) =>
        Array.from({ length: 20 }, async () => {
          const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
          agents.push(agent);
          while (performance.now() < floodUntil) {
            const r = await once(agent, 'alice', address);
            if (r.status === 200) flood.ok++;
            else flood.other++;
          }
        }),
      );
      const during = await measureBob(floodUntil, bobAgent);
      await Promise.all(loops);
      for (const agent of [...agents, bobAgent]) agent.destroy();

      const report = {
        seconds: SECONDS,
        bobAlone: {
          requests: alone.length,
          p50: percentile(
            alone.map((a) => a.ms),
            50,
          ),
          p99: percentile(
            alone.map((a) => a.ms),
            99,
          ),
        },
        bobDuringFlood: {
          requests: during.length,
          p50: percentile(
            during.map((a) => a.ms),
            50,
          ),
          p99: percentile(
            during.map((a) => a.ms),
            99,
          ),
        },
        flood: { ...flood, perSecond: flood.ok / SECONDS },
      };
      console.log(`tenant fairness: ${JSON.stringify(report)}`);
      if (process.env['PLEXER_FAIRNESS_REPORT']) writeFileSync(process.env['PLEXER_FAIRNESS_REPORT'], JSON.stringify(report));

      for (const answer of [...alone, ...during]) expect(answer).toMatchObject({ status: 200, group: 'tenant2' });
      expect(flood.ok).toBeGreaterThan(0);
    },
    120_000 + SECONDS * 3000,
  );
});
