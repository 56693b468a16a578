-- The audit trail becomes a hash chain per tenant (system events, with no
-- tenant, form their own chain) and append-only. SQLite cannot add NOT NULL
-- columns without a default, so the table is rebuilt. Nothing wrote to
-- audit_logs before this migration; on a table with rows the copy below fails
-- (seq is NOT NULL) rather than invent hashes.
CREATE TABLE audit_logs_chained (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    log_id              TEXT NOT NULL UNIQUE,
    tenant_id           TEXT,
    seq                 INTEGER NOT NULL,
    operation           TEXT NOT NULL,
    principal_id        TEXT,
    principal_name      TEXT,
    adapter_id          TEXT,
    success             BOOLEAN NOT NULL CHECK (success IN (0, 1)),
    details             TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    error               TEXT,
    ip_address          TEXT,
    security_violation  BOOLEAN NOT NULL DEFAULT 0 CHECK (security_violation IN (0, 1)),
    -- Fixed-width UTC text (2026-11-24T04:05:06.123456Z): sorts as it orders.
    created_at          TEXT NOT NULL,
    prev_hash           TEXT NOT NULL,
    hash                TEXT NOT NULL
);
INSERT INTO audit_logs_chained (id, log_id, tenant_id, seq, operation, principal_id,
    principal_name, adapter_id, success, details, error, ip_address, created_at, prev_hash, hash)
SELECT id, log_id, tenant_id, NULL, operation, principal_id, principal_name, adapter_id,
    success, details, error, ip_address, created_at, NULL, NULL
FROM audit_logs;
DROP TABLE audit_logs;
ALTER TABLE audit_logs_chained RENAME TO audit_logs;

-- One chain per tenant, gapless: (tenant, seq) is unique. COALESCE because a
-- unique index treats NULLs as distinct, and the system chain is NULL.
CREATE UNIQUE INDEX audit_logs_chain_seq_key ON audit_logs (COALESCE(tenant_id, ''), seq);
CREATE INDEX audit_logs_tenant_created_idx ON audit_logs (tenant_id, created_at DESC);
-- Newest first across tenants (the super admin's view, the export).
CREATE INDEX audit_logs_created_idx ON audit_logs (created_at DESC, id DESC);
CREATE INDEX audit_logs_tenant_operation_idx ON audit_logs (tenant_id, operation, created_at DESC);
CREATE INDEX audit_logs_tenant_principal_idx ON audit_logs (tenant_id, principal_id, created_at DESC);
CREATE INDEX audit_logs_tenant_success_idx ON audit_logs (tenant_id, success, created_at DESC);

-- Rows are inserted, never changed (SQLite has no TRUNCATE; DELETE covers it).
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only: DELETE refused');
END;
