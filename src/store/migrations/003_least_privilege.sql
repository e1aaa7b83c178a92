-- The only writes Apache's helpers make, as SECURITY DEFINER functions owned by the schema's owner: the
-- helpers' role (`plexer db grant --helper-role NAME`) may SELECT the tables it answers from and EXECUTE these,
-- nothing else. A stolen helper identity can then neither rewrite routing nor set arbitrary passwords, and each
-- function checks its arguments because it runs with the owner's rights.
--
-- Runs with search_path set to plexer's schema; the DO block at the end pins each function's search_path to
-- that schema (then pg_temp, last, so a caller's temporary table cannot shadow ours).

-- One failure for each subject, within a sliding window that restarts once it has passed; reaching
-- max_failures locks the subject for lock_s seconds. One statement, so concurrent front ends count exactly.
CREATE FUNCTION record_login_failure(subjects text[], window_s integer, max_failures integer, lock_s integer)
  RETURNS TABLE (subject text, failures integer, locked_now boolean)
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
BEGIN
  -- Bounds as in the config file; the caller is Apache's helper, at most a user and an address per login.
  IF subjects IS NULL OR cardinality(subjects) NOT BETWEEN 1 AND 4 THEN
    RAISE EXCEPTION 'record_login_failure: between 1 and 4 subjects expected' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF window_s IS NULL OR window_s NOT BETWEEN 1 AND 2592000 OR lock_s IS NULL OR lock_s NOT BETWEEN 1 AND 2592000
     OR max_failures IS NULL OR max_failures NOT BETWEEN 1 AND 1000000 THEN
    RAISE EXCEPTION 'record_login_failure: window_s and lock_s must be 1..2592000, max_failures 1..1000000'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN QUERY
  INSERT INTO login_failures AS f (subject, failures, locked_until)
  SELECT s, 1, CASE WHEN max_failures <= 1 THEN now() + make_interval(secs => lock_s) END
    FROM unnest(subjects) AS s
  ON CONFLICT (subject) DO UPDATE SET
    failures = CASE WHEN f.window_started_at < now() - make_interval(secs => window_s) THEN 1 ELSE f.failures + 1 END,
    window_started_at = CASE WHEN f.window_started_at < now() - make_interval(secs => window_s) THEN now()
                             ELSE f.window_started_at END,
    locked_until = CASE WHEN (CASE WHEN f.window_started_at < now() - make_interval(secs => window_s) THEN 1
                                   ELSE f.failures + 1 END) >= max_failures
                        THEN now() + make_interval(secs => lock_s) ELSE f.locked_until END
  RETURNING f.subject, f.failures, f.failures >= max_failures;
END
$$;

-- Deletes the failure counts of `subjects` — unless one of `unless_locked` is locked out right now, in which
-- case nothing is deleted and those locked subjects are returned (locked = true). Otherwise returns the
-- subjects it cleared (locked = false). authd's warm path asks both in one round trip.
CREATE FUNCTION clear_login_failures(subjects text[], unless_locked text[] DEFAULT '{}')
  RETURNS TABLE (subject text, locked boolean)
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY SELECT l.subject, true FROM login_failures l
                WHERE l.subject = ANY (coalesce(unless_locked, '{}')) AND l.locked_until > now();
  IF FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY DELETE FROM login_failures l WHERE l.subject = ANY (coalesce(subjects, '{}')) RETURNING l.subject, false;
END
$$;

-- Rehash on login: replaces a hash only with a bcrypt hash of a higher cost (the only reason a helper
-- rehashes), and only if nobody changed the stored one meanwhile. Returns whether it replaced it.
CREATE FUNCTION rehash_password(user_name text, old_hash text, new_hash text)
  RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
  IF new_hash IS NULL OR new_hash !~ '^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$' THEN
    RAISE EXCEPTION 'rehash_password: the new hash is not a bcrypt hash' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF substr(new_hash, 5, 2)::integer <= coalesce(substring(old_hash FROM '^\$2[aby]\$(\d\d)\$')::integer, 0) THEN
    RAISE EXCEPTION 'rehash_password: the new hash must use a higher bcrypt cost than the old one'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE users SET password_hash = new_hash WHERE name = user_name AND password_hash = old_hash;
  RETURN FOUND;
END
$$;

DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION record_login_failure(text[], integer, integer, integer) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION clear_login_failures(text[], text[]) SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION rehash_password(text, text, text) SET search_path = %I, pg_temp', current_schema());
END
$$;

-- New functions are executable by PUBLIC by default; only the roles `plexer db grant` names may call these.
REVOKE ALL ON FUNCTION record_login_failure(text[], integer, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION clear_login_failures(text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION rehash_password(text, text, text) FROM PUBLIC;
