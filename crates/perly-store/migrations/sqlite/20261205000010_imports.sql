-- History is not news (issue 15): facts that describe the past (a backfill,
-- the first Salesforce sync, old events, a scorecard change) are scored and
-- recorded, and each channel gets one summary per import instead of a
-- message per alert.

-- One import: rescoring it caused is summarised once it has settled.
CREATE TABLE imports (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    -- events (backfills and late events), salesforce (a first sync) or scorecard.
    source TEXT NOT NULL,
    label TEXT NOT NULL,
    -- open (may still grow), closed (complete; waits for its rescoring), settled (summarised).
    state TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    closed_at INTEGER,
    settled_at INTEGER,
    -- JSON: customers per risk level, alerts per kind, top customers by MRR.
    summary TEXT
);
CREATE INDEX imports_by_workspace ON imports (workspace_id, started_at);
CREATE INDEX imports_unsettled ON imports (state, workspace_id);

-- The import whose data is waiting to be scored (NULL: live data waits, or
-- nothing does), and the last import that touched the customer.
ALTER TABLE rollups ADD COLUMN dirty_import TEXT;
ALTER TABLE rollups ADD COLUMN last_import TEXT;
CREATE INDEX rollups_by_last_import ON rollups (workspace_id, last_import);

-- The import of a first Salesforce sync.
ALTER TABLE salesforce_syncs ADD COLUMN import_id TEXT;

-- Alerts: `delta` may be NULL (no score from 7 days ago to compare with),
-- and an alert recorded from history names its import (not sent one by one).
CREATE TABLE alerts_new (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    risk_level TEXT NOT NULL,
    score INTEGER NOT NULL,
    delta INTEGER,
    headline TEXT NOT NULL,
    signals TEXT NOT NULL,
    suggested_action TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    import_id TEXT,
    UNIQUE (workspace_id, customer_id, dedupe_key)
);
INSERT INTO alerts_new (id, workspace_id, customer_id, kind, dedupe_key, risk_level, score, delta, headline, signals,
    suggested_action, occurred_at, created_at)
    SELECT id, workspace_id, customer_id, kind, dedupe_key, risk_level, score, delta, headline, signals,
    suggested_action, occurred_at, created_at FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE INDEX alerts_feed ON alerts (workspace_id, occurred_at, id);
CREATE INDEX alerts_by_customer ON alerts (workspace_id, customer_id, occurred_at, id);
CREATE INDEX alerts_by_import ON alerts (workspace_id, import_id);

-- A summary message (of an import) for channels; deliveries carry either an
-- alert, a notice, or neither (a test message).
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    import_id TEXT,
    title TEXT NOT NULL,
    -- JSON array of lines.
    lines TEXT NOT NULL,
    more TEXT,
    risk_level TEXT,
    created_at INTEGER NOT NULL
);
ALTER TABLE deliveries ADD COLUMN notice_id TEXT;
CREATE UNIQUE INDEX deliveries_notice ON deliveries (channel_id, notice_id);
