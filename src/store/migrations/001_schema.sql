-- Runs with search_path set to plexer's schema (default "plexer"). Names and values are validated here, not
-- only in the CLI, so rows written with plain psql can never hold something the helpers would misread.
-- The patterns repeat src/names.ts; test/names.test.ts checks that both agree.

CREATE TABLE daemon_groups (
  name            text PRIMARY KEY
                  CONSTRAINT daemon_group_name_valid CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
  settings_module text
                  CONSTRAINT settings_module_valid
                  CHECK (settings_module ~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$'),
  backend         text
                  CONSTRAINT backend_valid
                  CHECK (backend ~ '^(unix:/[A-Za-z0-9._/-]{1,200}\|)?(https?|fcgi|uwsgi|scgi)://[A-Za-z0-9._:\[\]-]{1,255}(/[A-Za-z0-9._~%/-]*)?$'),
  capacity        integer CONSTRAINT capacity_positive CHECK (capacity > 0),
  enabled         boolean NOT NULL DEFAULT true,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  name          text PRIMARY KEY
                CONSTRAINT user_name_valid CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$'),
  -- bcrypt only: the authenticator verifies nothing else, so anything else would lock the user out silently.
  password_hash text NOT NULL
                CONSTRAINT password_hash_is_bcrypt CHECK (password_hash ~ '^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$'),
  -- NULL: the user exists and may log in, but has no backend; the map answers NULL and Apache shows the
  -- "no instance" page.
  daemon_group  text REFERENCES daemon_groups (name) ON UPDATE CASCADE ON DELETE RESTRICT,
  disabled      boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX users_daemon_group_idx ON users (daemon_group);

-- Roles answer Apache's `Require external-group ROLE`; they are unrelated to daemon groups.
CREATE TABLE user_roles (
  user_name text NOT NULL REFERENCES users (name) ON UPDATE CASCADE ON DELETE CASCADE,
  role      text NOT NULL CONSTRAINT role_name_valid CHECK (role ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  PRIMARY KEY (user_name, role)
);

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER daemon_groups_touch BEFORE UPDATE ON daemon_groups FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Every change, whoever makes it, tells running helpers which key moved: payload "<prefix>:<name>", or "*"
-- when a whole table was truncated. The channel is "<schema>_changes" so two plexer schemas in one database
-- stay apart. TG_ARGV: 0 = payload prefix, 1 = the column naming the key.
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  channel text := TG_TABLE_SCHEMA || '_changes';
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify(channel, '*');
    RETURN NULL;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    PERFORM pg_notify(channel, TG_ARGV[0] || ':' || (to_jsonb(OLD) ->> TG_ARGV[1]));
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM pg_notify(channel, TG_ARGV[0] || ':' || (to_jsonb(NEW) ->> TG_ARGV[1]));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER daemon_groups_notify AFTER INSERT OR UPDATE OR DELETE ON daemon_groups
  FOR EACH ROW EXECUTE FUNCTION notify_change('g', 'name');
CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION notify_change('u', 'name');
CREATE TRIGGER user_roles_notify AFTER INSERT OR UPDATE OR DELETE ON user_roles
  FOR EACH ROW EXECUTE FUNCTION notify_change('r', 'user_name');
CREATE TRIGGER daemon_groups_notify_truncate AFTER TRUNCATE ON daemon_groups
  FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE TRIGGER users_notify_truncate AFTER TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE TRIGGER user_roles_notify_truncate AFTER TRUNCATE ON user_roles
  FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
