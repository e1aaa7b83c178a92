import type pg from 'pg';

// The RewriteMap lookups. Named statements are prepared once per connection; every one is a primary-key
// probe. A disabled user or a disabled daemon group has no answer, so Apache shows the "no instance" page.
export type MapKind = 'group' | 'settings' | 'backend';
// What `plexer map` answers: the three, and route: "GROUP SETTINGS" (or "GROUP" for a group without a settings
// module), both for one request in one lookup (group and settings names never hold a space). dbm: files are
// written for the two-map form only (see ApacheConfigOptions.twoMaps).
export type PrgMapKind = MapKind | 'route';

// "BACKEND;TOKEN": where to proxy, and the token only Apache sends that backend (migration 008). No backend the
// proxy rules route holds a ";" (PROXY_BACKEND_REGEX), so they split the answer at the first one; not a space,
// which would end the value in a dbm: file (httxt2dbm keeps one word).
const BACKEND_ANSWER = `g.backend || ';' || g.backend_token`;

const statements: Record<PrgMapKind, pg.QueryConfig> = {
  group: {
    name: 'plexer_map_group',
    text: `SELECT g.name AS value FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
           WHERE u.name = $1 AND NOT u.disabled AND g.enabled`,
  },
  settings: {
    name: 'plexer_map_settings',
    text: 'SELECT settings_module AS value FROM daemon_groups WHERE name = $1 AND enabled',
  },
  route: {
    name: 'plexer_map_route',
    text: `SELECT g.name || coalesce(' ' || g.settings_module, '') AS value
             FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
           WHERE u.name = $1 AND NOT u.disabled AND g.enabled`,
  },
  backend: {
    name: 'plexer_map_backend',
    text: `SELECT ${BACKEND_ANSWER} AS value FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
           WHERE u.name = $1 AND NOT u.disabled AND g.enabled`,
  },
};

export async function fetchMapValue(pool: pg.Pool, kind: PrgMapKind, key: string): Promise<string | null> {
  const result = await pool.query<{ value: string | null }>({ ...statements[kind], values: [key] });
  return result.rows[0]?.value ?? null;
}

export async function fetchAllMapValues(client: pg.ClientBase, kind: MapKind): Promise<Array<[string, string]>> {
  const text =
    kind === 'settings'
      ? 'SELECT name AS key, settings_module AS value FROM daemon_groups WHERE enabled AND settings_module IS NOT NULL'
      : `SELECT u.name AS key, ${kind === 'group' ? 'g.name' : BACKEND_ANSWER} AS value
           FROM users u JOIN daemon_groups g ON g.name = u.daemon_group
          WHERE NOT u.disabled AND g.enabled${kind === 'backend' ? ' AND g.backend IS NOT NULL' : ''}`;
  const result = await client.query<{ key: string; value: string }>(text);
  return result.rows.map((row) => [row.key, row.value]);
}
