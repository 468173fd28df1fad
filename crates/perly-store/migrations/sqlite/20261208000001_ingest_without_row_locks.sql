-- Nothing changes on SQLite: its one writer commits every event in `seq`
-- order, so rescoring folds after `folded_seq` and ingest marks customers as
-- before. (PostgreSQL's ingest stopped locking rows; see its migration of the
-- same name.)
SELECT 1;
