-- When a reset's late-spend check is due; NULL once it has been checked (or for resets made with the check off,
-- and those of earlier releases, whose workflows check them). The worker's sweeper finds due resets through the
-- partial index, which holds only the few resets waiting for their check, however long the audit grows.
ALTER TABLE budget_lifecycle.reset_log ADD COLUMN late_spend_due_at timestamptz;
CREATE INDEX reset_log_late_spend_due ON budget_lifecycle.reset_log (late_spend_due_at)
  WHERE late_spend_due_at IS NOT NULL;
-- Failed checks of the reset so far: each failure postpones the next try (a minute per failure), and the fifth
-- drops the check, as a check that cannot run was dropped before: its late spend then counts against the new period.
ALTER TABLE budget_lifecycle.reset_log ADD COLUMN late_spend_attempts smallint NOT NULL DEFAULT 0;
