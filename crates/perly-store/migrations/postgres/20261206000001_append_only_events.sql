-- Ingest appends events and marks their customers for rescoring; the
-- rescoring worker folds each customer's new events into its rollup once per
-- pass (issue 17). Before, every batch decoded, folded and rewrote the
-- rollup of each customer it touched.
--
-- Events get a sequence number in the order they were stored, and the
-- customer index ends with it, so a customer's events after a point are one
-- range of the index. Ingest locks a customer's `rollups` row before it
-- stores that customer's events, so one customer's events commit in `seq`
-- order even with several writers.
ALTER TABLE events ADD COLUMN seq BIGSERIAL;
DROP INDEX events_by_customer;
CREATE INDEX events_by_customer ON events (workspace_id, customer_id, seq);

-- The folded rollups move out of `rollups`, whose narrow row (version, dirty
-- mark, lease) ingest now updates on every batch without rewriting the blob.
-- `folded_seq`: the newest event folded into `data`. Every event stored so
-- far was folded when it arrived.
CREATE TABLE rollup_blobs (
    customer_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    data BYTEA NOT NULL,
    folded_seq BIGINT NOT NULL
);
INSERT INTO rollup_blobs (customer_id, workspace_id, data, folded_seq)
    SELECT customer_id, workspace_id, data, (SELECT COALESCE(MAX(seq), 0) FROM events)
    FROM rollups WHERE length(data) > 0;
UPDATE rollups SET data = ''::bytea;
