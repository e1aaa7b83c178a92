-- htpasswd's MD5 ($apr1$) and SHA-1 ({SHA}) hashes may be imported as they are (`plexer user import-htpasswd`)
-- and are replaced by bcrypt at the user's first successful login. The patterns repeat src/password.ts.

ALTER TABLE users DROP CONSTRAINT password_hash_is_bcrypt;
ALTER TABLE users ADD CONSTRAINT password_hash_format CHECK (
  password_hash ~ '^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$'
  OR password_hash ~ '^\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$'
  OR password_hash ~ '^\{SHA\}[A-Za-z0-9+/]{27}=$');

-- As in 003, and a legacy hash may be replaced by a bcrypt hash of any cost: it is weaker than all of them.
CREATE OR REPLACE FUNCTION rehash_password(user_name text, old_hash text, new_hash text)
  RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
  IF new_hash IS NULL OR new_hash !~ '^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$' THEN
    RAISE EXCEPTION 'rehash_password: the new hash is not a bcrypt hash' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF old_hash ~ '^\$2[aby]\$' THEN
    IF substr(new_hash, 5, 2)::integer <= substring(old_hash FROM '^\$2[aby]\$(\d\d)\$')::integer THEN
      RAISE EXCEPTION 'rehash_password: the new hash must use a higher bcrypt cost than the old one'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
  ELSIF old_hash IS NULL OR (old_hash !~ '^\$apr1\$' AND old_hash !~ '^\{SHA\}') THEN
    RAISE EXCEPTION 'rehash_password: the old hash is neither bcrypt, $apr1$ nor {SHA}' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE users SET password_hash = new_hash WHERE name = user_name AND password_hash = old_hash;
  RETURN FOUND;
END
$$;

-- CREATE OR REPLACE keeps the grants but not the function's settings.
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION rehash_password(text, text, text) SET search_path = %I, pg_temp', current_schema());
END
$$;
