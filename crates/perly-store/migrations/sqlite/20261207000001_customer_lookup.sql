-- The events API finds each event's customer by its external id: with the
-- unique index alone, every lookup also read the customer's row (a page of
-- the wide `customers` table, a random one at 100,000 customers, often out
-- of the page cache). This index answers the lookup by itself (issue 17);
-- `archived_at`, always NULL here, is in it so that SQLite sees it covers
-- the lookup's condition.
CREATE INDEX customers_live_by_external_id ON customers (workspace_id, external_id, id, archived_at) WHERE archived_at IS NULL;
