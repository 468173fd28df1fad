-- PostgreSQL ingest appends events and touches no other row (issue 17).
-- Before, each ingest transaction locked and updated its customers'
-- `rollups` rows so that one customer's events committed in `seq` order;
-- concurrent batches always shared customers, so they waited for each other.
--
-- Now each event carries the id of the transaction that stored it (`xid`).
-- Every transaction with an id below the oldest one still running (the
-- snapshot's `xmin`) has ended, so the events below that bound are final:
-- * rescoring folds a customer's events from `rollup_blobs.folded_xid` up
--   to its snapshot's bound, and stores that bound as the new `folded_xid`;
-- * the marker marks the customers of the events from `event_marks.through`
--   up to its bound for rescoring, as ingest did (`import_id` says which
--   import an event belongs to, NULL for live data), then moves `through`.
--
-- Events stored before this migration were folded if their `seq` was at
-- most their customer's `folded_seq`: those get `xid` 1, the others 2, and
-- every stored rollup `folded_xid` 2. Their customers are marked already.
ALTER TABLE events ADD COLUMN xid BIGINT NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN import_id TEXT;
UPDATE events e SET xid = 2 FROM rollup_blobs b
    WHERE b.customer_id = e.customer_id AND b.workspace_id = e.workspace_id AND e.seq > b.folded_seq;
ALTER TABLE events ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
ALTER TABLE rollup_blobs ADD COLUMN folded_xid BIGINT NOT NULL DEFAULT 2;
ALTER TABLE rollup_blobs ALTER COLUMN folded_xid SET DEFAULT 0;
ALTER TABLE rollup_blobs ALTER COLUMN folded_seq SET DEFAULT 0;

-- A customer's events after a bound are one range of this index.
DROP INDEX events_by_customer;
CREATE INDEX events_by_customer ON events (workspace_id, customer_id, xid);
-- The marker's range: the events stored since it last ran.
CREATE INDEX events_by_xid ON events (xid);

CREATE TABLE event_marks (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    through BIGINT NOT NULL
);
INSERT INTO event_marks (id, through) VALUES (1, pg_current_xact_id()::text::bigint);
