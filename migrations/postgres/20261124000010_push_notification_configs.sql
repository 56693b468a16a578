-- Where a buyer (principal) wants its status changes posted, and (rows with
-- media_buy_id) a media buy's reporting webhook, where its delivery reports
-- go. The token (bearer token or HMAC secret) never leaves the service.
CREATE TABLE push_notification_configs (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    principal_id          TEXT NOT NULL REFERENCES principals (id),
    url                   TEXT NOT NULL,
    authentication_type   TEXT NOT NULL CHECK (authentication_type IN ('bearer', 'hmac-sha256', 'none')),
    authentication_token  TEXT,
    status                TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'auth_blocked')),
    media_buy_id          TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_notification_configs_principal_idx ON push_notification_configs (principal_id, created_at);
