-- Requests to buyers' webhooks, queued in the transaction of the change they
-- announce and sent by the webhook sender. The payload is frozen when queued
-- (its timestamp and idempotency_key never change across retries).
CREATE TABLE webhook_outbox (
    id                BIGSERIAL PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    config_id         TEXT NOT NULL REFERENCES push_notification_configs (id) ON DELETE CASCADE,
    media_buy_id      TEXT NOT NULL,
    task_type         TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    -- Delivery reports: `scheduled` or `final`, the buy's sequence number
    -- (strictly increasing, reserved in the row's transaction) and the key
    -- of (config, buy, reporting period) that stops a second report for
    -- the same period (NULL for forced reports).
    notification_type TEXT,
    sequence_number   INTEGER,
    dedup_key         TEXT UNIQUE,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ,
    locked_until      TIMESTAMPTZ,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    delivered_at      TIMESTAMPTZ
);
CREATE INDEX webhook_outbox_pending_idx ON webhook_outbox (id) WHERE status = 'pending';
CREATE INDEX webhook_outbox_media_buy_idx ON webhook_outbox (media_buy_id, id);
CREATE UNIQUE INDEX webhook_outbox_sequence_idx ON webhook_outbox (media_buy_id, sequence_number)
    WHERE sequence_number IS NOT NULL;

-- Every attempt, kept.
CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    outbox_id     BIGINT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    status_code   INTEGER,
    duration_ms   BIGINT NOT NULL,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_deliveries_outbox_idx ON webhook_deliveries (outbox_id, attempt);
