-- Brings 20261201000001_channels.sql as applied by builds of b3c074b to
-- f5949ec forward to the file as c5ce936 edited it: workers claim across
-- workspaces, so the due index leads with the due time.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (run_at, channel_id) WHERE state = 'pending';
