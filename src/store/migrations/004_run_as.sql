-- The OS account a daemon group's processes run as ("user" or "user:group"); NULL: Apache's run user, as before.
-- The pattern repeats RUN_AS_PATTERN in src/names.ts (test/names.test.ts checks that both agree). Names only:
-- whether an account is acceptable (not root, not Apache's own user) depends on the machine that runs the
-- group and is checked there (plexer group add/set, plexer apache config).
ALTER TABLE daemon_groups ADD COLUMN run_as text
  CONSTRAINT run_as_valid CHECK (run_as ~ '^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$');

-- One OS user per tenant: two groups under one user could read each other's data, so the store refuses it
-- however the row is written.
CREATE UNIQUE INDEX daemon_groups_run_as_user_unique ON daemon_groups (split_part(run_as, ':', 1)) WHERE run_as IS NOT NULL;
