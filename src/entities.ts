import type { RowBudgetKind } from './budget-ref.js';

/** Everything whose `spend` a reset can zero. */
export type EntityTypeName =
  | 'key'
  | 'user'
  | 'team'
  | 'team_member'
  | 'end_user'
  | 'org'
  | 'org_member'
  | 'tag'
  | 'project'
  | 'model_access_group';

/** The Redis keys LiteLLM caches one entity under (before any namespace). */
export interface EntityCacheKeys {
  /** Spend counter read before the database by budget checks; deleted after a reset (LiteLLM reseeds it). */
  readonly counter?: string;
  /** Cached objects to delete so the next request reloads them from the database. */
  readonly objects: readonly string[];
}

/** How one LiteLLM table takes part in resets. Adding an entity type means adding one entry below. */
export interface EntityType {
  readonly name: EntityTypeName;
  /** Table in `public`, as Prisma names it. */
  readonly table: string;
  /** Primary-key columns; a composite key is recorded in the audit as a JSON array of its parts. */
  readonly key: readonly string[];
  /** Linked to a budget tier through `budget_id`: zeroed when the tier resets. */
  readonly tierLinked: boolean;
  /**
   * Extra condition for rows reset with a tier, e.g. keys without a schedule of their own. It may use the row
   * (alias `t`) and the statement's typed parameters (alias `params`: `period_end`, `budget_id`).
   */
  readonly tierCondition?: string;
  /** Only some LiteLLM releases have this table; skip it where it does not exist. */
  readonly optional?: boolean;
  cacheKeys(id: readonly string[]): EntityCacheKeys;
}

/** Rows of a key that is past `expires` are left alone (LiteLLM does not reset expired keys). */
const KEY_NOT_EXPIRED = `(t."expires" IS NULL OR t."expires" > (params.period_end AT TIME ZONE 'UTC'))`;

/** The proxy-wide budget is the user row with this id (LiteLLM's `LITELLM_PROXY_BUDGET_NAME`). */
export const PROXY_BUDGET_USER_ID = 'litellm-proxy-budget';

/**
 * LiteLLM's `GLOBAL_PROXY_SPEND_CACHE_KEY` (`f"{LITELLM_PROXY_ADMIN_NAME}:spend"`): the cached spend of the
 * whole proxy, which its reset job drops after resetting the proxy budget row.
 */
export const GLOBAL_PROXY_SPEND_CACHE_KEY = 'default_user_id:spend';

/** The registry, in the order a tier reset visits tables (a fixed order keeps row locks in a fixed order). */
export const ENTITY_TYPES: readonly EntityType[] = [
  {
    name: 'key',
    table: 'LiteLLM_VerificationToken',
    key: ['token'],
    tierLinked: true,
    // A key with its own duration follows its own schedule, not its tier's.
    tierCondition: `t."budget_duration" IS NULL AND ${KEY_NOT_EXPIRED}`,
    cacheKeys: ([token]) => ({ counter: `spend:key:${token}`, objects: [`${token}`] }),
  },
  {
    name: 'user',
    table: 'LiteLLM_UserTable',
    key: ['user_id'],
    tierLinked: false,
    cacheKeys: ([userId]) => ({
      counter: `spend:user:${userId}`,
      objects: userId === PROXY_BUDGET_USER_ID ? [`${userId}`, GLOBAL_PROXY_SPEND_CACHE_KEY] : [`${userId}`],
    }),
  },
  {
    name: 'team',
    table: 'LiteLLM_TeamTable',
    key: ['team_id'],
    tierLinked: false,
    cacheKeys: ([teamId]) => ({ counter: `spend:team:${teamId}`, objects: [`team_id:${teamId}`] }),
  },
  {
    name: 'team_member',
    table: 'LiteLLM_TeamMembership',
    key: ['user_id', 'team_id'],
    tierLinked: true,
    cacheKeys: ([userId, teamId]) => ({
      counter: `spend:team_member:${userId}:${teamId}`,
      objects: [`${teamId}_${userId}`, `team_membership:${userId}:${teamId}`],
    }),
  },
  {
    name: 'end_user',
    table: 'LiteLLM_EndUserTable',
    key: ['user_id'],
    tierLinked: true,
    cacheKeys: ([userId]) => ({ counter: `spend:end_user:${userId}`, objects: [`end_user_id:${userId}`] }),
  },
  {
    name: 'org',
    table: 'LiteLLM_OrganizationTable',
    key: ['organization_id'],
    tierLinked: true,
    cacheKeys: ([orgId]) => ({
      counter: `spend:org:${orgId}`,
      objects: [`org_id:${orgId}`, `org_id:${orgId}:with_budget`],
    }),
  },
  {
    name: 'org_member',
    table: 'LiteLLM_OrganizationMembership',
    key: ['user_id', 'organization_id'],
    tierLinked: true,
    // LiteLLM keeps no spend counter or cached object per org membership.
    cacheKeys: () => ({ objects: [] }),
  },
  {
    name: 'tag',
    table: 'LiteLLM_TagTable',
    key: ['tag_name'],
    tierLinked: true,
    // The cached `tag:<name>` object is what a tag's budget check falls back to: leaving it after a reset is
    // exactly the "blocked forever" bug.
    cacheKeys: ([tag]) => ({ counter: `spend:tag:${tag}`, objects: [`tag:${tag}`] }),
  },
  {
    name: 'project',
    table: 'LiteLLM_ProjectTable',
    key: ['project_id'],
    tierLinked: true,
    optional: true,
    cacheKeys: ([projectId]) => ({
      counter: `spend:project:${projectId}`,
      objects: [`project_id:${projectId}`],
    }),
  },
  {
    name: 'model_access_group',
    table: 'LiteLLM_ModelAccessGroupBudgetTable',
    key: ['access_group_name'],
    tierLinked: true,
    optional: true,
    cacheKeys: ([name]) => ({
      counter: `spend:model_access_group:${name}`,
      objects: [`model_access_group:${name}`],
    }),
  },
];

/** The row that owns a budget's schedule (`budget_duration`, `budget_reset_at`). */
export interface OwnerTable {
  readonly table: string;
  readonly key: string;
  /** The entity whose own spend is zeroed when this owner resets; a tier has none (spend lives on its links). */
  readonly entity?: EntityType;
}

function entity(name: EntityTypeName): EntityType {
  const found = ENTITY_TYPES.find((e) => e.name === name);
  if (!found) throw new Error(`No entity type ${name} in the registry`);
  return found;
}

/** The row of each kind whose schedule is its own columns (a window's lives in its owner's `budget_limits`). */
export const OWNERS: Readonly<Record<RowBudgetKind, OwnerTable>> = {
  budget: { table: 'LiteLLM_BudgetTable', key: 'budget_id' },
  key: { table: 'LiteLLM_VerificationToken', key: 'token', entity: entity('key') },
  user: { table: 'LiteLLM_UserTable', key: 'user_id', entity: entity('user') },
  team: { table: 'LiteLLM_TeamTable', key: 'team_id', entity: entity('team') },
};

export function entityType(name: string): EntityType | undefined {
  return ENTITY_TYPES.find((e) => e.name === name);
}

/** The id recorded in the audit: the key itself, or a JSON array of the parts of a composite key. */
export function encodeEntityId(parts: readonly string[]): string {
  return parts.length === 1 ? (parts[0] ?? '') : JSON.stringify(parts);
}

export function decodeEntityId(type: EntityType, entityId: string): string[] {
  return type.key.length === 1 ? [entityId] : (JSON.parse(entityId) as string[]);
}

/** Quotes an identifier taken from the registry above (never from input). */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
