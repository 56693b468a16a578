-- The domain the schedulers, Slack routing and delivery reports act on:
-- tenant settings, principals' token state, media buys with their packages,
-- creatives, human-in-the-loop workflow tasks, delivery data, idempotency keys
-- and the notification outbox. Money is stored as integer micro-units
-- (amount x 1,000,000) of the buy's currency: exact, summable, the same on
-- both backends.

ALTER TABLE tenants ADD COLUMN approval_threshold_micros BIGINT;
ALTER TABLE tenants ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';

ALTER TABLE principals ADD COLUMN revoked_at TIMESTAMPTZ;

CREATE TABLE media_buys (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    principal_id        TEXT NOT NULL REFERENCES principals (id),
    buyer_ref           TEXT NOT NULL,
    order_name          TEXT NOT NULL,
    advertiser_name     TEXT NOT NULL,
    currency            TEXT NOT NULL,
    budget_micros       BIGINT NOT NULL CHECK (budget_micros > 0),
    flight_start        TIMESTAMPTZ NOT NULL,
    flight_end          TIMESTAMPTZ NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending_approval', 'pending_activation',
                            'active', 'paused', 'completed', 'rejected', 'failed')),
    -- The lifecycle status a paused buy returns to when resumed.
    paused_from         TEXT,
    -- JSON {url, frequency, authentication: {type, credentials}}; credentials
    -- never leave the service.
    reporting_webhook   TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    CONSTRAINT media_buys_flight_check CHECK (flight_end > flight_start)
);
CREATE INDEX media_buys_tenant_principal_idx ON media_buys (tenant_id, principal_id, created_at DESC);
CREATE INDEX media_buys_status_idx ON media_buys (status, flight_start);

CREATE TABLE media_buy_packages (
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    package_id      TEXT NOT NULL,
    budget_micros   BIGINT NOT NULL CHECK (budget_micros > 0),
    pricing_model   TEXT NOT NULL,
    rate_micros     BIGINT NOT NULL CHECK (rate_micros >= 0),
    position        INTEGER NOT NULL,
    PRIMARY KEY (media_buy_id, package_id)
);

-- A creative's id is the buyer's, unique within its tenant.
CREATE TABLE creatives (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    id              TEXT NOT NULL,
    principal_id    TEXT NOT NULL REFERENCES principals (id),
    name            TEXT NOT NULL,
    format          TEXT NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending_review', 'approved', 'rejected')),
    review_reason   TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX creatives_principal_idx ON creatives (tenant_id, principal_id, id);

CREATE TABLE creative_assignments (
    tenant_id       TEXT NOT NULL,
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    creative_id     TEXT NOT NULL,
    PRIMARY KEY (media_buy_id, creative_id),
    FOREIGN KEY (tenant_id, creative_id) REFERENCES creatives (tenant_id, id)
);

CREATE TABLE workflow_tasks (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reason          TEXT NOT NULL,
    comment         TEXT,
    decided_by      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    decided_at      TIMESTAMPTZ
);
CREATE INDEX workflow_tasks_tenant_status_idx ON workflow_tasks (tenant_id, status, created_at);
-- At most one open task per media buy.
CREATE UNIQUE INDEX workflow_tasks_one_pending_key ON workflow_tasks (media_buy_id) WHERE status = 'pending';

-- Per-day, per-package delivery; `day` is an ISO date (YYYY-MM-DD).
CREATE TABLE media_buy_delivery (
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    package_id      TEXT NOT NULL,
    day             TEXT NOT NULL,
    impressions     BIGINT NOT NULL CHECK (impressions >= 0),
    clicks          BIGINT NOT NULL CHECK (clicks >= 0),
    spend_micros    BIGINT NOT NULL CHECK (spend_micros >= 0),
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (media_buy_id, package_id, day)
);

-- `Idempotency-Key` of media-buy creation: the same key and body answer the
-- stored response; another body with the key is a conflict.
CREATE TABLE idempotency_keys (
    tenant_id       TEXT NOT NULL,
    principal_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    status          INTEGER NOT NULL,
    response        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, principal_id, key)
);

-- Notifications waiting for the Slack router. Written in the transaction of
-- the change they announce.
CREATE TABLE notification_outbox (
    id              BIGSERIAL PRIMARY KEY,
    notification_id TEXT NOT NULL UNIQUE,
    tenant_id       TEXT,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX notification_outbox_unsent_idx ON notification_outbox (id) WHERE sent_at IS NULL;
