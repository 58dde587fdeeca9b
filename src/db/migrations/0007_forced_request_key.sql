-- A forced reset is identified by its request id. A forced reset that keeps the calendar leaves `budget_reset_at`
-- unchanged, and its period ends at the workflow's "now", which is a new instant when the workflow task that ran it
-- is retried (its worker died after the commit, before Temporal recorded the result). Without this key that retry
-- committed a second reset of the same request: a second audit row, and spend of the new period zeroed again.
-- The key holds a digest, like the other audit keys, so any request id fits in a btree entry.
ALTER TABLE budget_lifecycle.reset_log ADD COLUMN request_id text;
CREATE UNIQUE INDEX reset_log_request_unique
  ON budget_lifecycle.reset_log (budget_kind, budget_key, budget_lifecycle.id_key(request_id))
  WHERE request_id IS NOT NULL;
