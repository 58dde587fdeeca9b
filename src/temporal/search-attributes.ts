import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes every budget workflow keeps current, so operators can find budgets in the UI. */
export const BudgetKindKey = defineSearchAttributeKey('BudgetKind', SearchAttributeType.KEYWORD);
export const BudgetIdKey = defineSearchAttributeKey('BudgetId', SearchAttributeType.KEYWORD);
export const NextResetAtKey = defineSearchAttributeKey('NextResetAt', SearchAttributeType.DATETIME);
export const LastResetAtKey = defineSearchAttributeKey('LastResetAt', SearchAttributeType.DATETIME);
export const BudgetStateKey = defineSearchAttributeKey('BudgetState', SearchAttributeType.KEYWORD);
export const ResetCountKey = defineSearchAttributeKey('ResetCount', SearchAttributeType.INT);

export const SEARCH_ATTRIBUTES = [
  BudgetKindKey,
  BudgetIdKey,
  NextResetAtKey,
  LastResetAtKey,
  BudgetStateKey,
  ResetCountKey,
] as const;

/** `Name=Type` as the Temporal CLI's `--search-attribute` flag takes them. */
export function searchAttributeFlags(): string[] {
  const cliType: Record<string, string> = { KEYWORD: 'Keyword', DATETIME: 'Datetime', INT: 'Int' };
  return SEARCH_ATTRIBUTES.map((key) => `${key.name}=${cliType[key.type] ?? key.type}`);
}
