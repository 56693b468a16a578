-- The Slack router's bookkeeping on the notification outbox: a row is
-- 'pending' until it is 'sent', 'failed' (permanent error or attempts used
-- up) or 'skipped' (no webhook configured for its channel). A pending row is
-- due at next_attempt_at (NULL: now) and is leased to one sender while
-- locked_until is in the future, so two replicas never post it at once.
ALTER TABLE notification_outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'sent', 'failed', 'skipped'));
ALTER TABLE notification_outbox ADD COLUMN next_attempt_at TIMESTAMPTZ;
ALTER TABLE notification_outbox ADD COLUMN locked_until TIMESTAMPTZ;
UPDATE notification_outbox SET status = 'sent' WHERE sent_at IS NOT NULL;
DROP INDEX notification_outbox_unsent_idx;
CREATE INDEX notification_outbox_pending_idx ON notification_outbox (id) WHERE status = 'pending';
