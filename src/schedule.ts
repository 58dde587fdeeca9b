/**
 * LiteLLM's calendar-aligned budget reset boundaries (/work/shared/LITELLM.md, "Durations and reset
 * boundaries"), as pure functions of their arguments so workflow code can call them during replay: no clock,
 * no randomness, no I/O; luxon only supplies time-zone offsets.
 *
 * The model. Each duration names a fixed set of local wall-clock times, its lattice: `1d` = every day at the
 * reset time, `7d` = every Monday at it, `1mo` = every 1st at it, `5h` = 05:00, 10:00, 15:00, 20:00 and the
 * carried 01:00 of every day. A lattice time becomes a boundary at the first instant the zone's clock reads
 * it (or later), and `nextBoundary(d, t)` is the earliest boundary after `t`. Because the set never depends on
 * `t`, stepping from boundary to boundary, from a late wake-up or from any instant in between all agree.
 * (Luxon's own `plus`/`set` resolve a repeated local time using the offset of the DateTime they start from,
 * so two callers could get different answers for the same boundary; hence the explicit wall-clock axis.)
 *
 * Daylight saving, decided here:
 * - Day, week and month boundaries stay at the local reset time: midnight stays midnight.
 * - `Nh`/`Nm`/`Ns` count wall-clock time, as LiteLLM does (Python arithmetic on aware datetimes is wall-clock):
 *   `6h` stays at 00/06/12/18 local, so the real period next to a transition is an hour shorter or longer.
 * - A repeated local time (clocks go back) is a boundary once, on its first pass, as Python's fold=0 reads it:
 *   in America/New_York `1h` goes 01:00 EDT -> 02:00 EST, a two-hour period.
 * - A skipped local time (clocks go forward) is a boundary at the instant the clock jumps: a 02:30 reset time
 *   fires at 03:00 EDT (Python would say 03:30). Lattice times skipped together (`30m`: 02:00, 02:30, 03:00)
 *   are one boundary.
 *
 * Where LiteLLM has no consistent rule, decided here: LiteLLM counts from the sweep's own hour or day, so a
 * step longer than its unit depends on when the sweep ran (`90m` at 10:20 -> 11:30 but then hourly at :30;
 * `36h` -> tomorrow 12:00 but then daily at 12:00; `3d` -> midnight + 3 days from whenever). Instead:
 * - a sub-day step counts from the start of the smallest of minute, hour and day that holds it, so `90m` is
 *   every 90 minutes from local midnight (10:20 -> 10:30), while `30m`, `45s`, `5h` keep LiteLLM's rule exactly;
 * - a step longer than a day (`2d`, `2w`, `36h`) repeats from a fixed anchor, local Monday 1970-01-05 00:00
 *   (plus the reset time for days and weeks): `2w` is every other Monday, `36h` alternates 00:00 and 12:00.
 *   The first period of a new schedule can therefore be shorter than N.
 * And `1d` is also a step from that anchor (every day), `7d`/`1w` too (every Monday): one rule, no special case.
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
/** A Monday (1970-01-05 00:00 on the wall-clock axis): the anchor of steps longer than a day. */
const MONDAY = 4 * DAY;
/** catchUp counts boundaries one by one up to this many (some 15 ms); beyond it, by arithmetic. */
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
  const { zone, lattice } = prepare(duration, opts);
  return new Date(boundaryAfter(zone, lattice, instant(from)));
}

/** After a late wake-up: the last boundary not after `now` (from `scheduled` on), how many were passed, and the one after. */
export function catchUp(
  duration: BudgetDuration,
  scheduled: Date,
  now: Date,
  opts: ScheduleOptions = DEFAULT_SCHEDULE,
): { latest: Date; missedPeriods: number; next: Date } {
  const { zone, lattice } = prepare(duration, opts);
  const start = instant(scheduled);
  const end = instant(now);
  const first = boundaryAfter(zone, lattice, start);
  if (first > end) return { latest: new Date(start), missedPeriods: 0, next: new Date(first) };
  // Jump straight to the last lattice time the clock has reached: `1s` over a year is no slower than `1d`.
  const lastIndex = lattice.index(wallHighWater(zone, end));
  const latest = firstInstantAt(zone, lattice.point(lastIndex));
  const next = new Date(boundaryAfter(zone, lattice, latest));
  // Count exactly, one boundary at a time, while that is cheap. Past that, count the lattice times passed:
  // exact except that wall-clock times skipped by a spring-forward (they share one boundary) count too.
  let missedPeriods = 1;
  for (let b = first; b < latest; missedPeriods++) {
    if (missedPeriods === EXACT_COUNT_LIMIT) {
      return {
        latest: new Date(latest),
        missedPeriods: lastIndex - lattice.index(wallHighWater(zone, start)),
        next,
      };
    }
    b = boundaryAfter(zone, lattice, b);
  }
  return { latest: new Date(latest), missedPeriods, next };
}

function instant(date: Date): number {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('Invalid Date given to the budget schedule');
  return ms;
}

// Wall-clock axis: a local date and time written as if it were UTC, in epoch milliseconds, so that calendar
// arithmetic (Date.UTC, whole days) is plain arithmetic and DST only enters when converting to instants.

/** A duration's lattice: wall-clock times in order, numbered by consecutive integers. */
interface Lattice {
  /** The number of the last lattice time at or before `wall`. */
  index(wall: number): number;
  /** The lattice time numbered `i`. */
  point(i: number): number;
}

function prepare(duration: BudgetDuration, opts: ScheduleOptions): { zone: IANAZone; lattice: Lattice } {
  const { zone, resetMs } = resolveSchedule(opts);
  const { amount, unit } = checkDuration(duration);
  if (unit === 'mo' || (unit === 'd' && amount === 30)) return { zone, lattice: monthly(resetMs) };
  if (unit === 'd' || unit === 'w')
    return { zone, lattice: periodic(amount * UNIT_MS[unit], MONDAY + resetMs) };
  // Hours, minutes and seconds ignore the reset time.
  const step = amount * UNIT_MS[unit];
  const container = [MINUTE, HOUR, DAY].find((size) => step <= size);
  return { zone, lattice: container === undefined ? periodic(step, MONDAY) : withinUnit(container, step) };
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
 * LiteLLM's rule: multiples of `step` from the start of each `unit` (minute, hour or day), the one that
 * overruns kept as a carry into the next unit (`5h` at 23:10 -> 01:00; `45m` at 10:50 -> 11:30).
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
function boundaryAfter(zone: IANAZone, lattice: Lattice, t: number): number {
  // Lattice times the clock has not reached by `t` are exactly those after its high-water mark, so the first
  // of them is normally the answer; the loop only guards zones that break the one-change-in-two-days assumption.
  for (let i = lattice.index(wallHighWater(zone, t)) + 1; ; i++) {
    const boundary = firstInstantAt(zone, lattice.point(i));
    if (boundary > t) return boundary;
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

/** The latest wall-clock reading at or before `t`: during a repeated hour the clock reads less than it did. */
function wallHighWater(zone: IANAZone, t: number): number {
  const now = offsetMs(zone, t);
  const dayBefore = offsetMs(zone, t - DAY);
  if (now === dayBefore) return t + now;
  const change = transitionIn(zone, t - DAY, t);
  return Math.max(t + now, change - 1 + dayBefore);
}

/** The first instant at which the clock reads `wall` or later: a repeated time's first pass, a skipped time's jump. */
function firstInstantAt(zone: IANAZone, wall: number): number {
  // Every instant that reads `wall` lies within 14 hours of it, so offsets a day either side bracket it.
  const before = offsetMs(zone, wall - DAY);
  const after = offsetMs(zone, wall + DAY);
  if (before === after) return wall - before;
  const change = transitionIn(zone, wall - DAY, wall + DAY);
  const early = wall - before;
  return early < change ? early : Math.max(change, wall - after);
}

/**
 * One whole period from `from`, not aligned to the calendar: what a forced reset with `reanchor` uses so the new
 * period starts now. Days, weeks and months are wall-clock arithmetic in the zone (a day across a DST change is
 * still a day); seconds, minutes and hours are elapsed time.
 */
export function addPeriod(duration: BudgetDuration, from: Date, opts: ScheduleOptions = DEFAULT_SCHEDULE): Date {
  const start = instant(from);
  if (duration.unit === 's' || duration.unit === 'm' || duration.unit === 'h') {
    return new Date(start + duration.amount * UNIT_MS[duration.unit]);
  }
  const { zone } = resolveSchedule(opts);
  const local = DateTime.fromMillis(start, { zone });
  const shifted =
    duration.unit === 'mo'
      ? local.plus({ months: duration.amount })
      : local.plus({ days: duration.amount * (duration.unit === 'w' ? 7 : 1) });
  return shifted.toJSDate();
}
