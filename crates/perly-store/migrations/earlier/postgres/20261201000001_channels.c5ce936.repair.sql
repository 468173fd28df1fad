-- Brings 20261201000001_channels.sql as applied by builds of c5ce936 to
-- 823f08e forward to the file as beeb363 edited it: claims read channels,
-- not the outbox. Each channel keeps when its oldest pending delivery falls
-- due (what the store maintains with the rows from then on), computed here
-- from the rows already waiting; the outbox's due index goes.
ALTER TABLE channels ADD COLUMN next_due_at BIGINT;
UPDATE channels SET next_due_at = (SELECT MIN(d.run_at) FROM deliveries d
    WHERE d.channel_id = channels.id AND d.state = 'pending');
CREATE INDEX channels_due ON channels (next_due_at) WHERE next_due_at IS NOT NULL;
DROP INDEX deliveries_due;
