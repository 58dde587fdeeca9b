/**
 * LiteLLM's calendar-aligned budget reset boundaries (LiteLLM 1.108.14's `get_next_standardized_reset_time`
 * in `litellm_core_utils/duration_parser.py`), as pure functions of their arguments so workflow code can call
 * them during replay: no clock, no randomness, no I/O; luxon only supplies time-zone offsets.
 * `test/parity/` compares them with LiteLLM's own functions case by case.
 *
 * The grammar is what LiteLLM's scheduler reads, not what its API documents (see `parseDuration`): an alias,
 * else digits and lowercase letters at the start of the text with anything after them ignored, else (or with
 * a unit it does not know) "daily at local midnight". Only what LiteLLM itself cannot schedule is invalid.
 *
 * The rules, applied literally to the local clock reading of `from` (zone and reset time from the options;
 * hours, minutes and seconds ignore the reset time). The result is the first candidate after `from`:
 * - `1d`: today at the reset time, else tomorrow at it;
 * - `7d`, `1w`: this week's Monday at the reset time, else next Monday at it;
 * - `30d`, `1mo`: the 1st of this month at the reset time, else the 1st of next month;
 * - any other `Nd`, `Nw`: midnight of `from`'s day + N days (7N) at the reset time (`3d` on the 15th: 18th);
 * - `Nh`: midnight of `from`'s day + kN hours, k = 1, 2, ... (`5h` at 23:10: 01:00; `36h`: tomorrow 12:00);
 *   LiteLLM wraps a result 48 h or more past midnight to tomorrow at (hour mod 24), making `72h` daily: a
 *   bug we do not copy (the README lists every deliberate difference);
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
  /**
   * Set when LiteLLM reads the text otherwise than it looks (`1hour`: daily at midnight; `1h30m`: `1h`): what
   * it does, for status and logs. Absent for the documented forms (`<N><unit>` and the aliases).
   */
  readonly note?: string;
}

/**
 * Where day, week and month boundaries fall: an IANA zone and a local 24-hour reset time, `HH:MM` or
 * `HH:MM:SS` (`validateScheduleOptions` also accepts LiteLLM's `7:5` and returns `07:05`).
 */
export interface ScheduleOptions {
  readonly timeZone: string;
  readonly resetTime: string;
}

/** LiteLLM's default: midnight UTC. */
export const DEFAULT_SCHEDULE: ScheduleOptions = Object.freeze({ timeZone: 'UTC', resetTime: '00:00' });

/** A `budget_duration` LiteLLM itself cannot schedule (`2mo`, a zero amount, past year 9999). */
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
/**
 * LiteLLM stores reset times as Python datetimes, which end with year 9999: a boundary after that is one it
 * cannot compute (`OverflowError`), and no step may be longer than the years between 1970 and then.
 */
const END_OF_TIME = Date.UTC(10000, 0, 1);
const MAX_STEP_MS = END_OF_TIME;
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
const UNITS: ReadonlySet<string> = new Set<DurationUnit>(['s', 'm', 'h', 'd', 'w', 'mo']);
/** LiteLLM's `_parse_duration`: `re.match(r"(\d+)([a-z]+)")`, anchored at the start only. */
const SCHEDULER_FORM = /^(\d+)([a-z]+)/;
/** What Python's `str.strip()` removes (`str.isspace()`); LiteLLM strips only to look up an alias. */
const PY_SPACE =
  '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g');
/** LiteLLM's `budget_reset_time`: `strptime` with `%H:%M` or `%H:%M:%S` (one or two digits each). */
const RESET_TIME_FORM = /^(2[0-3]|[01]\d|\d):([0-5]\d|\d)(?::([0-5]\d|\d))?$/;
const ACCEPTED =
  'use <N>s, <N>m, <N>h, <N>d, <N>w, 1mo, or hourly|daily|weekly|monthly (N a positive whole number)';

/** Longest part of a row's text quoted in an error or note: a 10 kB value must not become a 10 kB log line. */
const QUOTED_MAX = 60;

/** `text` in quotes, shortened past {@link QUOTED_MAX} characters (with its full length, to recognise it by). */
function quoted(text: string): string {
  const chars = [...text];
  return chars.length <= QUOTED_MAX
    ? `"${text}"`
    : `"${chars.slice(0, QUOTED_MAX).join('')}…" (${chars.length} characters)`;
}

function invalidDuration(text: string, why: string): InvalidDurationError {
  return new InvalidDurationError(`Invalid budget_duration ${quoted(text)}: ${why}; ${ACCEPTED}`);
}

/** LiteLLM's fallback for text its scheduler cannot read: the next local midnight, every day (= `24h`). */
function dailyAtMidnight(text: string, why: string): BudgetDuration {
  return { amount: 24, unit: 'h', text, note: `${why}, so LiteLLM resets it daily at local midnight` };
}

/**
 * Parses a `budget_duration` the way LiteLLM's reset job reads it (`get_next_standardized_reset_time`):
 * - an alias, any case, surrounding spaces ignored: `hourly` = `1h`, `daily` = `24h`, `weekly` = `7d`,
 *   `monthly` = `30d`;
 * - else digits and lowercase letters at the start, anything after them ignored: `1h30m` is `1h`, `1d x` is
 *   `1d` (each with a `note`);
 * - else, or when those letters are no unit (`1days`, `1min`, `1ms`, `1hour`, `1month`, `1dx`, `1D`, `1.5h`,
 *   `1 d`, empty text), the next local midnight every day, whatever the reset time: `24h`, with a `note`. LiteLLM's
 *   API refuses some of these and stores others (its own check reads `1ms` as one minute and `1month` as a
 *   month), but its job resets all of them daily at midnight, and so do we.
 * Invalid (`InvalidDurationError`, the message says what to write instead) only where LiteLLM cannot compute
 * a reset itself: `Nmo` with N other than 1, a step past year 9999, and a zero amount (LiteLLM makes such a
 * budget due on every run of its job, which its own API refuses).
 */
export function parseDuration(value: string): BudgetDuration {
  // Rows come from a database that LiteLLM and people write to: do not trust the static type.
  if (typeof value !== 'string') throw invalidDuration(String(value), 'not text');
  const alias = ALIASES.get(value.replace(PY_STRIP, '').toLowerCase());
  if (alias) return checkDuration({ amount: alias[0], unit: alias[1], text: value });
  const match = SCHEDULER_FORM.exec(value);
  const [read, digits, letters] = match ?? [];
  if (read === undefined || digits === undefined || letters === undefined) {
    return dailyAtMidnight(value, 'LiteLLM cannot read it (digits then a lowercase unit at the start)');
  }
  if (!UNITS.has(letters)) return dailyAtMidnight(value, `LiteLLM knows no unit ${quoted(letters)}`);
  const note = read.length < value.length ? `LiteLLM reads only ${quoted(read)}` : undefined;
  return checkDuration({
    amount: Number(digits),
    unit: letters as DurationUnit,
    text: value,
    ...(note === undefined ? {} : { note }),
  });
}

/** Rejects what LiteLLM cannot schedule; also guards durations built by hand rather than parsed. */
function checkDuration(d: BudgetDuration): BudgetDuration {
  if (!Number.isInteger(d.amount) || d.amount < 0) throw invalidDuration(d.text, 'not a whole number');
  if (d.amount === 0) {
    throw invalidDuration(
      d.text,
      "zero makes the budget due on every run of LiteLLM's job (its API refuses it)",
    );
  }
  if (d.unit === 'mo') {
    if (d.amount !== 1) throw invalidDuration(d.text, 'only 1mo is supported, as in LiteLLM');
    return d;
  }
  const unitMs = UNIT_MS[d.unit] as number | undefined;
  if (unitMs === undefined) throw invalidDuration(d.text, `unknown unit "${String(d.unit)}"`);
  if (!Number.isSafeInteger(d.amount) || d.amount * unitMs >= MAX_STEP_MS) {
    throw invalidDuration(d.text, 'its resets would fall after year 9999, which LiteLLM cannot store');
  }
  return d;
}

/**
 * Milliseconds after local midnight of a reset time as LiteLLM's `budget_reset_time` accepts it: `HH:MM` or
 * `HH:MM:SS`, 24-hour, one or two digits each (`7:5` is 07:05). Throws InvalidScheduleOptionsError.
 */
export function parseResetTime(text: string): number {
  const match = typeof text === 'string' ? RESET_TIME_FORM.exec(text) : null;
  if (!match) {
    throw new InvalidScheduleOptionsError(
      `Invalid reset time "${String(text)}": expected HH:MM or HH:MM:SS, 24-hour (00:00 to 23:59:59)`,
    );
  }
  return Number(match[1]) * HOUR + Number(match[2]) * MINUTE + Number(match[3] ?? 0) * SECOND;
}

/** `HH:MM`, or `HH:MM:SS` when the seconds are not zero. */
function formatResetTime(ms: number): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const hhmm = `${two(Math.floor(ms / HOUR))}:${two(Math.floor(ms / MINUTE) % 60)}`;
  const seconds = Math.floor(ms / SECOND) % 60;
  return seconds === 0 ? hhmm : `${hhmm}:${two(seconds)}`;
}

/** Checks the zone and reset time; returns them with the reset time written `HH:MM` (`HH:MM:SS`). */
export function validateScheduleOptions(opts: ScheduleOptions): ScheduleOptions {
  const { resetMs } = resolveSchedule(opts);
  return { timeZone: opts.timeZone, resetTime: formatResetTime(resetMs) };
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
  return { zone, resetMs: parseResetTime(resetTime) };
}

/** The first reset boundary strictly after `from`, by LiteLLM's calendar-aligned rules. */
export function nextBoundary(
  duration: BudgetDuration,
  from: Date,
  opts: ScheduleOptions = DEFAULT_SCHEDULE,
): Date {
  const { zone, rule } = prepare(duration, opts);
  return new Date(beforeEndOfTime(duration, boundaryAfter(zone, rule, instant(from)).at));
}

/** LiteLLM raises OverflowError for a reset after year 9999 (it wraps hours instead: not copied, see README). */
function beforeEndOfTime(duration: BudgetDuration, at: number): number {
  if (!(at < END_OF_TIME)) {
    throw invalidDuration(
      duration.text,
      'its next reset would fall after year 9999, which LiteLLM cannot store',
    );
  }
  return at;
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
  return {
    latest: new Date(latest.at),
    missedPeriods,
    next: new Date(beforeEndOfTime(duration, next.at)),
  };
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
  if (unit === 's' || unit === 'm' || unit === 'h') {
    return new Date(beforeEndOfTime(duration, start + amount * UNIT_MS[unit]));
  }
  const local = DateTime.fromMillis(start, { zone });
  const shifted =
    unit === 'mo' ? local.plus({ months: amount }) : local.plus({ days: amount * (unit === 'w' ? 7 : 1) });
  return new Date(beforeEndOfTime(duration, shifted.toMillis()));
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
