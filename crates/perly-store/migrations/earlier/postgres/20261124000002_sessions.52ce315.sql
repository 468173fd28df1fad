-- Browser sessions: the cookie holds a random token; only its hash is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (workspace_id, user_id);
CREATE INDEX users_by_email ON users (email);
CREATE INDEX customers_by_mrr ON customers (workspace_id, mrr, id);
CREATE INDEX customers_by_owner ON customers (workspace_id, owner_email);
