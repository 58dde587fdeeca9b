/**
 * LiteLLM's calendar-aligned budget reset boundaries (/work/shared/LITELLM.md, "Durations and reset
 * boundaries"), as pure functions of their arguments so workflow code can call them during replay: no clock,
 * no randomness, no I/O; luxon only supplies time-zone offsets.
 *
 * The rules, applied literally to the local clock reading of `from` (zone and reset time from the options;
 * hours, minutes and seconds ignore the reset time). The result is the first candidate after `from`:
 * - `1d`: today at the reset time, else tomorrow at it;
 * - `7d`, `1w`: this week's Monday at the reset time, else next Monday at it;
 * - `30d`, `1mo`: the 1st of this month at the reset time, else the 1st of next month;
 * - any other `Nd`, `Nw`: midnight of `from`'s day + N days (7N) at the reset time (`3d` on the 15th: 18th);
 * - `Nh`: midnight of `from`'s day + kN hours, k = 1, 2, ... (`5h` at 23:10: 01:00; `36h`: tomorrow 12:00);
 * - `Nm`: the start of `from`'s hour + kN minutes (`90m` at 10:20: 11:30); `Ns`: its minute + kN seconds.
 *
 * Only stepping from boundary to boundary is meaningful (the workflow steps b -> nextBoundary(b), starting
 * once from "now"), and that never skips or repeats a boundary. For `1d`, `7d`, `1mo` and an `Nh`/`Nm`/`Ns`
 * whose N divides the day, hour or minute, the boundaries are a fixed set, so any instant between two of them
 * leads to the second. For the others the answer depends on where the counting starts, exactly as in LiteLLM:
 * `90m` from 10:00 goes 11:30, 12:30, 13:30 (each step counts from the start of its own hour, so after the
 * first it is hourly at :30); `36h` goes to tomorrow 12:00 and then daily at 12:00; `5h` leads from 20:00 to
 * 01:00 but from 00:30 to 05:00; `3d` is every third day from the day it was first scheduled.
 *
 * Daylight saving, decided here:
 * - All arithmetic is on the wall clock, as LiteLLM's (Python's arithmetic on aware datetimes is wall-clock):
 *   midnight stays midnight, and `6h` stays at 00/06/12/18 local, so a real period next to a transition is an
 *   hour shorter or longer.
 * - A repeated local time (clocks go back) is a boundary once, on its first pass, as Python's fold=0 reads
 *   it: the rules read the highest the clock has been, so in America/New_York `1h` goes 01:00 EDT -> 02:00
 *   EST, a two-hour period.
 * - A skipped local time (clocks go forward) is a boundary at the instant the clock jumps: a 02:30 reset time
 *   fires at 03:00 EDT (Python would say 03:30), and the next step counts from the 03:00 the clock then
 *   reads. Times skipped together (`30m`: 02:00, 02:30 and 03:00) are one boundary.
 * (Luxon's own `plus`/`set` resolve a repeated local time using the offset of the DateTime they start from,
 * so two callers could get different answers for the same boundary; hence the explicit wall-clock axis.)
 *
 * Assumed: a zone changes its offset at most once in any two days (true of every zone since 1970 that we
 * know of); `nextBoundary` still never returns an instant at or before `from`.
 */
import { DateTime, IANAZone } from 'luxon';

export type DurationUnit = 's' | 'm' | 'h' | 'd' | 'w' | 'mo';

/** A `budget_duration` that LiteLLM can compute reset times for. */
export interface BudgetDuration {
  readonly amount: number;
  readonly unit: DurationUnit;
  /** The value as written, e.g. `daily` or `30d`. */
  readonly text: string;
}

/** Where day, week and month boundaries fall: an IANA zone and a local `HH:MM` (24-hour) reset time. */
export interface ScheduleOptions {
  readonly timeZone: string;
  readonly resetTime: string;
}

/** LiteLLM's default: midnight UTC. */
export const DEFAULT_SCHEDULE: ScheduleOptions = Object.freeze({ timeZone: 'UTC', resetTime: '00:00' });

/** A `budget_duration` LiteLLM could not compute a reset time for (zero, `2mo`, `1D`, ...). */
export class InvalidDurationError extends Error {
  override name = 'InvalidDurationError';
}

/** An unknown time zone or a malformed reset time. */
export class InvalidScheduleOptionsError extends Error {
  override name = 'InvalidScheduleOptionsError';
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const UNIT_MS: Readonly<Record<Exclude<DurationUnit, 'mo'>, number>> = {
  s: SECOND,
  m: MINUTE,
  h: HOUR,
  d: DAY,
  w: 7 * DAY,
};
/** Nothing resets less often than every ten years: a longer value is a typo, and huge N lose precision. */
const MAX_SPAN_DAYS = 3660;
/** A Monday (1970-01-05 00:00 on the wall-clock axis): where weeks start. */
const MONDAY = 4 * DAY;
/** catchUp steps boundary by boundary up to this many (some 15 ms); beyond it, it jumps. */
const EXACT_COUNT_LIMIT = 1000;

const ALIASES: ReadonlyMap<string, readonly [number, DurationUnit]> = new Map([
  ['hourly', [1, 'h']],
  ['daily', [24, 'h']],
  ['weekly', [7, 'd']],
  ['monthly', [30, 'd']],
]);
const DURATION_FORM = /^(\d+)(mo|s|m|h|d|w)$/;
const RESET_TIME_FORM = /^([01]\d|2[0-3]):([0-5]\d)$/;
const ACCEPTED =
  'expected <N>s, <N>m, <N>h, <N>d, <N>w, 1mo, or hourly|daily|weekly|monthly (N a positive whole number)';

function invalidDuration(text: string, why?: string): InvalidDurationError {
  return new InvalidDurationError(`Invalid budget_duration "${text}": ${why ? `${why}; ` : ''}${ACCEPTED}`);
}

/** Parses a `budget_duration` (aliases any case, units lowercase, surrounding spaces ignored). */
export function parseDuration(value: string): BudgetDuration {
  // Rows come from a database that LiteLLM and people write to: do not trust the static type.
  if (typeof value !== 'string') throw invalidDuration(String(value));
  const trimmed = value.trim();
  const alias = ALIASES.get(trimmed.toLowerCase());
  if (alias) return checkDuration({ amount: alias[0], unit: alias[1], text: value });
  const match = DURATION_FORM.exec(trimmed);
  if (!match?.[1] || !match[2]) throw invalidDuration(value);
  return checkDuration({ amount: Number(match[1]), unit: match[2] as DurationUnit, text: value });
}

/** Rejects what LiteLLM cannot compute; also guards durations built by hand rather than parsed. */
function checkDuration(d: BudgetDuration): BudgetDuration {
  if (!Number.isSafeInteger(d.amount) || d.amount < 1) throw invalidDuration(d.text);
  if (d.unit === 'mo') {
    if (d.amount !== 1) throw invalidDuration(d.text, 'only 1mo is supported');
    return d;
  }
  const unitMs = UNIT_MS[d.unit] as number | undefined;
  if (unitMs === undefined) throw invalidDuration(d.text);
  if (d.amount * unitMs > MAX_SPAN_DAYS * DAY) throw invalidDuration(d.text, 'longer than 10 years');
  return d;
}

/** Checks the zone and reset time, returning the options unchanged. */
export function validateScheduleOptions(opts: ScheduleOptions): ScheduleOptions {
  resolveSchedule(opts);
  return { timeZone: opts.timeZone, resetTime: opts.resetTime };
}

function resolveSchedule(opts: ScheduleOptions): { zone: IANAZone; resetMs: number } {
  const { timeZone, resetTime } = opts;
  // IANAZone.create is cached per name, so calling this on every boundary is cheap.
  const zone = typeof timeZone === 'string' && timeZone !== '' ? IANAZone.create(timeZone) : undefined;
  if (!zone?.isValid) {
    throw new InvalidScheduleOptionsError(
      `Unknown time zone "${String(timeZone)}": use an IANA name such as Europe/London`,
    );
  }
  const match = typeof resetTime === 'string' ? RESET_TIME_FORM.exec(resetTime) : null;
  if (!match) {
    throw new InvalidScheduleOptionsError(
      `Invalid reset time "${String(resetTime)}": expected HH:MM (24-hour, 00:00 to 23:59)`,
    );
  }
  return { zone, resetMs: Number(match[1]) * HOUR + Number(match[2]) * MINUTE };
}

/** The first reset boundary strictly after `from`, by LiteLLM's calendar-aligned rules. */
export function nextBoundary(
  duration: BudgetDuration,
  from: Date,
  opts: ScheduleOptions = DEFAULT_SCHEDULE,
): Date {
  const { zone, rule } = prepare(duration, opts);
  return new Date(boundaryAfter(zone, rule, instant(from)).at);
}

/**
 * After a late wake-up: follows the boundaries from `scheduled` (b0 = scheduled, b1 = nextBoundary(b0), ...)
 * and returns the last one not after `now`, how many steps that took, and the boundary after it.
 *
 * Up to 1000 steps the count is exact. Beyond that it jumps along the duration's pattern (the times that
 * stepping runs through, see `Rule.pattern`) to the last of them the clock has reached, and counts those
 * times: exact, except that times a spring-forward skips count one each although they share a boundary, and
 * that a step shifted by a clock jump (`120m` counting from 03:00 because 02:00 was skipped) is not followed.
 */
export function catchUp(
  duration: BudgetDuration,
  scheduled: Date,
  now: Date,
  opts: ScheduleOptions = DEFAULT_SCHEDULE,
): { latest: Date; missedPeriods: number; next: Date } {
  const { zone, rule } = prepare(duration, opts);
  const end = instant(now);
  let latest: Boundary = { at: instant(scheduled), wall: Number.NaN };
  let next = boundaryAfter(zone, rule, latest.at);
  let missedPeriods = 0;
  for (; next.at <= end && missedPeriods < EXACT_COUNT_LIMIT; missedPeriods++) {
    latest = next;
    next = boundaryAfter(zone, rule, latest.at);
  }
  if (next.at <= end) {
    // Far behind (`1s` over a year): jump to the last pattern time the clock has reached, then step as usual.
    const pattern = rule.pattern(latest.wall);
    const from = pattern.index(latest.wall);
    const to = pattern.index(wallHighWater(zone, end));
    if (to > from) {
      missedPeriods += to - from;
      latest = { at: firstInstantAt(zone, pattern.point(to)), wall: pattern.point(to) };
      next = boundaryAfter(zone, rule, latest.at);
    }
    for (; next.at <= end; missedPeriods++) {
      latest = next;
      next = boundaryAfter(zone, rule, latest.at);
    }
  }
  return { latest: new Date(latest.at), missedPeriods, next: new Date(next.at) };
}

/**
 * One whole period from `from`, not aligned to the calendar: what a forced reset with `reanchor` uses so the
 * new period starts now. Days, weeks and months are wall-clock arithmetic in the zone (a day across a DST
 * change is still a day); seconds, minutes and hours are elapsed time. Validates like `nextBoundary`.
 */
export function addPeriod(
  duration: BudgetDuration,
  from: Date,
  opts: ScheduleOptions = DEFAULT_SCHEDULE,
): Date {
  const { zone } = resolveSchedule(opts);
  const { amount, unit } = checkDuration(duration);
  const start = instant(from);
  if (unit === 's' || unit === 'm' || unit === 'h') return new Date(start + amount * UNIT_MS[unit]);
  const local = DateTime.fromMillis(start, { zone });
  const shifted =
    unit === 'mo' ? local.plus({ months: amount }) : local.plus({ days: amount * (unit === 'w' ? 7 : 1) });
  return shifted.toJSDate();
}

function instant(date: Date): number {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('Invalid Date given to the budget schedule');
  return ms;
}

// Wall-clock axis: a local date and time written as if it were UTC, in epoch milliseconds, so that calendar
// arithmetic (Date.UTC, whole days) is plain arithmetic and DST only enters when converting to instants.

/** A boundary: its instant, and the wall-clock time that the rule named and the clock reached then. */
interface Boundary {
  readonly at: number;
  readonly wall: number;
}

/** A duration's rule on the wall-clock axis. */
interface Rule {
  /** The wall-clock time of the reset after the clock reads `wall`: always later than `wall`. */
  next(wall: number): number;
  /**
   * The times that stepping runs through once it has reached `wall` (a result of `next`), in order and
   * including `wall`: the same for every `wall` where the boundaries are a fixed set, anchored at `wall`
   * where they are not. Only catchUp's jump uses it.
   */
  pattern(wall: number): Lattice;
}

/** Wall-clock times in order, numbered by consecutive integers. */
interface Lattice {
  /** The number of the last time at or before `wall`. */
  index(wall: number): number;
  /** The time numbered `i`. */
  point(i: number): number;
}

function prepare(duration: BudgetDuration, opts: ScheduleOptions): { zone: IANAZone; rule: Rule } {
  const { zone, resetMs } = resolveSchedule(opts);
  return { zone, rule: ruleFor(checkDuration(duration), resetMs) };
}

function ruleFor({ amount, unit }: BudgetDuration, resetMs: number): Rule {
  if (unit === 'mo' || (unit === 'd' && amount === 30)) return fixed(monthly(resetMs));
  if (unit === 'd' && amount === 1) return fixed(periodic(DAY, resetMs));
  if ((unit === 'd' && amount === 7) || (unit === 'w' && amount === 1)) {
    return fixed(periodic(7 * DAY, MONDAY + resetMs));
  }
  const step = amount * UNIT_MS[unit];
  if (unit === 'd' || unit === 'w') {
    // Midnight + N days at the reset time: each step is N days on, from wherever the chain began.
    return { next: (wall) => floor(wall, DAY) + step + resetMs, pattern: (wall) => periodic(step, wall) };
  }
  // Multiples of the step from the start of the minute, hour or day: the first one after `wall`.
  const unitMs = unit === 's' ? MINUTE : unit === 'm' ? HOUR : DAY;
  const next = (wall: number): number => {
    const start = floor(wall, unitMs);
    return start + (Math.floor((wall - start) / step) + 1) * step;
  };
  if (step <= unitMs) {
    const lattice = withinUnit(unitMs, step);
    return { next, pattern: () => lattice };
  }
  // A step longer than its unit lands at the same offset into a later unit every time: `90m` hourly at :30.
  return { next, pattern: (wall) => periodic(unitMs * Math.floor(step / unitMs), wall) };
}

/** A rule whose boundaries are a fixed set: the next time on the lattice. */
function fixed(lattice: Lattice): Rule {
  return { next: (wall) => lattice.point(lattice.index(wall) + 1), pattern: () => lattice };
}

function floor(wall: number, size: number): number {
  return Math.floor(wall / size) * size;
}

/** Every `period`, counted from `anchor`. */
function periodic(period: number, anchor: number): Lattice {
  return { index: (wall) => Math.floor((wall - anchor) / period), point: (i) => anchor + i * period };
}

/** The 1st of every month at the reset time; `i` counts months from January 1970. */
function monthly(resetMs: number): Lattice {
  const point = (i: number): number => Date.UTC(1970, i, 1) + resetMs;
  const index = (wall: number): number => {
    const date = new Date(wall);
    const i = (date.getUTCFullYear() - 1970) * 12 + date.getUTCMonth();
    return point(i) <= wall ? i : i - 1;
  };
  return { index, point };
}

/**
 * Where stepping a `step` no longer than `unit` runs: multiples of `step` from the start of each unit, the
 * one that overruns kept as a carry into the next unit (`5h`: 05:00, 10:00, 15:00, 20:00 and the next day's
 * 01:00; `45m`: :45 and the next hour's :30). From any other time the next step lands on it too.
 */
function withinUnit(unit: number, step: number): Lattice {
  const perUnit = Math.ceil(unit / step); // steps 1..perUnit of each unit; only the last can overrun
  const point = (i: number): number => {
    const u = Math.floor(i / perUnit);
    return u * unit + (i - u * perUnit + 1) * step;
  };
  const index = (wall: number): number => {
    const u = Math.floor(wall / unit);
    const k = Math.floor((wall - u * unit) / step); // this unit's steps at or before `wall`
    if (k >= 1) return u * perUnit + k - 1;
    const carry = u * perUnit - 1; // the previous unit's last step, which may lie after `wall`
    return point(carry) <= wall ? carry : carry - 1;
  };
  return { index, point };
}

/** The earliest boundary after instant `t`. */
function boundaryAfter(zone: IANAZone, rule: Rule, t: number): Boundary {
  // The rule reads the highest the clock has been by `t`, so the time it names is one the clock has not
  // reached yet and normally the answer; the loop only guards zones that break the one-change assumption.
  for (let wall = rule.next(wallHighWater(zone, t)); ; wall = rule.next(wall)) {
    const at = firstInstantAt(zone, wall);
    if (at > t) return { at, wall };
  }
}

function offsetMs(zone: IANAZone, t: number): number {
  return Math.round(zone.offset(t) * MINUTE);
}

/** The first instant in (lo, hi] whose offset differs from the one at `lo` (one change assumed there). */
function transitionIn(zone: IANAZone, lo: number, hi: number): number {
  const before = offsetMs(zone, lo);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetMs(zone, mid) === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

/** The highest wall-clock reading up to `t`: during a repeated hour the clock reads less than it did. */
function wallHighWater(zone: IANAZone, t: number): number {
  const now = offsetMs(zone, t);
  const dayBefore = offsetMs(zone, t - DAY);
  if (now === dayBefore) return t + now;
  const change = transitionIn(zone, t - DAY, t);
  return Math.max(t + now, change - 1 + dayBefore);
}

/** The first instant the clock reads `wall` or later: a repeated time's first pass, a skipped time's jump. */
function firstInstantAt(zone: IANAZone, wall: number): number {
  // Every instant that reads `wall` lies within 14 hours of it, so offsets a day either side bracket it.
  const before = offsetMs(zone, wall - DAY);
  const after = offsetMs(zone, wall + DAY);
  if (before === after) return wall - before;
  const change = transitionIn(zone, wall - DAY, wall + DAY);
  const early = wall - before;
  return early < change ? early : Math.max(change, wall - after);
}
