// A plexer store on a PostgreSQL cluster of its own, for tests that stop the database: stopping it disturbs no
// other test file. The helpers connect as a granted read-only role, the CLI as the cluster's superuser.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { formatConfig } from '../../src/config.js';
import { createDatabase, startPrivateCluster, type PrivateCluster } from '../../src/demo/private-cluster.js';
import { writeFileAtomic } from '../../src/files.js';
import { parsePgUrl, type PgSettings } from './database.js';
import { runPlexer } from './plexer.js';

export interface OwnClusterStore {
  dir: string;
  cluster: PrivateCluster;
  configPath: string;
  pg: PgSettings;
  // Runs a plexer command that must succeed.
  cli(args: string[], input?: string): Promise<void>;
  close(): Promise<void>;
}

export async function storeOnOwnCluster(prefix: string, database: string): Promise<OwnClusterStore> {
  const dir = mkdtempSync(`/tmp/${prefix}-`);
  chmodSync(dir, 0o755);
  const cluster = await startPrivateCluster({ dir: join(dir, 'pg') });
  const pg = parsePgUrl(await createDatabase(cluster, database));
  const configPath = join(dir, 'plexer.conf');
  writeFileAtomic(
    configPath,
    formatConfig({
      pg_host: pg.host,
      pg_port: pg.port,
      pg_database: pg.database,
      pg_user: 'plexer_helper',
      admin_pg_user: pg.user,
      bcrypt_cost: 4,
      authn_timeout_ms: 3000,
    }),
    { mode: 0o644 },
  );
  const cli = async (args: string[], input = 'pw\n') => {
    const result = await runPlexer(args, { configPath, input });
    if (result.code !== 0) throw new Error(`plexer ${args.join(' ')}: ${result.stderr}`);
  };
  await cli(['db', 'migrate', '--helper-role', 'plexer_helper', '--login']);
  return {
    dir,
    cluster,
    configPath,
    pg,
    cli,
    async close() {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
