-- Brings 20261124000002_sessions.sql as applied by builds of 52ce315 to
-- f6b0610 forward to the file as 474671c edited it: the two customer
-- indexes it made (customers_by_mrr on the plain column, customers_by_owner)
-- moved to 20261124000001_init.sql, customers_by_mrr onto the sort
-- expression. The repair of init (applied with this one) already made them
-- so; this holds on its own too.
DROP INDEX IF EXISTS customers_by_mrr;
CREATE INDEX customers_by_mrr ON customers (workspace_id, (CASE WHEN mrr IS NULL THEN 1e300 ELSE mrr END), id);
CREATE INDEX IF NOT EXISTS customers_by_owner ON customers (workspace_id, owner_email);
