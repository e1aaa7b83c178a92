-- A proxy backend learns who is asking from X-Plexer-User, which anyone who can connect to it could send: a TCP
-- port on loopback is open to every local user, other tenants included. So each group has a token that only
-- Apache sends its backend (X-Plexer-Token, and PLEXER_BACKEND_TOKEN to a FastCGI backend): the backend serves
-- a request only when the token is its own. Random per group, 128 bits (32 hex digits) from the server's strong
-- random source (gen_random_uuid, hashed), made by the default for rows written with plain SQL too (a longer one
-- made dbm: rebuilds slower: 30,000 users 1.4 s without, 1.9 s with 32 digits, 2.5 s with 64); `plexer group token NAME`
-- prints it and `--rotate` replaces it. The maps answer it with the backend (the helpers' role reads the table).
ALTER TABLE daemon_groups ADD COLUMN backend_token text NOT NULL
  DEFAULT substr(encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex'), 1, 32)
  CONSTRAINT backend_token_format CHECK (backend_token ~ '^[0-9a-f]{32}$');
