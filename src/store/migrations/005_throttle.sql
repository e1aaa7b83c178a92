-- Throttling that protects users instead of locking them out (src/store/throttle.ts has the limits):
-- failures are also counted per user name AND address ("pair:NAME/ADDRESS"; "/" is in neither a user name
-- nor an address), so a guesser elsewhere stops only himself; the user name alone is locked only at a much
-- higher count.
ALTER TABLE login_failures DROP CONSTRAINT subject_valid;
ALTER TABLE login_failures ADD CONSTRAINT subject_valid
  CHECK (subject ~ '^((user|ip):.{1,128}|pair:[^/]{1,128}/[0-9A-Fa-f:.]{2,45})$');

-- Lockouts as they start and end, for authd's in-memory mirror (its warm checks read no table). Its own
-- channel: the maps and sync listen on "<schema>_changes" and need none of this. Payload "SUBJECT EPOCH_MS"
-- (0: no longer locked), or "*" after a TRUNCATE.
CREATE FUNCTION notify_lockout() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  channel text := TG_TABLE_SCHEMA || '_lockouts';
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify(channel, '*');
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    IF OLD.locked_until > now() THEN
      PERFORM pg_notify(channel, OLD.subject || ' 0');
    END IF;
    RETURN OLD;
  END IF;
  -- A first failure that locks nothing says nothing: a late "0" would only undo a lockout a reader set early.
  IF (TG_OP = 'INSERT' AND NEW.locked_until IS NOT NULL)
     OR (TG_OP = 'UPDATE' AND NEW.locked_until IS DISTINCT FROM OLD.locked_until) THEN
    PERFORM pg_notify(channel, NEW.subject || ' ' ||
      coalesce(floor(extract(epoch FROM NEW.locked_until) * 1000)::bigint, 0)::text);
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER login_failures_lockout AFTER INSERT OR UPDATE OR DELETE ON login_failures
  FOR EACH ROW EXECUTE FUNCTION notify_lockout();
CREATE TRIGGER login_failures_truncate AFTER TRUNCATE ON login_failures
  FOR EACH STATEMENT EXECUTE FUNCTION notify_lockout();

-- As in 003, plus pruning: a row whose window has passed and whose lockout (if any) has ended counts as
-- nothing (the next failure restarts it at 1), so deleting it changes no answer. About one call in fifty
-- does it, so a flood of failures does not also pay a scan each.
CREATE OR REPLACE FUNCTION record_login_failure(subjects text[], window_s integer, max_failures integer, lock_s integer)
  RETURNS TABLE (subject text, failures integer, locked_now boolean)
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
BEGIN
  IF subjects IS NULL OR cardinality(subjects) NOT BETWEEN 1 AND 4 THEN
    RAISE EXCEPTION 'record_login_failure: between 1 and 4 subjects expected' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF window_s IS NULL OR window_s NOT BETWEEN 1 AND 2592000 OR lock_s IS NULL OR lock_s NOT BETWEEN 1 AND 2592000
     OR max_failures IS NULL OR max_failures NOT BETWEEN 1 AND 1000000 THEN
    RAISE EXCEPTION 'record_login_failure: window_s and lock_s must be 1..2592000, max_failures 1..1000000'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF random() < 0.02 THEN
    DELETE FROM login_failures l
     WHERE l.window_started_at < now() - make_interval(secs => window_s)
       AND (l.locked_until IS NULL OR l.locked_until <= now());
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

-- CREATE OR REPLACE drops the function's settings: pin its search_path again (see 003).
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION record_login_failure(text[], integer, integer, integer) SET search_path = %I, pg_temp', current_schema());
END
$$;
