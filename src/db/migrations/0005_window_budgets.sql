-- Window budgets: each element of a key's or team's `budget_limits` (LiteLLM 1.108.14) is a budget of its own,
-- kind `window`, id `<key|team>:<owner id>:<budget_duration>`.

ALTER TABLE budget_lifecycle.reset_log DROP CONSTRAINT reset_log_budget_kind_check;
ALTER TABLE budget_lifecycle.reset_log
  ADD CONSTRAINT reset_log_budget_kind_check CHECK (budget_kind IN ('budget', 'key', 'user', 'team', 'window'));
ALTER TABLE budget_lifecycle.budget_sync DROP CONSTRAINT budget_sync_budget_kind_check;
ALTER TABLE budget_lifecycle.budget_sync
  ADD CONSTRAINT budget_sync_budget_kind_check CHECK (budget_kind IN ('budget', 'key', 'user', 'team', 'window'));

-- A window's `reset_at` is an ISO string inside JSON (Python's `isoformat()`: `2026-11-29T08:00:00+00:00`, or
-- without an offset). Read as the instant it names (no offset: UTC), as `timestamp(3)` holding UTC like
-- LiteLLM's own columns; NULL for a missing or unreadable value, so one bad element never fails a statement.
-- Discovery, the fence and what we remember all read it through this one function, so they always agree.
CREATE FUNCTION budget_lifecycle.window_reset_at(value text) RETURNS timestamp(3)
  LANGUAGE plpgsql STABLE PARALLEL SAFE
  AS $$
BEGIN
  IF value IS NULL OR value !~ '^\d{4}-\d\d-\d\d[T ]\d\d:\d\d' THEN
    RETURN NULL;
  END IF;
  IF value ~ '(Z|z|[+-]\d\d(:?\d\d)?)$' THEN
    RETURN (value::timestamptz AT TIME ZONE 'UTC')::timestamp(3);
  END IF;
  RETURN value::timestamp(3);
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;
