/**
 * Where our schedule knowingly answers differently from LiteLLM's `get_next_standardized_reset_time`, one class
 * per reason. The parity test fails on any difference that no class explains, and on a class that explains
 * nothing (so this list cannot rot). The README's "Compatible with LiteLLM" table lists the same classes.
 */
import { DateTime } from 'luxon';

/** One case of the fixture written by `generate-schedule-fixture.py`: LiteLLM's answer for one input. */
export interface ScheduleCase {
  /** `budget_duration`, as stored. */
  readonly d: string;
  /** IANA zone (`litellm_settings.timezone`). */
  readonly z: string;
  /** `budget_reset_time`. */
  readonly t: string;
  /** The instant LiteLLM computed from, UTC. */
  readonly now: string;
  /** 1 when `now` is the second pass of a repeated local time (Python's `fold`). */
  readonly fold?: 1;
  /** LiteLLM's next reset, UTC; absent when it raised. */
  readonly at?: string;
  /** 1 when LiteLLM's answer names a local time the clock skips. */
  readonly gap?: 1;
  /** What LiteLLM raised. */
  readonly error?: string;
}

/** Our answer for the same input. */
export type OurAnswer = { readonly at: string } | { readonly invalid: string };

export interface DeliberateDifference {
  readonly name: string;
  readonly reason: string;
  /** Whether this class explains that we answer `ours` where LiteLLM answered the case's `at`/`error`. */
  explains(c: ScheduleCase, ours: OurAnswer): boolean;
}

const HOUR = 3600n;
const DAY = 24n * HOUR;

/** LiteLLM's reading of the amount and unit, as its `re.match(r"(\d+)([a-z]+)")` takes them. */
function schedulerReading(text: string): { amount: bigint; unit: string } | undefined {
  const match = /^(\d+)([a-z]+)/.exec(text);
  if (!match?.[1] || !match[2]) return undefined;
  return { amount: BigInt(match[1]), unit: match[2] };
}

/**
 * Seconds after local midnight of `now`'s day of the next `Nh`/`Nm`/`Ns` step, before LiteLLM's wrap: it
 * replaces a result past 24:00 by tomorrow at (hour mod 24), right only while that result is before 48:00.
 */
function unwrappedSecondsPastMidnight(c: ScheduleCase): bigint | undefined {
  const reading = schedulerReading(c.d);
  if (!reading || reading.amount === 0n) return undefined;
  const wall = DateTime.fromISO(c.now, { zone: c.z });
  const [h, m, s] = [BigInt(wall.hour), BigInt(wall.minute), BigInt(wall.second)];
  const n = reading.amount;
  switch (reading.unit) {
    case 'h':
      return (h + n - (h % n)) * HOUR;
    case 'm':
      return h * HOUR + (m + n - (m % n)) * 60n;
    case 's':
      return h * HOUR + m * 60n + (s + n - (s % n));
    default:
      return undefined;
  }
}

const isInvalid = (ours: OurAnswer): ours is { readonly invalid: string } => 'invalid' in ours;
const after = (ours: OurAnswer, than: string | undefined): boolean =>
  'at' in ours && than !== undefined && Date.parse(ours.at) > Date.parse(than);
const before = (ours: OurAnswer, than: string | undefined): boolean =>
  'at' in ours && than !== undefined && Date.parse(ours.at) < Date.parse(than);

export const DELIBERATE_DIFFERENCES: readonly DeliberateDifference[] = [
  {
    name: 'hours-past-tomorrow',
    reason:
      'An Nh/Nm/Ns step that lands 48 hours or more past local midnight: LiteLLM wraps it to tomorrow at ' +
      '(hour mod 24), so its 72h resets daily; we reset N hours apart, and call a step past year 9999 invalid.',
    explains: (c, ours) => {
      const past = unwrappedSecondsPastMidnight(c);
      if (past === undefined || past < 2n * DAY) return false;
      return after(ours, c.at) || (isInvalid(ours) && /year 9999/.test(ours.invalid));
    },
  },
  {
    name: 'zero-amount',
    reason:
      'A zero amount (0d, 0h, 00h...): LiteLLM makes the budget due at once and on every run of its job, ' +
      'which its own API refuses; we call it invalid and say what to write.',
    explains: (c, ours) => {
      const reading = schedulerReading(c.d);
      return (
        reading?.amount === 0n &&
        ['s', 'm', 'h', 'd', 'w'].includes(reading.unit) &&
        c.at === c.now &&
        isInvalid(ours) &&
        /zero/.test(ours.invalid)
      );
    },
  },
  {
    name: 'skipped-local-time',
    reason:
      'LiteLLM names a local time the clock skips (02:30 on a spring-forward night): Python reads it with the ' +
      'offset from before the jump (03:30 EDT); we reset at the jump itself (03:00 EDT), when the clock passes it.',
    explains: (c, ours) => c.gap === 1 && before(ours, c.at),
  },
  {
    name: 'second-pass-of-repeated-hour',
    reason:
      'Now is the second pass of a repeated local hour (clocks went back): LiteLLM compares wall clocks and can ' +
      'name a time already passed once, resetting twice; we go by the highest the clock has read, so once.',
    explains: (c, ours) => c.fold === 1 && after(ours, c.now) && after(ours, c.at),
  },
  {
    name: 'non-ascii-digits',
    reason:
      "Python's \\d also matches digits of other scripts (١d is 1d to LiteLLM); we read only ASCII digits, so " +
      'such text is unreadable and resets daily at local midnight, like any text LiteLLM cannot read.',
    explains: (c, ours) => /^\p{Nd}/u.test(c.d) && !/^[0-9]/.test(c.d) && !isInvalid(ours),
  },
];

/** One case of the window fixture written by `generate-window-fixture.py`, with what LiteLLM's own job did. */
export interface WindowCase {
  readonly name: string;
  readonly owner: 'key' | 'team';
  /** The key's token or the team's id. */
  readonly id: string;
  /** The instant LiteLLM's clock was pinned to (its `now`), UTC. */
  readonly now: string;
  /** LiteLLM's `budget_rollover`. */
  readonly rollover: boolean;
  /** `budget_limits` as seeded. */
  readonly limits: readonly unknown[];
  /** Spend counters as seeded in Redis (`spend:<owner>:<id>:window:<duration>` to the stored text). */
  readonly counters: Readonly<Record<string, string>>;
  /** `LiteLLM_BudgetWindowSpend` rows as seeded. */
  readonly spendRows: readonly { duration: string; windowStart: string; spend: number }[];
  readonly litellm: {
    /** The `budget_limits` it wrote; null when it wrote none. */
    readonly limits: readonly unknown[] | null;
    /** Each SET on a counter: key, the text sent, its expiry in seconds (null: none). */
    readonly counterSets: readonly (readonly [string, string, number | null])[];
    /** The statements it sent to `LiteLLM_BudgetWindowSpend`, to be replayed on the seeded rows. */
    readonly spendStatements: readonly { readonly sql: string; readonly params: readonly unknown[] }[];
    /** What it raised: its walk of the table stopped there. */
    readonly raised?: string;
  };
}

/** One thing LiteLLM and we left differently: an element of `budget_limits`, a counter or a window-spend row. */
export interface WindowDifference {
  readonly aspect: 'limits' | 'counter' | 'spendRow';
  /** The window's `budget_duration`, as LiteLLM names its counter and row (null: an element without one). */
  readonly duration: string | null;
  readonly litellm: unknown;
  readonly ours: unknown;
}

export interface WindowDeliberateDifference {
  readonly name: string;
  readonly reason: string;
  explains(c: WindowCase, d: WindowDifference): boolean;
}

/** The elements of a case's `budget_limits` that are windows of `duration`. */
const windowsOf = (c: WindowCase, duration: string | null): Record<string, unknown>[] =>
  c.limits.filter(
    (e): e is Record<string, unknown> =>
      typeof e === 'object' &&
      e !== null &&
      !Array.isArray(e) &&
      (e as Record<string, unknown>).budget_duration === duration,
  );

/** Whether LiteLLM set the counter of this window (it does for every window it resets). */
const litellmReset = (c: WindowCase, duration: string | null): boolean =>
  c.litellm.counterSets.some(([key]) => key === `spend:${c.owner}:${c.id}:window:${duration}`);

/** A `reset_at` as we read it (`budget_lifecycle.window_reset_at`): the instant it names, UTC without an offset. */
function instantOf(text: unknown): number | undefined {
  if (typeof text !== 'string' || !/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(text)) return undefined;
  const iso = text.replace(' ', 'T');
  const at = Date.parse(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(at) ? undefined : at;
}

/** What JSON (Python's `json.loads`) reads in a counter as a number we do not: not finite, or a boolean. */
const notAFiniteNumber = (text: string | undefined): boolean =>
  text !== undefined && /^\s*(-?Infinity|NaN|true|false|-?\d+(\.\d+)?e\+?[4-9]\d\d)\s*$/.test(text);

export const WINDOW_DELIBERATE_DIFFERENCES: readonly WindowDeliberateDifference[] = [
  {
    name: 'window-offset-not-utc',
    reason:
      "A window's reset_at with a non-UTC offset (+05:30, -08:00): LiteLLM drops the offset and reads the wall " +
      'clock as UTC, so it resets hours early or late; we reset at the instant the text names.',
    explains: (c, d) =>
      windowsOf(c, d.duration).some(
        (w) => typeof w.reset_at === 'string' && /[+-](?!00:?00$)\d\d:?\d\d$/.test(w.reset_at),
      ),
  },
  {
    name: 'window-repeated-duration',
    reason:
      'A list repeating a duration: LiteLLM resets each element on its own (they share one counter and row); ' +
      'we reset one window per duration, fenced on its first element.',
    explains: (c, d) => windowsOf(c, d.duration).length > 1,
  },
  {
    name: 'window-duration-with-colon',
    reason: "A duration holding ':' (our window id's separator): LiteLLM resets it; we skip it.",
    explains: (_, d) => d.duration?.includes(':') === true,
  },
  {
    name: 'window-malformed',
    reason:
      'An element LiteLLM cannot handle (not an object, no budget_duration, a reset_at that is not ISO text): its ' +
      'job raises, writes no budget_limits and stops the walk of the table; we skip that element only.',
    explains: (c) => c.litellm.raised !== undefined,
  },
  {
    name: 'window-zero-amount',
    reason: 'A zero duration (0h): LiteLLM resets it on every run; we call it invalid (see zero-amount).',
    explains: (_, d) => /^0+[a-z]/.test(d.duration ?? ''),
  },
  {
    name: 'window-hours-past-tomorrow',
    reason:
      'An Nh window of 48 hours or more: LiteLLM resets it daily (see hours-past-tomorrow); we every N hours.',
    explains: (_, d) => {
      const reading = schedulerReading(d.duration ?? '');
      const seconds = { h: 3600n, m: 60n, s: 1n }[reading?.unit ?? ''];
      return reading !== undefined && seconds !== undefined && reading.amount * seconds >= 2n * DAY;
    },
  },
  {
    name: 'window-late-sweep',
    reason:
      'A window reset after its reset_at: LiteLLM takes the next boundary from its clock (missed periods vanish); ' +
      'we take it from the boundary that was due, so the next reset_at and the row window_start may differ.',
    explains: (c, d) => {
      const first = windowsOf(c, d.duration)[0];
      const due = instantOf(first?.reset_at);
      return (
        due !== undefined && due < Date.parse(c.now) && litellmReset(c, d.duration) && d.aspect !== 'counter'
      );
    },
  },
  {
    name: 'window-not-a-number',
    reason:
      'A counter holding Infinity, 1e400 or true, or a max_budget of true: Python reads them as numbers (true is 1) ' +
      'and LiteLLM carries from them (an Infinity counter stays Infinity); we carry nothing from what is not a ' +
      'finite number.',
    explains: (c, d) =>
      notAFiniteNumber(c.counters[`spend:${c.owner}:${c.id}:window:${d.duration}`]) ||
      windowsOf(c, d.duration).some((w) => typeof w.max_budget === 'boolean'),
  },
];
