-- Perly schema, SQLite flavour. Times are Unix milliseconds (UTC); ids are UUIDv7 text.
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    scorecard TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace_id, email)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    label TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    external_id TEXT NOT NULL,
    name TEXT NOT NULL,
    plan TEXT,
    mrr REAL,
    seats_purchased INTEGER,
    owner_email TEXT,
    parent_external_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    archived_at INTEGER,
    score INTEGER,
    sort_score INTEGER NOT NULL DEFAULT 1000,
    risk_level TEXT,
    delta INTEGER,
    scored_at INTEGER,
    explanation TEXT,
    alert_state TEXT,
    UNIQUE (workspace_id, external_id)
);
CREATE INDEX customers_by_score ON customers (workspace_id, sort_score, id);
CREATE INDEX customers_by_name ON customers (workspace_id, name, id);

CREATE TABLE rollups (
    customer_id TEXT PRIMARY KEY REFERENCES customers(id),
    workspace_id TEXT NOT NULL,
    data BLOB NOT NULL,
    version INTEGER NOT NULL,
    dirty INTEGER NOT NULL,
    -- When the rollup became dirty: rescoring takes the oldest first.
    dirty_at INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX rollups_dirty ON rollups (workspace_id, dirty_at) WHERE dirty = 1;

CREATE TABLE events (
    workspace_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX events_by_customer ON events (workspace_id, customer_id, occurred_at);

CREATE TABLE score_history (
    workspace_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    score INTEGER NOT NULL,
    risk_level TEXT NOT NULL,
    PRIMARY KEY (customer_id, at)
);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    risk_level TEXT NOT NULL,
    score INTEGER NOT NULL,
    delta INTEGER NOT NULL,
    headline TEXT NOT NULL,
    signals TEXT NOT NULL,
    suggested_action TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace_id, customer_id, dedupe_key)
);
CREATE INDEX alerts_feed ON alerts (workspace_id, occurred_at, id);
CREATE INDEX alerts_by_customer ON alerts (workspace_id, customer_id, occurred_at);

CREATE TABLE secrets (
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
