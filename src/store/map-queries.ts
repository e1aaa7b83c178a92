import type pg from 'pg';

// The three RewriteMap lookups. Named statements are prepared once per connection; every one is a primary-key
// probe. A disabled user or a disabled daemon group has no answer, so Apache shows the "no instance" page.
export type MapKind = 'group' | 'settings' | 'backend';

const statements: Record<MapKind, pg.QueryConfig> = {
  group: {
    name: 'plexer_map_group',
    text: `SELECT g.name AS value FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
           WHERE u.name = $1 AND NOT u.disabled AND g.enabled`,
  },
  settings: {
    name: 'plexer_map_settings',
    text: 'SELECT settings_module AS value FROM daemon_groups WHERE name = $1 AND enabled',
  },
  backend: {
    name: 'plexer_map_backend',
    text: `SELECT g.backend AS value FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
           WHERE u.name = $1 AND NOT u.disabled AND g.enabled`,
  },
};

export async function fetchMapValue(pool: pg.Pool, kind: MapKind, key: string): Promise<string | null> {
  const result = await pool.query<{ value: string | null }>({ ...statements[kind], values: [key] });
  return result.rows[0]?.value ?? null;
}

export async function fetchAllMapValues(client: pg.ClientBase, kind: MapKind): Promise<Array<[string, string]>> {
  const text =
    kind === 'settings'
      ? 'SELECT name AS key, settings_module AS value FROM daemon_groups WHERE enabled AND settings_module IS NOT NULL'
      : `SELECT u.name AS key, g.${kind === 'group' ? 'name' : 'backend'} AS value
           FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
          WHERE NOT u.disabled AND g.enabled${kind === 'backend' ? ' AND g.backend IS NOT NULL' : ''}`;
  const result = await client.query<{ key: string; value: string }>(text);
  return result.rows.map((row) => [row.key, row.value]);
}
