-- Each event carries its customer's key (issue 17), a number taken from
-- the customer's id, and a customer's events are found by it. The index by
-- workspace and customer id held two 36-character texts per event; at
-- 100,000 customers each batch's inserts land on a random leaf of it per
-- event, and its size made that a page read and write per event. The index
-- by key holds two integers: measured with the same rows as `perly bench
-- ingest` (500,000 events over 100,000 customers, batches of 1,000), a
-- bare insert went from 53 k to 81 k events/s.
--
-- The key keeps the ids' order, so that customers made together (an
-- import) have their events side by side in the index, as they had by id:
-- a full rescore reads them leaf after leaf. It is the id's 48-bit
-- millisecond timestamp (a UUIDv7's first 12 hex digits) times 32,768,
-- plus the low 15 bits of the counter that orders the ids made in one
-- millisecond (bits 32 to 46, in the 4 hex digits of the last group's
-- start). Keys of random bits instead (the id's last 12 digits) scattered
-- one claim's customers over the whole index: a full rescore of 20,000
-- customers on PostgreSQL took 4.5–5.0 s instead of 3.3 s.
--
-- Keys are not unique (ids made by another process in the same
-- millisecond share one in 32,768): the queries that read by key also
-- compare the customer id.
--
-- SQLite has no hexadecimal parser: the digits are summed one by one. The
-- table is rebuilt so that the key is NOT NULL without a default (an
-- insert that forgets it fails rather than hides the event).
CREATE TABLE events_new (
    seq INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    import_id TEXT,
    customer_key INTEGER NOT NULL,
    UNIQUE (workspace_id, event_id)
);
INSERT INTO events_new (seq, workspace_id, event_id, customer_id, type, occurred_at, received_at, payload, import_id, customer_key)
    SELECT seq, workspace_id, event_id, customer_id, type, occurred_at, received_at, payload, import_id,
        (instr('0123456789abcdef', substr(customer_id, 1, 1)) - 1) * 576460752303423488 +
        (instr('0123456789abcdef', substr(customer_id, 2, 1)) - 1) * 36028797018963968 +
        (instr('0123456789abcdef', substr(customer_id, 3, 1)) - 1) * 2251799813685248 +
        (instr('0123456789abcdef', substr(customer_id, 4, 1)) - 1) * 140737488355328 +
        (instr('0123456789abcdef', substr(customer_id, 5, 1)) - 1) * 8796093022208 +
        (instr('0123456789abcdef', substr(customer_id, 6, 1)) - 1) * 549755813888 +
        (instr('0123456789abcdef', substr(customer_id, 7, 1)) - 1) * 34359738368 +
        (instr('0123456789abcdef', substr(customer_id, 8, 1)) - 1) * 2147483648 +
        (instr('0123456789abcdef', substr(customer_id, 10, 1)) - 1) * 134217728 +
        (instr('0123456789abcdef', substr(customer_id, 11, 1)) - 1) * 8388608 +
        (instr('0123456789abcdef', substr(customer_id, 12, 1)) - 1) * 524288 +
        (instr('0123456789abcdef', substr(customer_id, 13, 1)) - 1) * 32768 +
        ((instr('0123456789abcdef', substr(customer_id, 25, 1)) - 1) * 4096 + (instr('0123456789abcdef', substr(customer_id, 26, 1)) - 1) * 256 + (instr('0123456789abcdef', substr(customer_id, 27, 1)) - 1) * 16 + (instr('0123456789abcdef', substr(customer_id, 28, 1)) - 1) * 1) % 32768
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_by_customer_key ON events (customer_key, seq);
