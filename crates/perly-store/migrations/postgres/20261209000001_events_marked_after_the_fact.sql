-- Nothing changes on PostgreSQL: its ingest has appended events without
-- marks since `20261208000001_ingest_without_row_locks`. (SQLite's ingest
-- stopped marking; see its migration of the same name.)
SELECT 1;
