-- Principals: buyer agents of a tenant. Tokens are stored only as SHA-256 hashes.
CREATE TABLE principals (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL,
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT principals_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX principals_tenant_id_idx ON principals (tenant_id);
