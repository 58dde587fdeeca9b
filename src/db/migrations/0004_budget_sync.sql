-- What each budget's workflow was last told about its schedule, so discovery can find the rows whose schedule
-- changed without reading LiteLLM's `updated_at` (Prisma rewrites it on every spend flush). Discovery compares
-- LiteLLM's rows with this table in one set-based statement; only a difference costs a signal or a start.
-- The workflow's own writes (first boundary, reset, new duration) update this row in the same transaction, so
-- our own resets never look like someone else's change.

CREATE TABLE budget_lifecycle.budget_sync (
  budget_kind  text NOT NULL CHECK (budget_kind IN ('budget', 'key', 'user', 'team')),
  budget_id    text NOT NULL,
  -- LiteLLM ids may be longer than a btree entry can hold: the key indexes a digest, the row keeps the id.
  budget_key   bytea GENERATED ALWAYS AS (budget_lifecycle.id_key(budget_id)) STORED,
  -- `budget_duration` and `budget_reset_at` exactly as last seen or written (same types as LiteLLM's columns).
  duration     text,
  reset_at     timestamp(3) without time zone,
  -- Why discovery could not give this budget a workflow (NULL: it has one). Retried only when the row changes.
  rejected     text,
  synced_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (budget_kind, budget_key)
);
