// node dist-bench/src/sync-rebuild.js [--users N] [--rounds R] — one full `plexer sync` rebuild (snapshot read +
// three GDBM files by httxt2dbm + fsync + rename) of N users (default 1,000,000) against a private PostgreSQL.
// Prints the phases and the total; BENCH_DIR=... puts the map files somewhere else than a temp dir.
import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDatabase, startPrivateCluster } from '../../dist/demo/private-cluster.js';
import { migrate } from '../../dist/store/migrate.js';
import { rebuildMaps, readSnapshot } from '../../dist/sync/maps.js';

const { values } = parseArgs({ options: { users: { type: 'string' }, rounds: { type: 'string' } } });
const USERS = Number(values.users ?? process.env.BENCH_USERS ?? 1_000_000);
const ROUNDS = Number(values.rounds ?? 2);
const GROUPS = 500;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'plexer-bench-sync-'));
  const mapDir = process.env.BENCH_DIR ?? join(dir, 'maps');
  mkdirSync(mapDir, { recursive: true });
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  try {
    const url = await createDatabase(cluster, 'bench');
    const client = new pg.Client({ connectionString: url, options: '-c search_path=plexer' });
    await client.connect();
    await migrate(client, 'plexer');
    const loadStart = performance.now();
    await client.query(
      `INSERT INTO daemon_groups (name, settings_module, backend)
       SELECT 'tenant' || i, 'tenants.settings.t' || i, 'http://127.0.0.1:' || (9000 + i) FROM generate_series(1, $1::integer) i`,
      [GROUPS],
    );
    await client.query(
      `INSERT INTO users (name, password_hash, daemon_group)
       SELECT 'user' || i || '@example.com', '$2b$04$d1zKlBqgH3WPlpi6R00EK./eQ5KVv/iKwy/jCb7F38jm4Vw85UHNu', 'tenant' || (1 + i % $2::integer)
         FROM generate_series(1, $1::integer) i`,
      [USERS, GROUPS],
    );
    await client.query('VACUUM ANALYZE users');
    process.stdout.write(`loaded ${USERS} users in ${GROUPS} groups in ${(performance.now() - loadStart).toFixed(0)} ms\n`);

    const readStart = performance.now();
    const snapshot = await readSnapshot(client);
    process.stdout.write(
      `snapshot read alone (3 queries, one REPEATABLE READ transaction): ${(performance.now() - readStart).toFixed(0)} ms, ${snapshot.group.length} + ${snapshot.settings.length} + ${snapshot.backend.length} rows\n`,
    );

    const results: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const result = await rebuildMaps(client, mapDir);
      results.push(result.ms);
      process.stdout.write(`rebuild ${round}: users=${result.users} ms=${result.ms}\n`);
    }
    for (const name of ['group.map', 'settings.map', 'backend.map']) {
      process.stdout.write(`  ${name}: ${(statSync(join(mapDir, name)).size / 1024 / 1024).toFixed(1)} MiB\n`);
    }
    process.stdout.write(`full rebuild of ${USERS} users: best ${Math.min(...results)} ms, worst ${Math.max(...results)} ms\n`);
    await client.end();
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
