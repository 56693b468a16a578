-- The trail's time indexes, ascending, as on PostgreSQL: rows arrive newest
-- last, so each insert lands at the right edge of its range instead of the
-- left (a quarter less file for the same rows, measured with 90,000 rows in
-- docs/benchmarks.md). The queries read them backward (a test checks the
-- plans: no sort of what they match).
DROP INDEX audit_logs_tenant_created_idx;
DROP INDEX audit_logs_created_idx;
DROP INDEX audit_logs_tenant_operation_idx;
DROP INDEX audit_logs_tenant_principal_idx;
DROP INDEX audit_logs_tenant_success_idx;
CREATE INDEX audit_logs_tenant_created_idx ON audit_logs (tenant_id, created_at);
-- Newest first across tenants (the super admin's view, the export).
CREATE INDEX audit_logs_created_idx ON audit_logs (created_at, id);
CREATE INDEX audit_logs_tenant_operation_idx ON audit_logs (tenant_id, operation, created_at);
CREATE INDEX audit_logs_tenant_principal_idx ON audit_logs (tenant_id, principal_id, created_at);
CREATE INDEX audit_logs_tenant_success_idx ON audit_logs (tenant_id, success, created_at);
