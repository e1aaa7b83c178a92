-- Server-side login sessions (mod_session_dbd) and the audit trail of account changes.
-- Runs with search_path set to plexer's schema, like every migration.

-- ---- Sessions ---------------------------------------------------------------------------------------------
-- The browser holds only a random key (mod_session_dbd's UUID); the row holds the session, still encrypted by
-- mod_session_crypto (it carries the password mod_auth_form re-checks). Deleting a row ends every copy of that
-- cookie. Only a SHA-256 of the key is stored, so whoever reads this table (a backup, the owner) cannot turn a
-- row back into a working cookie. expiry is mod_session's: microseconds since the epoch, 0 = no expiry.
CREATE TABLE sessions (
  key_hash bytea PRIMARY KEY,
  value    text NOT NULL,
  expiry   bigint NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry) WHERE expiry <> 0;

-- Apache's helpers' role reaches the table only through these functions, one per mod_session_dbd statement,
-- each taking the key it already holds: no role that Apache's children connect as can list sessions.
CREATE FUNCTION session_load(session_key text, now_us bigint) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER
AS $$
  SELECT value FROM sessions
   WHERE key_hash = sha256(convert_to(session_key, 'UTF8')) AND (expiry = 0 OR expiry > now_us)
$$;

-- mod_session_dbd counts the rows its INSERT/UPDATE statement returns; these return one row when they stored
-- the session and none when they did not (an UPDATE of an unknown key makes mod_session_dbd INSERT instead).
CREATE FUNCTION session_insert(session_value text, session_expiry bigint, session_key text) RETURNS SETOF boolean
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
  IF session_key IS NULL OR length(session_key) NOT BETWEEN 16 AND 64 OR session_value IS NULL OR length(session_value) > 16384 THEN
    RAISE EXCEPTION 'session_insert: key of 16..64 characters and a value of at most 16384 expected'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Expired rows go when new ones come: the table stays as large as the sessions alive.
  DELETE FROM sessions WHERE expiry <> 0 AND expiry < (extract(epoch FROM now()) * 1000000)::bigint;
  INSERT INTO sessions (key_hash, value, expiry) VALUES (sha256(convert_to(session_key, 'UTF8')), session_value, session_expiry)
    ON CONFLICT (key_hash) DO NOTHING;
  IF FOUND THEN
    RETURN NEXT true;
  END IF;
END
$$;

CREATE FUNCTION session_update(session_value text, session_expiry bigint, new_key text, old_key text) RETURNS SETOF boolean
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
  IF new_key IS NULL OR length(new_key) NOT BETWEEN 16 AND 64 OR session_value IS NULL OR length(session_value) > 16384 THEN
    RAISE EXCEPTION 'session_update: key of 16..64 characters and a value of at most 16384 expected'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE sessions SET key_hash = sha256(convert_to(new_key, 'UTF8')), value = session_value, expiry = session_expiry
   WHERE key_hash = sha256(convert_to(old_key, 'UTF8')) AND (expiry = 0 OR expiry > (extract(epoch FROM now()) * 1000000)::bigint);
  IF FOUND THEN
    RETURN NEXT true;
  END IF;
END
$$;

CREATE FUNCTION session_delete(session_key text) RETURNS SETOF boolean
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
  DELETE FROM sessions WHERE key_hash = sha256(convert_to(session_key, 'UTF8'));
  IF FOUND THEN
    RETURN NEXT true;
  END IF;
END
$$;

-- ---- Audit ------------------------------------------------------------------------------------------------
-- Every change to users, daemon groups and roles, whoever makes it (the CLI, psql, a script): the database
-- user behind it (session_user: SECURITY DEFINER functions do not change it) and the client's
-- application_name (the CLI sets "plexer-cli"; psql sets "psql"). Password hashes are never copied here.
CREATE TABLE audit (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at               timestamptz NOT NULL DEFAULT clock_timestamp(),
  db_user          text NOT NULL DEFAULT session_user,
  application_name text NOT NULL DEFAULT coalesce(current_setting('application_name', true), ''),
  table_name       text NOT NULL,
  operation        text NOT NULL,
  subject          text,
  old_row          jsonb,
  new_row          jsonb
);
CREATE INDEX audit_at_idx ON audit (at);

-- TG_ARGV[0]: the column naming the subject. A password change shows as password_changed = true.
CREATE FUNCTION audit_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
  old_j jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
  new_j jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO audit (table_name, operation) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
  END IF;
  IF TG_TABLE_NAME = 'users' THEN
    IF TG_OP = 'UPDATE' THEN
      new_j := new_j || jsonb_build_object('password_changed', OLD.password_hash IS DISTINCT FROM NEW.password_hash);
    END IF;
    old_j := old_j - 'password_hash';
    new_j := new_j - 'password_hash';
    -- Only updated_at moved (a no-op UPDATE): nothing to record.
    IF TG_OP = 'UPDATE' AND (new_j - 'updated_at' - 'password_changed') = (old_j - 'updated_at')
       AND NOT (new_j ->> 'password_changed')::boolean THEN
      RETURN NULL;
    END IF;
  END IF;
  INSERT INTO audit (table_name, operation, subject, old_row, new_row)
  VALUES (TG_TABLE_NAME, TG_OP, coalesce(new_j, old_j) ->> TG_ARGV[0], old_j, new_j);
  RETURN NULL;
END
$$;

CREATE TRIGGER users_audit AFTER INSERT OR UPDATE OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION audit_change('name');
CREATE TRIGGER users_audit_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION audit_change('name');
CREATE TRIGGER daemon_groups_audit AFTER INSERT OR UPDATE OR DELETE ON daemon_groups FOR EACH ROW EXECUTE FUNCTION audit_change('name');
CREATE TRIGGER daemon_groups_audit_truncate AFTER TRUNCATE ON daemon_groups FOR EACH STATEMENT EXECUTE FUNCTION audit_change('name');
CREATE TRIGGER user_roles_audit AFTER INSERT OR UPDATE OR DELETE ON user_roles FOR EACH ROW EXECUTE FUNCTION audit_change('user_name');
CREATE TRIGGER user_roles_audit_truncate AFTER TRUNCATE ON user_roles FOR EACH STATEMENT EXECUTE FUNCTION audit_change('user_name');

DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION session_load(text, bigint) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION session_insert(text, bigint, text) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION session_update(text, bigint, text, text) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION session_delete(text) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION audit_change() SET search_path = %I, pg_temp', current_schema());
END
$$;

REVOKE ALL ON FUNCTION session_load(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION session_insert(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION session_update(text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION session_delete(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_change() FROM PUBLIC;
