-- The audit trail becomes a hash chain per tenant (system events, with no
-- tenant, form their own chain) and append-only. Nothing wrote to audit_logs
-- before this migration, so the NOT NULL columns need no backfill (on a table
-- with rows this migration fails rather than invent hashes).
ALTER TABLE audit_logs
    ADD COLUMN seq BIGINT NOT NULL,
    ADD COLUMN security_violation BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN prev_hash TEXT NOT NULL,
    ADD COLUMN hash TEXT NOT NULL;

-- One chain per tenant, gapless: (tenant, seq) is unique. COALESCE because a
-- unique index treats NULLs as distinct, and the system chain is NULL.
CREATE UNIQUE INDEX audit_logs_chain_seq_key ON audit_logs ((COALESCE(tenant_id, '')), seq);
-- Newest first across tenants (the super admin's view, the export).
CREATE INDEX audit_logs_created_idx ON audit_logs (created_at DESC, id DESC);
CREATE INDEX audit_logs_tenant_operation_idx ON audit_logs (tenant_id, operation, created_at DESC);
CREATE INDEX audit_logs_tenant_principal_idx ON audit_logs (tenant_id, principal_id, created_at DESC);
CREATE INDEX audit_logs_tenant_success_idx ON audit_logs (tenant_id, success, created_at DESC);

-- Rows are inserted, never changed: the database itself refuses UPDATE,
-- DELETE and TRUNCATE, whoever asks (short of disabling triggers, which
-- verify then catches through the hash chain).
CREATE FUNCTION audit_logs_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change();
CREATE TRIGGER audit_logs_no_truncate
    BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_refuse_change();
