-- The audit of every reset: one row per reset of one budget, one row per entity it changed.
-- Lives in our own schema: LiteLLM's Prisma owns `public` and its `db push` may drop tables it does not know.

CREATE TABLE budget_lifecycle.reset_log (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  budget_kind     text NOT NULL CHECK (budget_kind IN ('budget', 'key', 'user', 'team')),
  budget_id       text NOT NULL,
  -- The boundary that opened the period (NULL when unknown, e.g. the first reset we ran).
  period_start    timestamptz,
  -- The boundary that was reset: the scheduled `budget_reset_at`, or the moment of a forced reset.
  period_end      timestamptz NOT NULL,
  next_reset_at   timestamptz NOT NULL,
  executed_at     timestamptz NOT NULL DEFAULT now(),
  late_by_ms      bigint NOT NULL DEFAULT 0 CHECK (late_by_ms >= 0),
  missed_periods  integer NOT NULL DEFAULT 0 CHECK (missed_periods >= 0),
  trigger         text NOT NULL CHECK (trigger IN ('schedule', 'forced', 'catch_up')),
  reason          text,
  requested_by    text,
  workflow_id     text,
  run_id          text,
  entity_count    integer NOT NULL DEFAULT 0,
  -- Sum of the spend the changed entities held before the reset (a request charged to a key and a tag counts
  -- on both).
  spend_total     double precision NOT NULL DEFAULT 0,
  -- A second fence: the same boundary of the same budget is never reset twice.
  CONSTRAINT reset_log_period_unique UNIQUE (budget_kind, budget_id, period_end)
);

CREATE INDEX reset_log_budget_recent ON budget_lifecycle.reset_log (budget_kind, budget_id, executed_at DESC);

CREATE TABLE budget_lifecycle.reset_log_entity (
  reset_id     bigint NOT NULL REFERENCES budget_lifecycle.reset_log (id) ON DELETE CASCADE,
  entity_type  text NOT NULL,
  -- The primary key, or a JSON array of the parts of a composite key (team and org memberships).
  entity_id    text NOT NULL,
  spend_before double precision NOT NULL,
  spend_after  double precision NOT NULL,
  PRIMARY KEY (reset_id, entity_type, entity_id)
);
