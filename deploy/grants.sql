-- Least-privilege role for the budget-lifecycle worker on LiteLLM's database.
-- Run as the database owner. Replace the password (or use your secret manager's rotation).
-- It may read LiteLLM's budget rows, write only `spend`, `budget_reset_at`, `budget_limits` (a window's
-- `reset_at`) and `LiteLLM_BudgetWindowSpend` (a window's running total), and own its own schema.

CREATE ROLE budget_lifecycle LOGIN PASSWORD 'change-me';
GRANT CONNECT ON DATABASE litellm TO budget_lifecycle;
GRANT USAGE ON SCHEMA public TO budget_lifecycle;

-- Read what a reset looks at (discovery, the fence, the tier links).
GRANT SELECT ON
  "LiteLLM_BudgetTable", "LiteLLM_VerificationToken", "LiteLLM_UserTable", "LiteLLM_TeamTable",
  "LiteLLM_TeamMembership", "LiteLLM_EndUserTable", "LiteLLM_OrganizationTable",
  "LiteLLM_OrganizationMembership", "LiteLLM_TagTable", "LiteLLM_ProjectTable",
  "LiteLLM_ModelAccessGroupBudgetTable", "LiteLLM_BudgetWindowSpend"
TO budget_lifecycle;

-- Zero spend (column privilege: nothing else on these rows can change; total_spend stays untouched).
GRANT UPDATE (spend) ON
  "LiteLLM_VerificationToken", "LiteLLM_UserTable", "LiteLLM_TeamTable", "LiteLLM_TeamMembership",
  "LiteLLM_EndUserTable", "LiteLLM_OrganizationTable", "LiteLLM_OrganizationMembership", "LiteLLM_TagTable",
  "LiteLLM_ProjectTable", "LiteLLM_ModelAccessGroupBudgetTable"
TO budget_lifecycle;

-- Advance schedules (and lock owner rows with SELECT ... FOR UPDATE, which needs an UPDATE privilege).
GRANT UPDATE (budget_reset_at) ON
  "LiteLLM_BudgetTable", "LiteLLM_VerificationToken", "LiteLLM_UserTable", "LiteLLM_TeamTable"
TO budget_lifecycle;

-- Window budgets: move a window's `reset_at` inside `budget_limits` (the only field of the JSON we change), and
-- roll its `LiteLLM_BudgetWindowSpend` row onto the new window (`window_start`, `spend`, `updated_at`), as
-- LiteLLM's `reset_budget_windows` does. Rows of that table are never inserted or deleted.
GRANT UPDATE (budget_limits) ON "LiteLLM_VerificationToken", "LiteLLM_TeamTable" TO budget_lifecycle;
GRANT UPDATE (window_start, spend, updated_at) ON "LiteLLM_BudgetWindowSpend" TO budget_lifecycle;
-- Late spend reconciliation reads who each request was charged to, its startTime and spend; never its
-- messages or response.
GRANT SELECT ("startTime", spend, api_key, "user", team_id, organization_id, end_user, request_tags)
  ON "LiteLLM_SpendLogs" TO budget_lifecycle;

-- Our audit tables live in our own schema, never in `public` (LiteLLM's Prisma owns it).
CREATE SCHEMA IF NOT EXISTS budget_lifecycle AUTHORIZATION budget_lifecycle;
