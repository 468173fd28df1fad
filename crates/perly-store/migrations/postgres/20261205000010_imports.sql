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
    started_at BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    closed_at BIGINT,
    settled_at BIGINT,
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
ALTER TABLE alerts ALTER COLUMN delta DROP NOT NULL;
ALTER TABLE alerts ADD COLUMN import_id TEXT;
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
    created_at BIGINT NOT NULL
);
ALTER TABLE deliveries ADD COLUMN notice_id TEXT;
CREATE UNIQUE INDEX deliveries_notice ON deliveries (channel_id, notice_id);
