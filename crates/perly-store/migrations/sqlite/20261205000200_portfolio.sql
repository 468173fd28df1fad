-- The portfolio page counts live customers and sums their MRR per risk
-- level: this index covers that GROUP BY, so it reads index entries only.
CREATE INDEX customers_by_risk_mrr ON customers (workspace_id, risk_level, mrr) WHERE archived_at IS NULL;
