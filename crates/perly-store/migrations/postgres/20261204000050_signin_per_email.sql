-- Failed sign-ins are also counted per email across every client IP, over
-- an hour. A success no longer deletes the earlier failures of its (email,
-- IP): it marks them cleared for that pair only, so they still count
-- towards the per-IP and per-email limits until they age out.
ALTER TABLE signin_failures ADD COLUMN pair_cleared INTEGER NOT NULL DEFAULT 0;
CREATE INDEX signin_failures_by_email ON signin_failures (email, failed_at);
