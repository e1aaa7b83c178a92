-- "auto" and "none" are what `plexer user add|move --group` reads as keywords (the emptiest group, no group): a
-- daemon group of either name could be created but never chosen by name. The names' CHECK now refuses them, as
-- src/names.ts does. A store that has such a group already stops here, naming the rename that lets it go on.
DO $$
DECLARE
  taken text;
BEGIN
  SELECT name INTO taken FROM daemon_groups WHERE name IN ('auto', 'none') LIMIT 1;
  IF taken IS NOT NULL THEN
    RAISE EXCEPTION 'daemon group "%" has a name that plexer user --group reads as a keyword; rename it first: UPDATE daemon_groups SET name = ''%-group'' WHERE name = ''%''', taken, taken, taken;
  END IF;
END
$$;

ALTER TABLE daemon_groups DROP CONSTRAINT daemon_group_name_valid;
ALTER TABLE daemon_groups ADD CONSTRAINT daemon_group_name_valid
  CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$' AND name NOT IN ('auto', 'none'));
