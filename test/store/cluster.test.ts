import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openPrivateCluster, startPrivateCluster, type PrivateCluster } from '../../src/demo/private-cluster.js';
import { freshDatabase, parsePgUrl } from '../helpers/database.js';

async function queryOnce(config: string | pg.ClientConfig, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

describe('test server', () => {
  it('accepts connections on the injected URL', async () => {
    const { rows } = await queryOnce(inject('pgUrl'), 'SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
  });

  it('creates and drops a fresh database', async () => {
    const db = await freshDatabase();
    await queryOnce(db.url, 'CREATE TABLE t (x int)');
    const { rows } = await queryOnce(db.url, 'SELECT current_database() AS name');
    expect(rows[0].name).toBe(db.name);

    await db.drop();
    await expect(queryOnce(db.url, 'SELECT 1')).rejects.toMatchObject({ code: '3D000' });
  });

  it('connects with the separate settings parsed from the URL', async () => {
    const db = await freshDatabase();
    try {
      const settings = parsePgUrl(db.url);
      expect(settings.database).toBe(db.name);
      const { rows } = await queryOnce(settings, 'SELECT current_database() AS name');
      expect(rows[0].name).toBe(db.name);
    } finally {
      await db.drop();
    }
  });
});

// A cluster of its own: stopping the shared one would break test files running in parallel.
describe('private cluster outage', () => {
  let dir: string;
  let cluster: PrivateCluster;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'plexer-cluster-test-'));
    cluster = await startPrivateCluster({ dir });
  });

  afterAll(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses connections while stopped and works again after start', async () => {
    const handle = await openPrivateCluster(dir);
    expect(handle.url).toBe(cluster.url);

    await handle.stop();
    await expect(queryOnce(cluster.url, 'SELECT 1')).rejects.toMatchObject({
      code: expect.stringMatching(/^(ECONNREFUSED|ENOENT)$/),
    });

    await handle.start();
    const { rows } = await queryOnce(cluster.url, 'SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
  });
});
