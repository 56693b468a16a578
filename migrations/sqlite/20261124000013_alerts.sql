-- Alert episodes: one row per episode of a rule in a scope, from the first
-- time its condition held (`since`) to its resolution. The current episode of
-- a (rule, scope) is the one row not yet resolved (the partial unique index);
-- resolved rows stay as history for GET /api/v1/alerts.
--
-- `scope` is the tenant id for per-tenant rules, `agent:<name>` for per-agent
-- rules and '' for service-wide ones; `tenant_id` is the tenant whose admins
-- may read the alert and whose webhooks are paged (NULL: service-wide).
-- `revision` grows with every change: writers update "where revision = what I
-- read", so two replicas evaluating at once never page twice.
CREATE TABLE alerts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    rule              TEXT NOT NULL,
    scope             TEXT NOT NULL,
    tenant_id         TEXT,
    severity          TEXT NOT NULL,
    channel           TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    since             TEXT NOT NULL,
    fired_at          TEXT,
    last_notified_at  TEXT,
    notifications     INTEGER NOT NULL DEFAULT 0,
    value             REAL NOT NULL,
    threshold         REAL NOT NULL,
    summary           TEXT NOT NULL,
    resolved_at       TEXT,
    updated_at        TEXT NOT NULL,
    revision          INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alerts_current_key ON alerts (rule, scope) WHERE state <> 'resolved';
CREATE INDEX alerts_tenant_updated_idx ON alerts (tenant_id, updated_at DESC);
CREATE INDEX alerts_updated_idx ON alerts (updated_at DESC);
