-- Slack and Discord channels, the delivery outbox, its attempt log, and
-- OAuth states. Times are Unix milliseconds (UTC).
CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    platform TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The webhook URL, encrypted (bound to workspace and channel id).
    webhook BYTEA NOT NULL,
    -- What may be shown of it: host and the first characters of the path.
    webhook_hint TEXT NOT NULL,
    -- How it was connected: oauth or pasted; and vendor details (team, guild, channel ids).
    source TEXT NOT NULL,
    details TEXT NOT NULL,
    rules TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    -- Set when the vendor said the webhook is gone; deliveries wait until it is reconnected.
    broken_reason TEXT,
    broken_at BIGINT,
    -- Pacing (GCRA theoretical arrival time) and the earliest next attempt (pacing, backoff, Retry-After).
    pace_tat BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    -- A worker holds the channel while one message is in flight.
    lease_until BIGINT,
    last_sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX channels_by_workspace ON channels (workspace_id, created_at);

-- The delivery outbox: one row per (alert, channel), written in the
-- transaction that recorded the alert. Test messages have no alert.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels(id),
    alert_id TEXT,
    -- pending, sent or dead (refused by the vendor; kept with its answer).
    state TEXT NOT NULL,
    -- Held for quiet hours: run_at is when business hours open.
    held BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (channel_id, alert_id)
);
-- Workers claim across workspaces: what is due, oldest first.
CREATE INDEX deliveries_due ON deliveries (run_at, channel_id) WHERE state = 'pending';
CREATE INDEX deliveries_by_channel ON deliveries (channel_id, state, id);

-- Every attempt to post to a channel, for the delivery log.
CREATE TABLE delivery_attempts (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    channel_id TEXT NOT NULL REFERENCES channels(id),
    at BIGINT NOT NULL,
    alerts BIGINT NOT NULL,
    status BIGINT,
    latency_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    answer TEXT NOT NULL
);
CREATE INDEX delivery_attempts_by_channel ON delivery_attempts (workspace_id, channel_id, at);

-- OAuth 2.0 states: random, single-use, bound to the admin who started the
-- flow, expiring. Only the hash of the state is kept.
CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
