-- Sessions also end after an idle time: the last request seen, written at
-- most once a minute. Expired sessions are purged by these two indexes.
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at = created_at;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);

-- API keys: a scope ('full' or 'ingest'), an optional expiry, and when the
-- key was last used (written at most once a minute).
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;

-- Failed sign-ins, one row each, shared by every server process: counted
-- per (email, client IP) and per client IP within a window, then purged.
-- An attempt is written when it starts and deleted if its password was
-- right, so guesses sent at once count before their passwords are checked.
CREATE TABLE signin_failures (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    ip TEXT NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX signin_failures_by_email_ip ON signin_failures (email, ip, failed_at);
CREATE INDEX signin_failures_by_ip ON signin_failures (ip, failed_at);
CREATE INDEX signin_failures_by_time ON signin_failures (failed_at);

-- A sign-in whose password matched accounts in several workspaces waits
-- here, briefly, for the choice of workspace. The cookie holds a random
-- token; only its hash is stored.
CREATE TABLE signin_choices (
    token_hash TEXT PRIMARY KEY,
    user_ids TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX signin_choices_by_expiry ON signin_choices (expires_at);
