-- Brings 20261124000001_init.sql as applied by builds of 5c1e236 to f6b0610
-- forward to the file as 474671c edited it (fast customer pages):
-- - the latest score's explanation and the alert detector's state move
--   from customers to customer_scores, row for row;
-- - one index per sort order of the customer list; customers_by_mrr is on
--   the sort expression now (20261124000002_sessions.sql as applied by
--   52ce315 to f6b0610 made it on the plain column, and customers_by_owner);
-- - alerts_by_customer ends with the id (the profile's alerts, newest first).
CREATE TABLE customer_scores (
    customer_id TEXT PRIMARY KEY REFERENCES customers(id),
    workspace_id TEXT NOT NULL,
    explanation TEXT,
    alert_state TEXT
);
INSERT INTO customer_scores (customer_id, workspace_id, explanation, alert_state)
    SELECT id, workspace_id, explanation, alert_state FROM customers
    WHERE explanation IS NOT NULL OR alert_state IS NOT NULL;
ALTER TABLE customers DROP COLUMN explanation;
ALTER TABLE customers DROP COLUMN alert_state;
CREATE INDEX customers_by_score_desc ON customers (workspace_id, (CASE WHEN score IS NULL THEN -1 ELSE score END), id);
CREATE INDEX customers_by_delta ON customers (workspace_id, (CASE WHEN delta IS NULL THEN 1000 ELSE delta END), id);
CREATE INDEX customers_by_delta_desc ON customers (workspace_id, (CASE WHEN delta IS NULL THEN -1000 ELSE delta END), id);
DROP INDEX IF EXISTS customers_by_mrr;
CREATE INDEX customers_by_mrr ON customers (workspace_id, (CASE WHEN mrr IS NULL THEN 1e300 ELSE mrr END), id);
CREATE INDEX customers_by_mrr_desc ON customers (workspace_id, (CASE WHEN mrr IS NULL THEN -1.0 ELSE mrr END), id);
CREATE INDEX IF NOT EXISTS customers_by_owner ON customers (workspace_id, owner_email);
CREATE INDEX customers_by_plan ON customers (workspace_id, plan);
CREATE INDEX customers_by_risk ON customers (workspace_id, risk_level, sort_score, id);
DROP INDEX alerts_by_customer;
CREATE INDEX alerts_by_customer ON alerts (workspace_id, customer_id, occurred_at, id);
