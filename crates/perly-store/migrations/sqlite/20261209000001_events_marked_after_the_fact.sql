-- SQLite's ingest appends events and marks no customer (issue 17), as
-- PostgreSQL's has since `20261208000001_ingest_without_row_locks`. Its
-- per-batch marks (one read, and often a write, of each customer's
-- `rollups` row for every batch) were about 45 % of the writer's time at
-- 100,000 customers.
--
-- SQLite's one writer commits events in `seq` order, so the events stored
-- since the marker last ran are one range of `seq`:
-- * the marker marks the customers of the events from
--   `event_marks.through` up to the newest `seq`, as ingest did
--   (`import_id` says which import an event belongs to, NULL for live
--   data), then moves `through` past them;
-- * rescoring folds a customer's events after `rollup_blobs.folded_seq`
--   and below `through` (the events whose marks it can see).
--
-- Every event stored before this migration has marked its customer already.
ALTER TABLE events ADD COLUMN import_id TEXT;

CREATE TABLE event_marks (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL
);
INSERT INTO event_marks (id, through) SELECT 1, COALESCE(MAX(seq), 0) + 1 FROM events;
