-- Tenants: one per publisher running the sales agent. Deactivated, never deleted.
-- Timestamps are RFC 3339 text in UTC, written by the service.
CREATE TABLE tenants (
    id                      TEXT PRIMARY KEY NOT NULL,
    name                    TEXT NOT NULL,
    is_active               BOOLEAN NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    slack_webhook_url       TEXT,
    slack_audit_webhook_url TEXT,
    hitl_webhook_url        TEXT,
    settings                TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    created_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
