-- Salesforce: the connection, sync runs with their progress, pulled CRM
-- records, the score push outbox, automation rules and their actions.
-- Times are Unix milliseconds (UTC).

-- OAuth state data is now encrypted; flows started before this migration
-- (at most ten minutes old) must be started again.
DELETE FROM oauth_states;

-- Which Salesforce Account a customer came from (NULL: not from Salesforce).
ALTER TABLE customers ADD COLUMN crm_id TEXT;
CREATE INDEX customers_by_crm_id ON customers (workspace_id, crm_id) WHERE crm_id IS NOT NULL;

-- One connected org per workspace. The refresh token is in `secrets`
-- (encrypted), never here.
CREATE TABLE salesforce_connections (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    -- production, sandbox or my_domain; and the login host that was used
    -- (refresh and revoke go back to it).
    environment TEXT NOT NULL,
    login_url TEXT NOT NULL,
    instance_url TEXT NOT NULL,
    org_id TEXT NOT NULL,
    org_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    -- Set when Salesforce refused the refresh token: reconnect needed.
    broken_reason TEXT,
    broken_at INTEGER,
    -- JSON: external id field, picked custom fields, sync interval, API share.
    settings TEXT NOT NULL,
    -- JSON: the last permission check and the custom fields' state.
    permissions TEXT,
    permissions_checked_at INTEGER,
    fields TEXT,
    -- The org's API usage as last read from Sforce-Limit-Info.
    api_used INTEGER,
    api_max INTEGER,
    api_seen_at INTEGER,
    -- After REQUEST_LIMIT_EXCEEDED or with the share used up: no calls before this.
    paused_until INTEGER,
    -- JSON: per object, the SystemModstamp up to which everything is pulled.
    watermarks TEXT NOT NULL,
    -- When the next sync is due; a sync worker holds the lease while it runs.
    next_sync_at INTEGER NOT NULL,
    -- Set by "Sync now"; cleared when a run takes it up.
    sync_requested_at INTEGER,
    sync_lease_until INTEGER,
    connected_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX salesforce_connections_due ON salesforce_connections (next_sync_at);

-- Sync runs, newest last; `progress` is JSON per object (state, rows, total,
-- job id and locator, the window), saved page by page so a run resumes.
CREATE TABLE salesforce_syncs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    trigger TEXT NOT NULL,
    state TEXT NOT NULL,
    progress TEXT NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX salesforce_syncs_by_workspace ON salesforce_syncs (workspace_id, started_at);

-- Pulled Contacts, contact roles, Opportunities, Tasks and Events, as the
-- org last showed them; `data` is JSON of the pulled fields.
CREATE TABLE crm_records (
    workspace_id TEXT NOT NULL,
    object TEXT NOT NULL,
    sf_id TEXT NOT NULL,
    account_sf_id TEXT,
    modstamp INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (workspace_id, object, sf_id)
);
CREATE INDEX crm_records_by_account ON crm_records (workspace_id, account_sf_id, object);

-- The score push outbox: one row per Account holding the latest values to
-- write and what was last written; pending while the two differ.
CREATE TABLE salesforce_pushes (
    workspace_id TEXT NOT NULL,
    account_sf_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    score INTEGER NOT NULL,
    risk_level TEXT NOT NULL,
    scored_at INTEGER NOT NULL,
    pushed_score INTEGER,
    pushed_risk_level TEXT,
    pushed_at INTEGER,
    pending INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_sf_id)
);
CREATE INDEX salesforce_pushes_due ON salesforce_pushes (workspace_id, next_attempt_at) WHERE pending = 1;

-- Automation rules: when (alert kinds, risk at or above, drop of at least N)
-- and what (a Task and/or a Chatter post), as JSON.
CREATE TABLE salesforce_rules (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    rule TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX salesforce_rules_by_workspace ON salesforce_rules (workspace_id, created_at);

-- The automation outbox: at most one Task and one Chatter post per alert,
-- written in the transaction that recorded the alert. `marker` is written
-- into the record and looked up before a retry creates it again.
CREATE TABLE salesforce_actions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    action TEXT NOT NULL,
    account_sf_id TEXT NOT NULL,
    body TEXT NOT NULL,
    marker TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    remote_id TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER,
    UNIQUE (workspace_id, alert_id, action)
);
CREATE INDEX salesforce_actions_due ON salesforce_actions (next_attempt_at) WHERE state = 'pending';
