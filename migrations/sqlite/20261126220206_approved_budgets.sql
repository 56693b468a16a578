-- Approval as an invariant of the buy (issue 22): a media buy is live only at
-- a budget a human approved, or that was at most the approval threshold when
-- set. `approved_budget_micros` records that amount (NULL: nothing approved
-- yet); workflow tasks record the amount they approve, and a task replaced by
-- a newer one (the budget or flight changed while it was pending) is
-- `superseded`.
ALTER TABLE media_buys ADD COLUMN approved_budget_micros INTEGER
    CHECK (approved_budget_micros IS NULL OR approved_budget_micros > 0);
-- Buys that were not waiting for a human are taken as approved at their
-- current budget (nothing else is known about them); waiting ones have
-- nothing approved yet.
UPDATE media_buys SET approved_budget_micros = budget_micros
    WHERE status <> 'pending_approval';
-- Whatever writes the row, an active buy is within its approved budget.
-- (SQLite cannot add a table CHECK to an existing table; PostgreSQL has
-- `media_buys_active_approved_check`.)
CREATE TRIGGER media_buys_active_approved_insert BEFORE INSERT ON media_buys
WHEN NEW.status = 'active'
     AND (NEW.approved_budget_micros IS NULL OR NEW.budget_micros > NEW.approved_budget_micros)
BEGIN
    SELECT RAISE(ABORT, 'an active media buy must be within its approved budget');
END;
CREATE TRIGGER media_buys_active_approved_update BEFORE UPDATE ON media_buys
WHEN NEW.status = 'active'
     AND (NEW.approved_budget_micros IS NULL OR NEW.budget_micros > NEW.approved_budget_micros)
BEGIN
    SELECT RAISE(ABORT, 'an active media buy must be within its approved budget');
END;

-- The amount a task approves, and the `superseded` status: SQLite cannot
-- change a CHECK in place, so the table is rebuilt (nothing references it).
-- For existing tasks the amount is the buy's current budget (what the task
-- list now shows, and what approving it approves).
CREATE TABLE workflow_tasks_rebuilt (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'approved', 'rejected', 'superseded')),
    reason          TEXT NOT NULL,
    comment         TEXT,
    decided_by      TEXT,
    created_at      TEXT NOT NULL,
    decided_at      TEXT,
    budget_micros   INTEGER NOT NULL
);
INSERT INTO workflow_tasks_rebuilt (id, tenant_id, media_buy_id, kind, status, reason, comment,
        decided_by, created_at, decided_at, budget_micros)
    SELECT w.id, w.tenant_id, w.media_buy_id, w.kind, w.status, w.reason, w.comment,
        w.decided_by, w.created_at, w.decided_at,
        (SELECT b.budget_micros FROM media_buys b WHERE b.id = w.media_buy_id)
    FROM workflow_tasks w;
DROP TABLE workflow_tasks;
ALTER TABLE workflow_tasks_rebuilt RENAME TO workflow_tasks;
CREATE INDEX workflow_tasks_tenant_status_idx ON workflow_tasks (tenant_id, status, created_at);
-- At most one open task per media buy.
CREATE UNIQUE INDEX workflow_tasks_one_pending_key ON workflow_tasks (media_buy_id) WHERE status = 'pending';
