// `npm run bench:fronts -- --quick` with 3 front ends as a smoke test: every front end's maps, sync and authd
// start on one PostgreSQL, and every front end's map answers every change committed during the churn. It
// checks answers only, never timing; figures come from the full run (bench/RESULTS.md, "Many front ends").
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runBenchScript } from '../helpers/bench-script.js';

interface Summary {
  fronts: number;
  changes: Array<{ kind: 'group' | 'settings'; key: string; value: string; seenBy: number }>;
  missed: number;
  peakConnections: Record<string, number>;
  authStatuses: Record<string, number>;
}

const dir = mkdtempSync(join(tmpdir(), 'plexer-bench-fronts-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run bench:fronts -- --quick --fronts 3', () => {
  it('every front end sees every change, through both maps, with every helper connected', async () => {
    const json = join(dir, 'summary.json');
    const { code, output } = await runBenchScript('many-fronts', ['--quick', '--fronts', '3', '--json', json]);
    expect(code).toBe(0);

    const summary = JSON.parse(readFileSync(json, 'utf8')) as Summary;
    expect(summary.fronts).toBe(3);
    // --quick: 10 changes/s for 3 s, every tenth a settings change.
    expect(summary.changes.filter((c) => c.kind === 'group')).toHaveLength(27);
    expect(summary.changes.filter((c) => c.kind === 'settings')).toHaveLength(3);
    expect(summary.changes.filter((c) => c.seenBy !== 3)).toEqual([]);
    expect(summary.missed).toBe(0);
    expect(output).toMatch(/\| \(change, front end\) pairs seen \/ missed \| 90 \/ 0 \|/);
    // Each front end's helpers held their own connections (names as in src/cli: plexer-map-group-listen, …).
    const held = (prefix: string) =>
      Object.entries(summary.peakConnections)
        .filter(([app]) => app.startsWith(prefix))
        .reduce((n, [, count]) => n + count, 0);
    for (const prefix of ['plexer-map-group', 'plexer-map-settings', 'plexer-sync', 'plexer-authd'])
      expect(held(prefix), prefix).toBeGreaterThanOrEqual(3);
    expect(summary.authStatuses).toEqual({ 200: expect.any(Number) });
  }, 300_000);
});
