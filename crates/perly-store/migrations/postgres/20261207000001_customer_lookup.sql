-- The events API finds each event's customer by its external id. On SQLite
-- the unique index alone made every lookup read the customer's row too (a
-- random page of the wide `customers` table at 100,000 customers); the
-- index below answers it by itself (issue 17). PostgreSQL gets the same
-- index, so that both backends keep one schema: its lookups can be
-- index-only scans where the table's visibility map allows.
CREATE INDEX customers_live_by_external_id ON customers (workspace_id, external_id) INCLUDE (id) WHERE archived_at IS NULL;
