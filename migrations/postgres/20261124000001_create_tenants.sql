-- Tenants: one per publisher running the sales agent. Deactivated, never deleted.
CREATE TABLE tenants (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    is_active               BOOLEAN NOT NULL DEFAULT TRUE,
    slack_webhook_url       TEXT,
    slack_audit_webhook_url TEXT,
    hitl_webhook_url        TEXT,
    settings                JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
