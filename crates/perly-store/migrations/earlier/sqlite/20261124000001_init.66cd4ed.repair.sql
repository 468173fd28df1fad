-- Brings 20261124000001_init.sql as applied by builds of 66cd4ed to 2759308
-- forward to the file as 5c1e236 edited it: rescoring takes the customers
-- that waited longest first (rollups.dirty_at). A rollup dirty at the
-- upgrade has waited since at least its last update.
ALTER TABLE rollups ADD COLUMN dirty_at INTEGER NOT NULL DEFAULT 0;
UPDATE rollups SET dirty_at = updated_at WHERE dirty = 1;
DROP INDEX rollups_dirty;
CREATE INDEX rollups_dirty ON rollups (workspace_id, dirty_at) WHERE dirty = 1;
