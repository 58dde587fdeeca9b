-- Late spend: spend of requests that started before a reset's boundary but reached the database after the reset
-- (LiteLLM's proxy writes spend in batches). The reconciliation moves it out of the new period; each check and
-- each correction is recorded here, beside the reset it corrects.

-- One row per reset checked, even when nothing was late: "checked, nothing to move" is also a record.
CREATE TABLE budget_lifecycle.late_spend_check (
  reset_id          bigint PRIMARY KEY REFERENCES budget_lifecycle.reset_log (id) ON DELETE CASCADE,
  checked_at        timestamptz NOT NULL DEFAULT now(),
  entities_checked  integer NOT NULL,
  entities_corrected integer NOT NULL,
  late_spend_total  double precision NOT NULL
);

-- One row per entity whose spend was corrected. The primary key makes a retried reconciliation apply once.
CREATE TABLE budget_lifecycle.late_spend_correction (
  reset_id      bigint NOT NULL REFERENCES budget_lifecycle.reset_log (id) ON DELETE CASCADE,
  entity_type   text NOT NULL,
  entity_id     text NOT NULL,
  entity_key    bytea GENERATED ALWAYS AS (budget_lifecycle.id_key(entity_id)) STORED,
  -- LiteLLM_SpendLogs spend of the entity's requests that started in the reset period.
  logged_spend  double precision NOT NULL,
  -- What the reset found and zeroed (reset_log_entity.spend_before).
  spend_at_reset double precision NOT NULL,
  -- logged_spend - spend_at_reset: flushed after the reset, so wrongly counted in the new period.
  late_spend    double precision NOT NULL,
  spend_before  double precision NOT NULL,
  spend_after   double precision NOT NULL,
  PRIMARY KEY (reset_id, entity_type, entity_key)
);
