-- Agent runs (the reference system's agent_audit_log): one row per execution
-- of an AI agent or of one of the service's own timer actors. Started as
-- 'running', finished once as succeeded, failed or canceled.
CREATE TABLE agent_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL,
    agent        TEXT NOT NULL,
    objective    TEXT NOT NULL CHECK (length(objective) <= 512),
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'canceled')),
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    duration_ms  INTEGER CHECK (duration_ms >= 0),
    plan         TEXT,
    artifacts    TEXT,
    error        TEXT CHECK (length(error) <= 2048),
    user_email   TEXT,
    dry_run      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX agent_runs_run_id_key ON agent_runs (run_id);
CREATE INDEX agent_runs_agent_idx ON agent_runs (agent);
CREATE INDEX agent_runs_status_idx ON agent_runs (status);
CREATE INDEX agent_runs_user_email_idx ON agent_runs (user_email);
CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at);
CREATE INDEX agent_runs_agent_status_idx ON agent_runs (agent, status);
CREATE INDEX agent_runs_started_at_desc_idx ON agent_runs (started_at DESC);
