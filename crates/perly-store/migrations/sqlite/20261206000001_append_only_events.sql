-- Ingest appends events and marks their customers for rescoring; the
-- rescoring worker folds each customer's new events into its rollup once per
-- pass (issue 17). Before, every batch decoded, folded and rewrote the
-- rollup of each customer it touched.
--
-- Events get a sequence number in the order they were stored (`seq`, an
-- INTEGER PRIMARY KEY: unlike an implicit rowid, VACUUM keeps it), and the
-- customer index ends with it, so a customer's events after a point are one
-- range of the index.
CREATE TABLE events_new (
    seq INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (workspace_id, event_id)
);
INSERT INTO events_new (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload)
    SELECT workspace_id, event_id, customer_id, type, occurred_at, received_at, payload FROM events ORDER BY rowid;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_by_customer ON events (workspace_id, customer_id, seq);

-- The folded rollups move out of `rollups`, whose narrow row (version, dirty
-- mark, lease) ingest now updates on every batch without rewriting the blob.
-- `folded_seq`: the newest event folded into `data`. Every event stored so
-- far was folded when it arrived.
CREATE TABLE rollup_blobs (
    customer_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    data BLOB NOT NULL,
    folded_seq INTEGER NOT NULL
);
INSERT INTO rollup_blobs (customer_id, workspace_id, data, folded_seq)
    SELECT customer_id, workspace_id, data, (SELECT COALESCE(MAX(seq), 0) FROM events)
    FROM rollups WHERE length(data) > 0;
UPDATE rollups SET data = x'';
