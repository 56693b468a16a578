-- Adapter tokens: an ad server's integration posts delivery data for its
-- tenant's media buys, and nothing else. SQLite cannot change a CHECK
-- constraint, so the table is rebuilt (nothing references it).
CREATE TABLE api_tokens_new (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    kind        TEXT NOT NULL CHECK (kind IN ('ingest', 'admin', 'adapter')),
    token_hash  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash)
);
INSERT INTO api_tokens_new (id, tenant_id, kind, token_hash, created_at, expires_at, revoked_at)
    SELECT id, tenant_id, kind, token_hash, created_at, expires_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_tenant_id_idx ON api_tokens (tenant_id);
