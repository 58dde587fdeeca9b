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
