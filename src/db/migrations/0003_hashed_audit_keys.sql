-- Audit keys that hold any id LiteLLM can store. A btree entry is limited to about 2,700 bytes, and LiteLLM's own
-- primary keys accept longer ids (PostgreSQL compresses index entries, so a repetitive 10 kB tag name fits in
-- "LiteLLM_TagTable" but not in our composite keys). With the id itself in a key, one long tag name failed every
-- reset of its tier ("index row size ... exceeds btree maximum"). Keys now hold the SHA-256 of the id (32 bytes,
-- collision-free in practice, unlike md5 whose collisions can be crafted); the full id stays in its own column.

-- The SHA-256 of an id's UTF-8 bytes. convert_to is only STABLE (encoding lookups), but with a fixed target
-- encoding its result never changes, which is what IMMUTABLE promises and what a generated column needs.
CREATE FUNCTION budget_lifecycle.id_key(id text) RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT sha256(convert_to(id, 'UTF8')) $$;

ALTER TABLE budget_lifecycle.reset_log
  ADD COLUMN budget_key bytea GENERATED ALWAYS AS (budget_lifecycle.id_key(budget_id)) STORED;
-- Same name, so the reset's ON CONFLICT ON CONSTRAINT reset_log_period_unique is unchanged.
ALTER TABLE budget_lifecycle.reset_log DROP CONSTRAINT reset_log_period_unique;
ALTER TABLE budget_lifecycle.reset_log
  ADD CONSTRAINT reset_log_period_unique UNIQUE (budget_kind, budget_key, period_end);
DROP INDEX budget_lifecycle.reset_log_budget_recent;
CREATE INDEX reset_log_budget_recent ON budget_lifecycle.reset_log (budget_kind, budget_key, executed_at DESC);

ALTER TABLE budget_lifecycle.reset_log_entity
  ADD COLUMN entity_key bytea GENERATED ALWAYS AS (budget_lifecycle.id_key(entity_id)) STORED;
ALTER TABLE budget_lifecycle.reset_log_entity DROP CONSTRAINT reset_log_entity_pkey;
ALTER TABLE budget_lifecycle.reset_log_entity ADD PRIMARY KEY (reset_id, entity_type, entity_key);
