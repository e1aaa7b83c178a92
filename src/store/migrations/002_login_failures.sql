-- Failed logins, counted per user name and per client address, in the store so every front end shares them.
-- No notify trigger: these rows change on every failed login and no cached routing answer depends on them.
CREATE TABLE login_failures (
  subject           text PRIMARY KEY CONSTRAINT subject_valid CHECK (subject ~ '^(user|ip):.{1,128}$'),
  failures          integer NOT NULL CHECK (failures > 0),
  window_started_at timestamptz NOT NULL DEFAULT now(),
  locked_until      timestamptz
);
