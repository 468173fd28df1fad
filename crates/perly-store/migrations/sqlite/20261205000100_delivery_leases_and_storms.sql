-- Delivery under a backlog, and the storm guard.
--
-- The channel lease gets a fencing token: every claim increments it, and
-- renewals, releases and acknowledgements name the token they hold, so a
-- worker whose lease ran out cannot release or re-pace a channel another
-- claim took meanwhile.
ALTER TABLE channels ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;

-- A storm digest in the delivery log: one message that stood for every
-- alert waiting on the channel (`alerts` counts them).
ALTER TABLE delivery_attempts ADD COLUMN digest INTEGER NOT NULL DEFAULT 0;

-- A channel's pending rows by due time: its earliest due row after each
-- acknowledgement, and the counts and folds of a storm digest, without
-- reading a backlog of thousands row by row.
CREATE INDEX deliveries_due ON deliveries (channel_id, state, run_at);

-- The storm guard lives in the channel's rules (JSON): existing channels
-- get the default written down, so a later change of the default does not
-- change them behind their admins' backs.
UPDATE channels SET rules = json_set(rules, '$.storm_guard', json('{"messages":10,"window_minutes":10}'))
WHERE json_type(rules, '$.storm_guard') IS NULL;
