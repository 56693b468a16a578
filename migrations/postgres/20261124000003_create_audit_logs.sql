-- The audit trail. `tenant_id` deliberately has no foreign key: deleting or
-- deactivating a tenant never touches its trail. NULL = a system event.
CREATE TABLE audit_logs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log_id          UUID NOT NULL,
    tenant_id       TEXT,
    operation       TEXT NOT NULL,
    principal_id    TEXT,
    principal_name  TEXT,
    adapter_id      TEXT,
    success         BOOLEAN NOT NULL,
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    error           TEXT,
    ip_address      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_log_id_key UNIQUE (log_id)
);
CREATE INDEX audit_logs_tenant_created_idx ON audit_logs (tenant_id, created_at DESC);
