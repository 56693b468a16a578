-- The trail's time indexes, ascending. Rows arrive newest last, so in an
-- ascending index each insert lands at the right edge of its range, where a
-- B-tree appends and splits a full page 90/10; in a `created_at DESC` index
-- it landed at the left edge, where every split halves a page. Measured with
-- pgbench (docs/benchmarks.md, "Runs 74-"): the DESC indexes took 1.8 times
-- the pages for the same rows, and 300-row inserts were 25-35% slower. The
-- queries are unchanged: PostgreSQL reads a B-tree in either direction, so
-- `ORDER BY created_at DESC` reads these backward (a test checks the plans).
-- Rebuilding them locks writes to the trail while it runs.
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
