-- The audit trail. `tenant_id` deliberately has no foreign key: deleting or
-- deactivating a tenant never touches its trail. NULL = a system event.
-- AUTOINCREMENT: ids are never reused, so `id` is a safe stream cursor.
CREATE TABLE audit_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    log_id          TEXT NOT NULL UNIQUE,
    tenant_id       TEXT,
    operation       TEXT NOT NULL,
    principal_id    TEXT,
    principal_name  TEXT,
    adapter_id      TEXT,
    success         BOOLEAN NOT NULL CHECK (success IN (0, 1)),
    details         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    error           TEXT,
    ip_address      TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX audit_logs_tenant_created_idx ON audit_logs (tenant_id, created_at DESC);
