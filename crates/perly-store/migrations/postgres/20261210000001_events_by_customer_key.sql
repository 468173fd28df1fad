-- Each event carries its customer's key (issue 17), a number taken from
-- the customer's id, and a customer's events are found by it. The index by
-- workspace and customer id held two 36-character texts per event,
-- inserted at a random place per event at 100,000 customers; the index by
-- key holds two integers (see the SQLite migration of the same name for
-- the measurement).
--
-- The key keeps the ids' order, so that customers made together have
-- their events side by side in the index: the id's 48-bit millisecond
-- timestamp (a UUIDv7's first 12 hex digits) times 32,768, plus the low
-- 15 bits of the counter that orders the ids made in one millisecond
-- (bits 32 to 46). Keys are not unique: the queries that read by key also
-- compare the customer id.
ALTER TABLE events ADD COLUMN customer_key BIGINT NOT NULL DEFAULT 0;
UPDATE events SET customer_key =
    ('x' || substr(customer_id, 1, 8) || substr(customer_id, 10, 4))::bit(48)::bigint * 32768
    + (('x' || substr(customer_id, 25, 4))::bit(16)::int & 32767)
    WHERE customer_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
ALTER TABLE events ALTER COLUMN customer_key DROP DEFAULT;
DROP INDEX events_by_customer;
CREATE INDEX events_by_customer_key ON events (customer_key, xid);
