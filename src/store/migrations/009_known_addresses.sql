-- A victim keeps access from where she already logs in. The name alone is locked (user:NAME, at 10x the limit)
-- when many addresses guess her password; before, that locked her out everywhere, so anyone with enough
-- addresses (with IPv6, anyone) could keep any user out. Now a successful login from an address makes it known
-- for that user for 90 days (her last 20 addresses; "known:NAME/ADDRESS", a row of its own here, so it reaches
-- every front end's lock files and authd's mirror by the same channel as the lockouts, locked_until being when it
-- stops being known), and a lockout of the name alone does not hold at a known address. The pair and the
-- address locks still do.
ALTER TABLE login_failures DROP CONSTRAINT subject_valid;
ALTER TABLE login_failures ADD CONSTRAINT subject_valid
  CHECK (subject ~ '^((user|ip):.{1,128}|(pair|known):[^/]{1,128}/[0-9A-Fa-f:.]{2,45})$');

-- As in 003: the subjects of unless_locked that are locked, else the success clears `subjects`. Now also: a
-- known:NAME/ADDR among unless_locked that is in force lifts user:NAME from the answer (and is no lockout
-- itself), and a success records each pair:NAME/ADDR it clears as known.
CREATE OR REPLACE FUNCTION clear_login_failures(subjects text[], unless_locked text[] DEFAULT '{}')
  RETURNS TABLE (subject text, locked boolean)
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
#variable_conflict use_column
DECLARE
  known_users text[];
BEGIN
  SELECT coalesce(array_agg(split_part(substr(l.subject, 7), '/', 1)), '{}') INTO known_users
    FROM login_failures l
   WHERE l.subject = ANY (coalesce(unless_locked, '{}')) AND starts_with(l.subject, 'known:') AND l.locked_until > now();
  RETURN QUERY SELECT l.subject, true FROM login_failures l
                WHERE l.subject = ANY (coalesce(unless_locked, '{}')) AND l.locked_until > now()
                  AND NOT starts_with(l.subject, 'known:')
                  AND NOT (starts_with(l.subject, 'user:') AND substr(l.subject, 6) = ANY (known_users));
  IF FOUND THEN
    RETURN;
  END IF;
  -- A success from an address (its pair among `subjects`) while the name is locked was let in as known: the
  -- lockout of the name stays, it holds everywhere else.
  RETURN QUERY DELETE FROM login_failures l
                WHERE l.subject = ANY (coalesce(subjects, '{}')) AND NOT starts_with(l.subject, 'known:')
                  AND NOT (starts_with(l.subject, 'user:') AND coalesce(l.locked_until > now(), false)
                           AND EXISTS (SELECT 1 FROM unnest(subjects) AS s WHERE starts_with(s, 'pair:' || substr(l.subject, 6) || '/')))
                RETURNING l.subject, false;
  INSERT INTO login_failures AS f (subject, failures, locked_until)
  SELECT 'known:' || substr(s, 6), 1, now() + interval '90 days'
    FROM unnest(coalesce(subjects, '{}')) AS s
   WHERE starts_with(s, 'pair:')
  ON CONFLICT (subject) DO UPDATE SET locked_until = excluded.locked_until, window_started_at = now();
  -- At most the 20 addresses a user logged in from last: one with many addresses (IPv6) must not fill the table,
  -- nor the lock directory when her name is locked.
  DELETE FROM login_failures l
   WHERE starts_with(l.subject, 'known:')
     AND split_part(substr(l.subject, 7), '/', 1) IN
         (SELECT split_part(substr(s, 6), '/', 1) FROM unnest(coalesce(subjects, '{}')) AS s WHERE starts_with(s, 'pair:'))
     AND l.subject NOT IN (
       SELECT k.subject FROM login_failures k
        WHERE starts_with(k.subject, 'known:' || split_part(substr(l.subject, 7), '/', 1) || '/')
        ORDER BY k.window_started_at DESC LIMIT 20);
END
$$;

DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION clear_login_failures(text[], text[]) SET search_path = %I, pg_temp', current_schema());
END
$$;
