/**
 * A window budget is one element of `budget_limits` on a key or a team (LiteLLM 1.108.14). Its budget id is
 * `<key|team>:<owner id>:<budget_duration>`: the owner kind up to the first colon, the duration after the last
 * (a LiteLLM duration never holds a colon), the owner's id in between (which may hold colons). LiteLLM itself
 * names a window by the same triple: its spend counter is `spend:<key|team>:<owner id>:window:<duration>`.
 */
export const WINDOW_OWNER_KINDS = ['key', 'team'] as const;
export type WindowOwnerKind = (typeof WINDOW_OWNER_KINDS)[number];

export interface WindowId {
  readonly owner: WindowOwnerKind;
  readonly ownerId: string;
  readonly duration: string;
}

/** The owner table of each window kind, as LiteLLM's `_WINDOW_SOURCES` lists them. */
export const WINDOW_OWNERS: Readonly<
  Record<WindowOwnerKind, { readonly table: string; readonly key: string; readonly entityType: string }>
> = {
  // `entityType` is LiteLLM's `Litellm_EntityType` value, the `entity_type` of `LiteLLM_BudgetWindowSpend`.
  key: { table: 'LiteLLM_VerificationToken', key: 'token', entityType: 'key' },
  team: { table: 'LiteLLM_TeamTable', key: 'team_id', entityType: 'team' },
};

export class InvalidWindowIdError extends Error {
  override readonly name = 'InvalidWindowIdError';
}

export function formatWindowId(window: WindowId): string {
  return `${window.owner}:${window.ownerId}:${window.duration}`;
}

/** Parses `key:<token>:1h` or `team:<team id>:1d`; throws a one-line error naming the expected form. */
export function parseWindowId(id: string): WindowId {
  const first = id.indexOf(':');
  const last = id.lastIndexOf(':');
  const owner = id.slice(0, Math.max(first, 0));
  const ownerId = id.slice(first + 1, last);
  const duration = id.slice(last + 1);
  if (!(WINDOW_OWNER_KINDS as readonly string[]).includes(owner) || last <= first || !ownerId || !duration) {
    throw new InvalidWindowIdError(
      `Invalid window id ${JSON.stringify(id.slice(0, 120))}: expected <key|team>:<owner id>:<budget_duration> ` +
        '(e.g. window:team:eng:1d)',
    );
  }
  return { owner: owner as WindowOwnerKind, ownerId, duration };
}

/** LiteLLM's spend counter of one window (`_reset_window_page`): it is set, not deleted, when the window resets. */
export function windowCounterKey(window: WindowId): string {
  return `spend:${window.owner}:${window.ownerId}:window:${window.duration}`;
}

/**
 * A spend value as LiteLLM writes it to Redis (`json.dumps` of a Python float): `0.0`, `2.5`, `3.0`. Python
 * prints exponents from 1e16 and below 1e-4 as `1e-05`; JavaScript from 1e21 and below 1e-6 as `1e-7`.
 */
export function pythonFloat(value: number): string {
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : value < 0 ? '-Infinity' : 'NaN';
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e16 || abs < 1e-4)) {
    const [mantissa = '', exponent = '0'] = value.toExponential().split('e');
    const exp = Number(exponent);
    const sign = exp < 0 ? '-' : '+';
    return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const text = String(value);
  return Number.isInteger(value) ? `${text}.0` : text;
}

/**
 * A boundary as we write it into `reset_at`: Python's `isoformat()` of the UTC instant, as LiteLLM's job writes it
 * under its default `UTC` time zone (`2026-11-29T08:00:00+00:00`; microseconds only when not zero).
 */
export function pythonIsoFormat(instant: string): string {
  const iso = new Date(instant).toISOString(); // 2026-11-29T08:00:00.000Z
  const millis = iso.slice(20, 23);
  return `${iso.slice(0, 19)}${millis === '000' ? '' : `.${millis}000`}+00:00`;
}
