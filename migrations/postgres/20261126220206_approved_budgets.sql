-- Approval as an invariant of the buy (issue 22): a media buy is live only at
-- a budget a human approved, or that was at most the approval threshold when
-- set. `approved_budget_micros` records that amount (NULL: nothing approved
-- yet); workflow tasks record the amount they approve, and a task replaced by
-- a newer one (the budget or flight changed while it was pending) is
-- `superseded`.
ALTER TABLE media_buys ADD COLUMN approved_budget_micros BIGINT
    CHECK (approved_budget_micros IS NULL OR approved_budget_micros > 0);
-- Buys that were not waiting for a human are taken as approved at their
-- current budget (nothing else is known about them); waiting ones have
-- nothing approved yet.
UPDATE media_buys SET approved_budget_micros = budget_micros
    WHERE status <> 'pending_approval';
-- Whatever writes the row, an active buy is within its approved budget.
ALTER TABLE media_buys ADD CONSTRAINT media_buys_active_approved_check
    CHECK (status <> 'active'
           OR (approved_budget_micros IS NOT NULL AND budget_micros <= approved_budget_micros));

-- The amount a task approves: for existing tasks, the buy's current budget
-- (what the task list now shows, and what approving it approves).
ALTER TABLE workflow_tasks ADD COLUMN budget_micros BIGINT NOT NULL DEFAULT 0;
UPDATE workflow_tasks SET budget_micros =
    (SELECT b.budget_micros FROM media_buys b WHERE b.id = workflow_tasks.media_buy_id);
ALTER TABLE workflow_tasks ALTER COLUMN budget_micros DROP DEFAULT;
ALTER TABLE workflow_tasks DROP CONSTRAINT workflow_tasks_status_check;
ALTER TABLE workflow_tasks ADD CONSTRAINT workflow_tasks_status_check
    CHECK (status IN ('pending', 'approved', 'rejected', 'superseded'));
