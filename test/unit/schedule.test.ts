import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { DateTime, IANAZone } from 'luxon';
import {
  DEFAULT_SCHEDULE,
  InvalidDurationError,
  InvalidScheduleOptionsError,
  addPeriod,
  catchUp,
  nextBoundary,
  parseDuration,
  validateScheduleOptions,
  type BudgetDuration,
  type ScheduleOptions,
} from '../../src/schedule.js';

const iso = (date: Date): string => date.toISOString();
/** Normalises `2023-07-01T00:00:00Z` to what toISOString prints. */
const norm = (text: string): string => new Date(text).toISOString();

interface Case {
  readonly duration: string;
  readonly from: string;
  readonly expected: string;
  readonly zone?: string;
  readonly reset?: string;
}

/** One table row: nextBoundary(duration, from) in zone at reset time === expected. */
function checkCase({ duration, from, expected, zone = 'UTC', reset = '00:00' }: Case): void {
  const got = nextBoundary(parseDuration(duration), new Date(from), { timeZone: zone, resetTime: reset });
  expect(iso(got)).toBe(norm(expected));
}

const caseName = '$duration from $from ($zone $reset) -> $expected';
/** Fills in the defaults so that test names show them. */
const rows = (cases: readonly Case[]): Case[] => cases.map((c) => ({ zone: 'UTC', reset: '00:00', ...c }));

describe('parseDuration', () => {
  it.each([
    ['1s', 1, 's'],
    ['45s', 45, 's'],
    ['1m', 1, 'm'],
    ['30m', 30, 'm'],
    ['90m', 90, 'm'],
    ['1h', 1, 'h'],
    ['5h', 5, 'h'],
    ['24h', 24, 'h'],
    ['36h', 36, 'h'],
    ['1d', 1, 'd'],
    ['2d', 2, 'd'],
    ['7d', 7, 'd'],
    ['30d', 30, 'd'],
    ['3650d', 3650, 'd'],
    ['1w', 1, 'w'],
    ['2w', 2, 'w'],
    ['1mo', 1, 'mo'],
    ['01d', 1, 'd'],
    ['hourly', 1, 'h'],
    ['daily', 24, 'h'],
    ['weekly', 7, 'd'],
    ['monthly', 30, 'd'],
    ['Daily', 24, 'h'],
    ['WEEKLY', 7, 'd'],
    ['Monthly', 30, 'd'],
    ['HoUrLy', 1, 'h'],
    ['\tweekly\n', 7, 'd'],
  ])('accepts %j as %i%s', (value, amount, unit) => {
    expect(parseDuration(value)).toEqual({ amount, unit, text: value });
  });

  it.each([
    ['1h30m', 1, 'h', 'LiteLLM reads only "1h"'],
    ['1d x', 1, 'd', 'LiteLLM reads only "1d"'],
    ['1d5', 1, 'd', 'LiteLLM reads only "1d"'],
    ['1d ', 1, 'd', 'LiteLLM reads only "1d"'],
    ['1mo x', 1, 'mo', 'LiteLLM reads only "1mo"'],
  ])('reads %j as LiteLLM does, ignoring what follows the unit', (value, amount, unit, note) => {
    expect(parseDuration(value)).toEqual({ amount, unit, text: value, note });
  });

  it.each([
    // Letters LiteLLM's scheduler knows no unit for: whatever its API thought they meant.
    ['1days', 'no unit "days"'],
    ['1min', 'no unit "min"'],
    ['1ms', 'no unit "ms"'],
    ['1hour', 'no unit "hour"'],
    ['1month', 'no unit "month"'],
    ['1dx', 'no unit "dx"'],
    ['1dd', 'no unit "dd"'],
    ['1y', 'no unit "y"'],
    ['1e3s', 'no unit "e"'],
    ['0days', 'no unit "days"'],
    // Text its scheduler cannot read at all.
    ['1D', 'cannot read it'],
    ['1H', 'cannot read it'],
    ['1MO', 'cannot read it'],
    ['1Mo', 'cannot read it'],
    ['1.5h', 'cannot read it'],
    ['1,5h', 'cannot read it'],
    ['1 d', 'cannot read it'],
    [' 1d', 'cannot read it'],
    ['', 'cannot read it'],
    ['   ', 'cannot read it'],
    ['abc', 'cannot read it'],
    ['-1d', 'cannot read it'],
    ['+1d', 'cannot read it'],
    ['d', 'cannot read it'],
    ['mo', 'cannot read it'],
    ['1', 'cannot read it'],
    ['day', 'cannot read it'],
    ['yearly', 'cannot read it'],
    ['daily2', 'cannot read it'],
  ])('reads %j as daily at local midnight (24h), as LiteLLM does, and says so', (value, why) => {
    const d = parseDuration(value);
    expect(d).toMatchObject({ amount: 24, unit: 'h', text: value });
    expect(d.note).toContain(why);
    expect(d.note).toContain('daily at local midnight');
  });

  it.each([
    '2mo',
    '0mo',
    '12mo',
    '0s',
    '0d',
    '00h',
    '0w',
    '99999999999d',
    '3000000d',
    '99999999999999999999h',
  ])('rejects %j with InvalidDurationError naming it', (value) => {
    expect(() => parseDuration(value)).toThrow(InvalidDurationError);
    try {
      parseDuration(value);
    } catch (error) {
      const e = error as InvalidDurationError;
      expect(e.name).toBe('InvalidDurationError');
      expect(e.message).toContain(`"${value}"`);
      expect(e.message).toContain('<N>s, <N>m, <N>h, <N>d, <N>w, 1mo, or hourly|daily|weekly|monthly');
    }
  });

  it('says why each rejection is one', () => {
    expect(() => parseDuration('2mo')).toThrow(/only 1mo/);
    expect(() => parseDuration('0d')).toThrow(/zero makes the budget due on every run/);
    expect(() => parseDuration('99999999999d')).toThrow(/after year 9999/);
  });

  it('accepts long durations LiteLLM can still store', () => {
    expect(parseDuration('3661d')).toEqual({ amount: 3661, unit: 'd', text: '3661d' });
    expect(iso(nextBoundary(parseDuration('2000000d'), new Date('2026-01-01T10:00:00Z')))).toBe(
      '7501-10-26T00:00:00.000Z',
    );
    // The step fits, but the boundary it leads to does not.
    expect(() => nextBoundary(parseDuration('2920000d'), new Date('2026-01-01T10:00:00Z'))).toThrow(
      /next reset would fall after year 9999/,
    );
  });

  it('quotes at most 60 characters of a 10 kB value in its errors and notes', () => {
    const note = parseDuration(`1${'x'.repeat(10_240)}`).note ?? '';
    expect(note).toMatch(/^LiteLLM knows no unit "x{60}…" \(10240 characters\)/);
    expect(parseDuration(`${'0'.repeat(10_240)}1d x`).note).toBe(
      `LiteLLM reads only "${'0'.repeat(60)}…" (10242 characters)`,
    );
    expect(() => parseDuration(`${'9'.repeat(10_240)}d`)).toThrow(
      /^Invalid budget_duration "9{60}…" \(10241 characters\): /,
    );
  });

  it('rejects a non-string read from the database', () => {
    expect(() => parseDuration(null as unknown as string)).toThrow(InvalidDurationError);
    expect(() => parseDuration(7 as unknown as string)).toThrow(/"7": not text/);
  });

  it.each<BudgetDuration>([
    { amount: 2, unit: 'mo', text: '2mo' },
    { amount: 0, unit: 'd', text: '0d' },
    { amount: 1.5, unit: 'h', text: '1.5h' },
    { amount: 1, unit: 'y' as never, text: '1y' },
    { amount: 1e12, unit: 'd', text: 'huge' },
  ])('nextBoundary, catchUp and addPeriod reject the hand-built duration $text', (duration) => {
    const at = new Date('2024-01-01T00:00:00Z');
    expect(() => nextBoundary(duration, at)).toThrow(InvalidDurationError);
    expect(() => catchUp(duration, at, at)).toThrow(InvalidDurationError);
    expect(() => addPeriod(duration, at)).toThrow(InvalidDurationError);
  });
});

describe('validateScheduleOptions', () => {
  it.each([
    ['UTC', '00:00', '00:00'],
    ['Europe/London', '09:30', '09:30'],
    ['America/New_York', '23:59', '23:59'],
    ['Asia/Kolkata', '12:00', '12:00'],
    ['Australia/Sydney', '00:01', '00:01'],
    // LiteLLM's budget_reset_time forms.
    ['UTC', '7:5', '07:05'],
    ['UTC', '9:30', '09:30'],
    ['UTC', '09:05:30', '09:05:30'],
    ['UTC', '00:00:00', '00:00'],
    ['UTC', '23:59:59', '23:59:59'],
    ['UTC', '9:5:7', '09:05:07'],
  ])('accepts %s at %s, written %s', (timeZone, resetTime, written) => {
    expect(validateScheduleOptions({ timeZone, resetTime })).toEqual({ timeZone, resetTime: written });
  });

  it('resets at the reset time to the second', () => {
    const opts = { timeZone: 'UTC', resetTime: '09:05:30' };
    expect(iso(nextBoundary(parseDuration('1d'), new Date('2023-06-15T09:05:29.999Z'), opts))).toBe(
      '2023-06-15T09:05:30.000Z',
    );
    expect(iso(nextBoundary(parseDuration('1d'), new Date('2023-06-15T09:05:30Z'), opts))).toBe(
      '2023-06-16T09:05:30.000Z',
    );
  });

  it('has midnight UTC as the default', () => {
    expect(DEFAULT_SCHEDULE).toEqual({ timeZone: 'UTC', resetTime: '00:00' });
    expect(validateScheduleOptions(DEFAULT_SCHEDULE)).toEqual(DEFAULT_SCHEDULE);
  });

  it.each(['Mars/Base', 'Europe/Londn', '', 'GMT+25'])('rejects the time zone %j', (timeZone) => {
    const attempt = (): unknown => validateScheduleOptions({ timeZone, resetTime: '00:00' });
    expect(attempt).toThrow(InvalidScheduleOptionsError);
    expect(attempt).toThrow(`Unknown time zone "${timeZone}": use an IANA name such as Europe/London`);
  });

  it.each(['24:00', '09:60', '09:05:60', '0930', '09:30:', '007:05', '', 'noon', ' 09:30', '-1:00'])(
    'rejects the reset time %j',
    (resetTime) => {
      const attempt = (): unknown => validateScheduleOptions({ timeZone: 'UTC', resetTime });
      expect(attempt).toThrow(InvalidScheduleOptionsError);
      expect(attempt).toThrow(`"${resetTime}"`);
      expect(attempt).toThrow('expected HH:MM');
    },
  );

  it('names the error class', () => {
    expect(() => validateScheduleOptions({ timeZone: 'UTC', resetTime: 'x' })).toThrow(
      expect.objectContaining({ name: 'InvalidScheduleOptionsError' }),
    );
  });

  it('is enforced by nextBoundary, catchUp and addPeriod too', () => {
    const d = parseDuration('1d');
    const at = new Date('2024-01-01T00:00:00Z');
    expect(() => nextBoundary(d, at, { timeZone: 'Nowhere/City', resetTime: '00:00' })).toThrow(
      InvalidScheduleOptionsError,
    );
    expect(() => catchUp(d, at, at, { timeZone: 'UTC', resetTime: '25:00' })).toThrow(
      InvalidScheduleOptionsError,
    );
    expect(() => addPeriod(parseDuration('1h'), at, { timeZone: 'UTC', resetTime: '9:60' })).toThrow(
      InvalidScheduleOptionsError,
    );
  });

  it('rejects an invalid Date', () => {
    expect(() => nextBoundary(parseDuration('1d'), new Date(Number.NaN))).toThrow(RangeError);
  });
});

describe('nextBoundary: LiteLLM worked examples (UTC)', () => {
  it.each(
    rows([
      { duration: '30d', from: '2023-06-15T10:30:00Z', expected: '2023-07-01T00:00:00Z' },
      { duration: '1mo', from: '2023-06-15T10:30:00Z', expected: '2023-07-01T00:00:00Z' },
      { duration: 'monthly', from: '2023-06-15T10:30:00Z', expected: '2023-07-01T00:00:00Z' },
      { duration: '1d', from: '2023-06-15T10:30:00Z', expected: '2023-06-16T00:00:00Z' },
      { duration: '7d', from: '2023-06-14T10:30:00Z', expected: '2023-06-19T00:00:00Z' },
      { duration: '1w', from: '2023-06-14T10:30:00Z', expected: '2023-06-19T00:00:00Z' },
      { duration: 'weekly', from: '2023-06-14T10:30:00Z', expected: '2023-06-19T00:00:00Z' },
      { duration: '1d', from: '2023-06-15T10:30:00Z', reset: '12:00', expected: '2023-06-15T12:00:00Z' },
      { duration: '24h', from: '2023-06-15T10:30:00Z', expected: '2023-06-16T00:00:00Z' },
      { duration: '5h', from: '2023-06-15T23:10:00Z', expected: '2023-06-16T01:00:00Z' },
      { duration: '30m', from: '2023-06-15T10:20:00Z', expected: '2023-06-15T10:30:00Z' },
      { duration: '90m', from: '2023-06-15T10:20:00Z', expected: '2023-06-15T11:30:00Z' },
      // 36h: the next multiple of 36 hours from midnight of `from`'s day, whatever the time today.
      { duration: '36h', from: '2023-06-15T00:00:00Z', expected: '2023-06-16T12:00:00Z' },
      { duration: '36h', from: '2023-06-15T10:30:00Z', expected: '2023-06-16T12:00:00Z' },
      { duration: '36h', from: '2023-06-15T23:59:59.999Z', expected: '2023-06-16T12:00:00Z' },
      // Any other Nd / Nw: midnight of `from`'s day + N days (7N) at the time of day.
      { duration: '3d', from: '2023-06-15T10:30:00Z', expected: '2023-06-18T00:00:00Z' },
      { duration: '2w', from: '2023-06-15T10:30:00Z', expected: '2023-06-29T00:00:00Z' },
      { duration: '3d', from: '2023-06-15T10:30:00Z', reset: '12:00', expected: '2023-06-18T12:00:00Z' },
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: days', () => {
  it.each(
    rows([
      // Strictly after: at the boundary itself, the next one.
      { duration: '1d', from: '2023-06-16T00:00:00Z', expected: '2023-06-17T00:00:00Z' },
      { duration: '1d', from: '2023-06-15T23:59:59.999Z', expected: '2023-06-16T00:00:00Z' },
      { duration: '1d', from: '2023-06-15T12:00:00Z', reset: '12:00', expected: '2023-06-16T12:00:00Z' },
      { duration: '1d', from: '2023-06-15T12:30:00Z', reset: '12:00', expected: '2023-06-16T12:00:00Z' },
      {
        duration: '1d',
        from: '2023-06-15T10:30:00Z',
        zone: 'Asia/Kolkata',
        expected: '2023-06-15T18:30:00Z',
      },
      // Hour units ignore the reset time, so the `daily` alias (= 24h) resets at midnight.
      { duration: 'daily', from: '2023-06-15T10:30:00Z', reset: '09:30', expected: '2023-06-16T00:00:00Z' },
      { duration: '24h', from: '2023-06-16T00:00:00Z', expected: '2023-06-17T00:00:00Z' },
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: weeks land on Mondays', () => {
  it.each(
    rows([
      { duration: '7d', from: '2023-06-18T23:59:00Z', expected: '2023-06-19T00:00:00Z' }, // Sunday
      { duration: '7d', from: '2023-06-19T00:00:00Z', expected: '2023-06-26T00:00:00Z' }, // Monday, at it
      { duration: '7d', from: '2023-06-19T08:00:00Z', expected: '2023-06-26T00:00:00Z' },
      { duration: '7d', from: '2023-06-19T08:00:00Z', reset: '09:30', expected: '2023-06-19T09:30:00Z' },
      { duration: '1w', from: '2023-06-19T09:30:00Z', reset: '09:30', expected: '2023-06-26T09:30:00Z' },
      { duration: 'weekly', from: '2023-06-20T00:00:00Z', expected: '2023-06-26T00:00:00Z' }, // Tuesday
      { duration: '7d', from: '2023-12-28T12:00:00Z', expected: '2024-01-01T00:00:00Z' }, // across a year
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: month ends and leap years', () => {
  it.each(
    rows([
      { duration: '1mo', from: '2023-01-31T10:00:00Z', expected: '2023-02-01T00:00:00Z' },
      { duration: '1mo', from: '2023-02-01T00:00:00Z', expected: '2023-03-01T00:00:00Z' },
      { duration: '30d', from: '2023-02-15T00:00:00Z', expected: '2023-03-01T00:00:00Z' }, // the 1st, not +30 days
      { duration: '1mo', from: '2024-02-29T12:00:00Z', expected: '2024-03-01T00:00:00Z' },
      { duration: '1mo', from: '2023-12-15T00:00:00Z', expected: '2024-01-01T00:00:00Z' },
      { duration: '1mo', from: '2023-06-30T23:59:59.999Z', expected: '2023-07-01T00:00:00Z' },
      { duration: '1d', from: '2024-02-28T12:00:00Z', expected: '2024-02-29T00:00:00Z' },
      { duration: '1d', from: '2024-02-29T12:00:00Z', expected: '2024-03-01T00:00:00Z' },
      { duration: '1d', from: '2023-02-28T12:00:00Z', expected: '2023-03-01T00:00:00Z' },
      { duration: '1mo', from: '2023-06-01T08:00:00Z', reset: '09:30', expected: '2023-06-01T09:30:00Z' },
      { duration: '1mo', from: '2023-06-01T09:30:00Z', reset: '09:30', expected: '2023-07-01T09:30:00Z' },
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: hours, minutes, seconds', () => {
  it.each(
    rows([
      { duration: '1h', from: '2023-06-15T10:30:00Z', expected: '2023-06-15T11:00:00Z' },
      { duration: 'hourly', from: '2023-06-15T10:00:00Z', expected: '2023-06-15T11:00:00Z' },
      { duration: '6h', from: '2023-06-15T10:30:00Z', expected: '2023-06-15T12:00:00Z' },
      { duration: '6h', from: '2023-06-15T18:00:00Z', expected: '2023-06-16T00:00:00Z' },
      { duration: '5h', from: '2023-06-15T20:00:00Z', expected: '2023-06-16T01:00:00Z' },
      { duration: '5h', from: '2023-06-16T01:00:00Z', expected: '2023-06-16T05:00:00Z' },
      // Counted from midnight of `from`'s day: after midnight that is 05:00, though 20:00 leads to 01:00.
      { duration: '5h', from: '2023-06-16T00:30:00Z', expected: '2023-06-16T05:00:00Z' },
      {
        duration: '5h',
        from: '2023-06-15T10:30:00Z',
        zone: 'Asia/Kolkata',
        expected: '2023-06-15T14:30:00Z',
      }, // 20:00 IST
      { duration: '30m', from: '2023-06-15T10:30:00Z', expected: '2023-06-15T11:00:00Z' },
      { duration: '45m', from: '2023-06-15T10:50:00Z', expected: '2023-06-15T11:30:00Z' }, // carry
      { duration: '45m', from: '2023-06-15T11:30:00Z', expected: '2023-06-15T11:45:00Z' },
      { duration: '7m', from: '2023-06-15T10:58:00Z', expected: '2023-06-15T11:03:00Z' },
      { duration: '1m', from: '2023-06-15T23:59:30Z', expected: '2023-06-16T00:00:00Z' },
      { duration: '1s', from: '2023-06-15T10:30:00.500Z', expected: '2023-06-15T10:30:01Z' },
      { duration: '15s', from: '2023-06-15T10:30:50Z', expected: '2023-06-15T10:31:00Z' },
      { duration: '45s', from: '2023-06-15T10:00:50Z', expected: '2023-06-15T10:01:30Z' },
      { duration: '45s', from: '2023-06-15T23:59:50Z', expected: '2023-06-16T00:00:30Z' }, // carry into the day
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: steps longer than their unit (LiteLLM: each step counts from its own start)', () => {
  it.each(
    rows([
      // 90m counts from the start of `from`'s hour, so after the first step it resets hourly at :30.
      { duration: '90m', from: '2023-06-15T10:00:00Z', expected: '2023-06-15T11:30:00Z' },
      { duration: '90m', from: '2023-06-15T11:30:00Z', expected: '2023-06-15T12:30:00Z' },
      { duration: '90m', from: '2023-06-15T12:30:00Z', expected: '2023-06-15T13:30:00Z' },
      { duration: '90m', from: '2023-06-15T23:30:00Z', expected: '2023-06-16T00:30:00Z' }, // into the next day
      { duration: '100m', from: '2023-06-15T23:20:00Z', expected: '2023-06-16T00:40:00Z' },
      { duration: '120m', from: '2023-06-15T10:20:00Z', expected: '2023-06-15T12:00:00Z' },
      { duration: '120m', from: '2023-06-15T11:00:00Z', expected: '2023-06-15T13:00:00Z' },
      { duration: '1440m', from: '2023-06-15T10:30:00Z', expected: '2023-06-16T10:00:00Z' },
      { duration: '90s', from: '2023-06-15T10:00:50Z', expected: '2023-06-15T10:01:30Z' },
      { duration: '90s', from: '2023-06-15T10:01:30Z', expected: '2023-06-15T10:02:30Z' },
      { duration: '86400s', from: '2023-06-15T10:30:20Z', expected: '2023-06-16T10:30:00Z' },
      // 36h: tomorrow 12:00, and from there daily at 12:00.
      { duration: '36h', from: '2023-06-16T12:00:00Z', expected: '2023-06-17T12:00:00Z' },
      { duration: '48h', from: '2023-06-15T10:30:00Z', expected: '2023-06-17T00:00:00Z' },
      { duration: '100h', from: '2023-06-15T10:30:00Z', expected: '2023-06-19T04:00:00Z' },
      { duration: '168h', from: '2023-06-15T10:30:00Z', expected: '2023-06-22T00:00:00Z' }, // not a Monday
      // Days and weeks other than 1d and 7d: N days from midnight, then every N days from there.
      { duration: '2d', from: '2023-06-15T00:00:00Z', expected: '2023-06-17T00:00:00Z' },
      { duration: '2d', from: '2023-06-15T10:30:00Z', expected: '2023-06-17T00:00:00Z' },
      { duration: '2d', from: '2023-06-17T00:00:00Z', expected: '2023-06-19T00:00:00Z' },
      { duration: '2d', from: '2023-06-15T08:00:00Z', reset: '09:30', expected: '2023-06-17T09:30:00Z' },
      { duration: '2d', from: '2023-06-17T09:30:00Z', reset: '09:30', expected: '2023-06-19T09:30:00Z' },
      { duration: '3d', from: '2023-06-18T00:00:00Z', expected: '2023-06-21T00:00:00Z' },
      { duration: '2w', from: '2023-06-29T00:00:00Z', expected: '2023-07-13T00:00:00Z' },
      { duration: '14d', from: '2023-06-15T10:30:00Z', expected: '2023-06-29T00:00:00Z' },
      { duration: '31d', from: '2023-06-15T10:30:00Z', expected: '2023-07-16T00:00:00Z' },
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: daylight saving', () => {
  const NY = 'America/New_York';
  const LONDON = 'Europe/London';
  const SYDNEY = 'Australia/Sydney';
  it.each(
    rows([
      // New York springs forward 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z).
      { duration: '1d', zone: NY, from: '2024-03-09T12:00:00Z', expected: '2024-03-10T05:00:00Z' },
      { duration: '1d', zone: NY, from: '2024-03-10T05:00:00Z', expected: '2024-03-11T04:00:00Z' },
      { duration: '24h', zone: NY, from: '2024-03-10T05:00:00Z', expected: '2024-03-11T04:00:00Z' },
      { duration: '1h', zone: NY, from: '2024-03-10T06:30:00Z', expected: '2024-03-10T07:00:00Z' }, // 03:00 EDT
      { duration: '1h', zone: NY, from: '2024-03-10T07:00:00Z', expected: '2024-03-10T08:00:00Z' },
      { duration: '30m', zone: NY, from: '2024-03-10T06:30:00Z', expected: '2024-03-10T07:00:00Z' }, // 02:00-03:00: one
      { duration: '30m', zone: NY, from: '2024-03-10T07:00:00Z', expected: '2024-03-10T07:30:00Z' },
      { duration: '6h', zone: NY, from: '2024-03-10T05:00:00Z', expected: '2024-03-10T10:00:00Z' }, // 06:00 EDT
      // 02:30 is skipped: the boundary is the jump, and the next step counts from the 03:00 the clock reads.
      { duration: '90m', zone: NY, from: '2024-03-10T05:30:00Z', expected: '2024-03-10T06:30:00Z' },
      { duration: '90m', zone: NY, from: '2024-03-10T06:30:00Z', expected: '2024-03-10T07:00:00Z' },
      { duration: '90m', zone: NY, from: '2024-03-10T07:00:00Z', expected: '2024-03-10T08:30:00Z' }, // 04:30 EDT
      { duration: '36h', zone: NY, from: '2024-03-09T12:00:00Z', expected: '2024-03-10T16:00:00Z' }, // 12:00 EDT
      {
        duration: '3d',
        zone: NY,
        reset: '02:30',
        from: '2024-03-07T12:00:00Z',
        expected: '2024-03-10T07:00:00Z',
      },
      {
        duration: '3d',
        zone: NY,
        reset: '02:30',
        from: '2024-03-10T07:00:00Z',
        expected: '2024-03-13T06:30:00Z',
      },
      // A reset time the clock skips fires when the clock jumps, then at 02:30 again.
      {
        duration: '1d',
        zone: NY,
        reset: '02:30',
        from: '2024-03-09T12:00:00Z',
        expected: '2024-03-10T07:00:00Z',
      },
      {
        duration: '1d',
        zone: NY,
        reset: '02:30',
        from: '2024-03-10T07:00:00Z',
        expected: '2024-03-11T06:30:00Z',
      },
      { duration: '7d', zone: NY, from: '2024-03-10T12:00:00Z', expected: '2024-03-11T04:00:00Z' },
      { duration: '1mo', zone: NY, from: '2024-03-10T12:00:00Z', expected: '2024-04-01T04:00:00Z' },
      // New York falls back 2024-11-03 02:00 EDT -> 01:00 EST (06:00Z).
      { duration: '1d', zone: NY, from: '2024-11-02T12:00:00Z', expected: '2024-11-03T04:00:00Z' },
      { duration: '1d', zone: NY, from: '2024-11-03T04:00:00Z', expected: '2024-11-04T05:00:00Z' },
      { duration: '1h', zone: NY, from: '2024-11-03T05:00:00Z', expected: '2024-11-03T07:00:00Z' }, // 01:00 once
      { duration: '1h', zone: NY, from: '2024-11-03T06:30:00Z', expected: '2024-11-03T07:00:00Z' }, // second pass
      { duration: '6h', zone: NY, from: '2024-11-03T04:00:00Z', expected: '2024-11-03T11:00:00Z' }, // 06:00 EST
      { duration: '90m', zone: NY, from: '2024-11-03T05:00:00Z', expected: '2024-11-03T07:30:00Z' }, // 02:30 EST
      { duration: '45m', zone: NY, from: '2024-11-03T05:30:00Z', expected: '2024-11-03T05:45:00Z' }, // 01:45 EDT
      // 01:10 EST, the second pass: 01:45 has had its turn, so counting goes on from the clock's highest reading.
      { duration: '45m', zone: NY, from: '2024-11-03T06:10:00Z', expected: '2024-11-03T07:30:00Z' },
      // A repeated reset time fires on its first pass only.
      {
        duration: '1d',
        zone: NY,
        reset: '01:30',
        from: '2024-11-02T12:00:00Z',
        expected: '2024-11-03T05:30:00Z',
      },
      {
        duration: '1d',
        zone: NY,
        reset: '01:30',
        from: '2024-11-03T05:30:00Z',
        expected: '2024-11-04T06:30:00Z',
      },
      {
        duration: '1d',
        zone: NY,
        reset: '01:30',
        from: '2024-11-03T06:40:00Z',
        expected: '2024-11-04T06:30:00Z',
      },
      // London springs forward 2024-03-31 01:00 GMT -> 02:00 BST (01:00Z).
      { duration: '1d', zone: LONDON, from: '2024-03-30T12:00:00Z', expected: '2024-03-31T00:00:00Z' },
      { duration: '1d', zone: LONDON, from: '2024-03-31T00:00:00Z', expected: '2024-03-31T23:00:00Z' },
      { duration: '1h', zone: LONDON, from: '2024-03-31T00:30:00Z', expected: '2024-03-31T01:00:00Z' },
      { duration: '1h', zone: LONDON, from: '2024-03-31T01:00:00Z', expected: '2024-03-31T02:00:00Z' },
      // London falls back 2024-10-27 02:00 BST -> 01:00 GMT (01:00Z).
      { duration: '1d', zone: LONDON, from: '2024-10-26T12:00:00Z', expected: '2024-10-26T23:00:00Z' },
      { duration: '1d', zone: LONDON, from: '2024-10-26T23:00:00Z', expected: '2024-10-28T00:00:00Z' },
      { duration: '1h', zone: LONDON, from: '2024-10-27T00:30:00Z', expected: '2024-10-27T02:00:00Z' },
      // Sydney falls back 2024-04-07 and springs forward 2024-10-06.
      { duration: '1d', zone: SYDNEY, from: '2024-04-06T12:00:00Z', expected: '2024-04-06T13:00:00Z' },
      { duration: '1d', zone: SYDNEY, from: '2024-04-06T13:00:00Z', expected: '2024-04-07T14:00:00Z' },
      { duration: '1d', zone: SYDNEY, from: '2024-10-05T12:00:00Z', expected: '2024-10-05T14:00:00Z' },
      { duration: '1d', zone: SYDNEY, from: '2024-10-05T14:00:00Z', expected: '2024-10-06T13:00:00Z' },
    ]),
  )(caseName, checkCase);
});

describe('nextBoundary: reset time 09:30 in Europe/London', () => {
  const zone = 'Europe/London';
  const reset = '09:30';
  it.each(
    rows([
      { duration: '1d', zone, reset, from: '2024-01-15T09:00:00Z', expected: '2024-01-15T09:30:00Z' },
      { duration: '1d', zone, reset, from: '2024-01-15T09:30:00Z', expected: '2024-01-16T09:30:00Z' },
      { duration: '1d', zone, reset, from: '2024-07-15T08:00:00Z', expected: '2024-07-15T08:30:00Z' }, // BST
      { duration: '1d', zone, reset, from: '2024-07-15T08:30:00Z', expected: '2024-07-16T08:30:00Z' },
      { duration: '1d', zone, reset, from: '2024-03-30T12:00:00Z', expected: '2024-03-31T08:30:00Z' },
      { duration: '1d', zone, reset, from: '2024-10-26T12:00:00Z', expected: '2024-10-27T09:30:00Z' },
      { duration: 'weekly', zone, reset, from: '2024-10-27T12:00:00Z', expected: '2024-10-28T09:30:00Z' },
      { duration: 'weekly', zone, reset, from: '2024-03-31T12:00:00Z', expected: '2024-04-01T08:30:00Z' },
      { duration: '1mo', zone, reset, from: '2024-03-01T09:00:00Z', expected: '2024-03-01T09:30:00Z' },
      { duration: '1mo', zone, reset, from: '2024-03-01T09:30:00Z', expected: '2024-04-01T08:30:00Z' },
      { duration: '1h', zone, reset, from: '2024-01-15T09:00:00Z', expected: '2024-01-15T10:00:00Z' }, // ignored
    ]),
  )(caseName, checkCase);
});

describe('catchUp', () => {
  const d1 = parseDuration('1d');
  const at = (text: string): Date => new Date(text);
  const result = (r: { latest: Date; missedPeriods: number; next: Date }) => ({
    latest: iso(r.latest),
    missedPeriods: r.missedPeriods,
    next: iso(r.next),
  });

  it.each([
    {
      name: 'on time',
      duration: '1d',
      scheduled: '2024-01-10T00:00:00Z',
      now: '2024-01-10T00:00:05Z',
      expected: { latest: '2024-01-10T00:00:00Z', missedPeriods: 0, next: '2024-01-11T00:00:00Z' },
    },
    {
      name: 'exactly at the boundary',
      duration: '1d',
      scheduled: '2024-01-10T00:00:00Z',
      now: '2024-01-10T00:00:00Z',
      expected: { latest: '2024-01-10T00:00:00Z', missedPeriods: 0, next: '2024-01-11T00:00:00Z' },
    },
    {
      name: 'one missed',
      duration: '1d',
      scheduled: '2024-01-10T00:00:00Z',
      now: '2024-01-11T03:00:00Z',
      expected: { latest: '2024-01-11T00:00:00Z', missedPeriods: 1, next: '2024-01-12T00:00:00Z' },
    },
    {
      name: 'many missed',
      duration: '1d',
      scheduled: '2024-01-10T00:00:00Z',
      now: '2024-02-09T12:00:00Z',
      expected: { latest: '2024-02-09T00:00:00Z', missedPeriods: 30, next: '2024-02-10T00:00:00Z' },
    },
    {
      name: 'months missed',
      duration: '1mo',
      scheduled: '2023-01-01T00:00:00Z',
      now: '2024-03-15T00:00:00Z',
      expected: { latest: '2024-03-01T00:00:00Z', missedPeriods: 14, next: '2024-04-01T00:00:00Z' },
    },
    {
      name: 'a scheduled time off the lattice (e.g. written by LiteLLM)',
      duration: '1d',
      scheduled: '2024-01-10T00:00:07Z',
      now: '2024-01-12T01:00:00Z',
      expected: { latest: '2024-01-12T00:00:00Z', missedPeriods: 2, next: '2024-01-13T00:00:00Z' },
    },
    {
      name: 'now before scheduled',
      duration: '1d',
      scheduled: '2024-01-10T00:00:00Z',
      now: '2024-01-09T12:00:00Z',
      expected: { latest: '2024-01-10T00:00:00Z', missedPeriods: 0, next: '2024-01-11T00:00:00Z' },
    },
    {
      name: '90m follows the chain 11:30, 12:30, 13:30',
      duration: '90m',
      scheduled: '2023-06-15T10:00:00Z',
      now: '2023-06-15T13:45:00Z',
      expected: { latest: '2023-06-15T13:30:00Z', missedPeriods: 3, next: '2023-06-15T14:30:00Z' },
    },
    {
      name: '5h from 20:00 waits for 01:00, not the 05:00 that nextBoundary(now) would give',
      duration: '5h',
      scheduled: '2023-06-15T20:00:00Z',
      now: '2023-06-16T00:30:00Z',
      expected: { latest: '2023-06-15T20:00:00Z', missedPeriods: 0, next: '2023-06-16T01:00:00Z' },
    },
    {
      name: '5h through the carried 01:00',
      duration: '5h',
      scheduled: '2023-06-15T20:00:00Z',
      now: '2023-06-16T06:00:00Z',
      expected: { latest: '2023-06-16T05:00:00Z', missedPeriods: 2, next: '2023-06-16T10:00:00Z' },
    },
    {
      name: '3d keeps its own days',
      duration: '3d',
      scheduled: '2023-06-18T00:00:00Z',
      now: '2023-06-25T12:00:00Z',
      expected: { latest: '2023-06-24T00:00:00Z', missedPeriods: 2, next: '2023-06-27T00:00:00Z' },
    },
    {
      name: '36h, daily at 12:00 once running',
      duration: '36h',
      scheduled: '2023-06-16T12:00:00Z',
      now: '2023-06-19T13:00:00Z',
      expected: { latest: '2023-06-19T12:00:00Z', missedPeriods: 3, next: '2023-06-20T12:00:00Z' },
    },
  ])('$name', ({ duration, scheduled, now, expected }) => {
    expect(result(catchUp(parseDuration(duration), at(scheduled), at(now)))).toEqual({
      latest: norm(expected.latest),
      missedPeriods: expected.missedPeriods,
      next: norm(expected.next),
    });
  });

  it('counts the hours of a spring-forward night as the boundaries that happened', () => {
    // 01:00 EST, then 02:00/03:00 (one instant), 04:00 and 05:00 EDT.
    const r = catchUp(parseDuration('1h'), at('2024-03-10T05:00:00Z'), at('2024-03-10T09:30:00Z'), {
      timeZone: 'America/New_York',
      resetTime: '00:00',
    });
    expect(result(r)).toEqual({
      latest: norm('2024-03-10T09:00:00Z'),
      missedPeriods: 4,
      next: norm('2024-03-10T10:00:00Z'),
    });
  });

  it('is the default-options day schedule', () => {
    const r = catchUp(d1, at('2024-01-10T00:00:00Z'), at('2024-01-11T03:00:00Z'), DEFAULT_SCHEDULE);
    expect(iso(r.latest)).toBe(norm('2024-01-11T00:00:00Z'));
  });

  it('jumps instead of looping: 1s over a week', () => {
    const started = performance.now();
    const r = catchUp(parseDuration('1s'), at('2024-01-01T00:00:00Z'), at('2024-01-08T00:00:00.500Z'));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(result(r)).toEqual({
      latest: norm('2024-01-08T00:00:00Z'),
      missedPeriods: 7 * 86400,
      next: norm('2024-01-08T00:00:01Z'),
    });
  });

  it('jumps instead of looping: steps longer than their unit, and steps that do not divide it', () => {
    const started = performance.now();
    // 11:30, then hourly at :30: 1 + 365 * 24 + 12 boundaries in leap year 2024.
    const hourly = catchUp(parseDuration('90m'), at('2024-01-01T10:00:00Z'), at('2025-01-01T00:10:00Z'));
    // :07, :14, ... :56 and the carried :03 of the next minute: nine a minute, less the one not yet reached.
    const sevens = catchUp(parseDuration('7s'), at('2024-01-01T00:00:00Z'), at('2024-01-02T00:00:00Z'));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(result(hourly)).toEqual({
      latest: norm('2024-12-31T23:30:00Z'),
      missedPeriods: 8773,
      next: norm('2025-01-01T00:30:00Z'),
    });
    expect(result(sevens)).toEqual({
      latest: norm('2024-01-01T23:59:56Z'),
      missedPeriods: 1440 * 9 - 1,
      next: norm('2024-01-02T00:00:03Z'),
    });
  });

  it('past the exact-count limit, counts the minutes a spring-forward skips one each', () => {
    const ny = { timeZone: 'America/New_York', resetTime: '00:00' };
    const m1 = parseDuration('1m');
    const scheduled = at('2024-03-09T12:00:00Z'); // 07:00 EST, 1140 minutes before the 02:00 jump
    const now = at('2024-03-10T08:00:30Z'); // 04:00:30 EDT
    let steps = 0;
    let b = scheduled;
    for (let next = nextBoundary(m1, b, ny); next <= now; next = nextBoundary(m1, b, ny)) {
      b = next;
      steps++;
    }
    expect(steps).toBe(1139 + 1 + 60); // 07:01 to 01:59, the jump (02:00 to 03:00 as one), 03:01 to 04:00
    // 02:00 ... 03:00 are 61 minutes of the pattern but one boundary.
    expect(result(catchUp(m1, scheduled, now, ny))).toEqual({
      latest: iso(b),
      missedPeriods: steps + 60,
      next: norm('2024-03-10T08:01:00Z'),
    });
  });

  it('jumps instead of looping: 1s over ten years across DST changes', () => {
    const started = performance.now();
    const now = at('2034-06-01T12:34:56.789Z');
    const r = catchUp(parseDuration('1s'), at('2024-06-01T00:00:00Z'), now, {
      timeZone: 'America/New_York',
      resetTime: '00:00',
    });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(iso(r.latest)).toBe(norm('2034-06-01T12:34:56Z'));
    expect(iso(r.next)).toBe(norm('2034-06-01T12:34:57Z'));
    // Counted by wall-clock seconds: within an hour per spring-forward of the real count.
    expect(
      Math.abs(r.missedPeriods - (now.getTime() - Date.parse('2024-06-01T00:00:00Z')) / 1000),
    ).toBeLessThan(11 * 3600);
  });
});

describe('addPeriod', () => {
  const add = (duration: string, from: string, timeZone = 'UTC'): string =>
    iso(addPeriod(parseDuration(duration), new Date(from), { timeZone, resetTime: '00:00' }));

  it.each([
    ['90m', '2023-06-15T10:20:00Z', 'UTC', '2023-06-15T11:50:00Z'],
    ['36h', '2023-06-15T10:20:00Z', 'UTC', '2023-06-16T22:20:00Z'],
    ['3d', '2023-06-15T10:20:00Z', 'UTC', '2023-06-18T10:20:00Z'],
    ['2w', '2023-06-15T10:20:00Z', 'UTC', '2023-06-29T10:20:00Z'],
    ['1mo', '2024-01-31T10:20:00Z', 'UTC', '2024-02-29T10:20:00Z'], // the month's last day
    ['monthly', '2024-01-31T10:20:00Z', 'UTC', '2024-03-01T10:20:00Z'], // 30 days
    // Across New York's spring-forward: a day keeps the local time, hours are elapsed time.
    ['1d', '2024-03-09T15:00:00Z', 'America/New_York', '2024-03-10T14:00:00Z'],
    ['24h', '2024-03-09T15:00:00Z', 'America/New_York', '2024-03-10T15:00:00Z'],
  ])('%s from %s in %s is %s', (duration, from, zone, expected) => {
    expect(add(duration, from, zone)).toBe(norm(expected));
  });

  it('uses the default schedule and rejects an invalid Date', () => {
    expect(iso(addPeriod(parseDuration('1d'), new Date('2024-01-01T05:00:00Z')))).toBe(
      norm('2024-01-02T05:00:00Z'),
    );
    expect(() => addPeriod(parseDuration('1d'), new Date(Number.NaN))).toThrow(RangeError);
  });
});

/** LiteLLM's rules for the zone UTC (no DST), written out naively as the first candidate after `t`. */
function literalUtc(d: BudgetDuration, t: number, resetTime: string): number {
  const [hh = 0, mm = 0] = resetTime.split(':').map(Number);
  const reset = (hh * 60 + mm) * 60_000;
  const DAY = 86_400_000;
  const floorTo = (size: number): number => Math.floor(t / size) * size;
  const firstAfter = (start: number, step: number): number => {
    let candidate = start + step;
    while (candidate <= t) candidate += step;
    return candidate;
  };
  const midnight = floorTo(DAY);
  const date = new Date(t);
  const { amount: n, unit } = d;
  if (unit === 'mo' || (unit === 'd' && n === 30)) {
    const thisMonth = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) + reset;
    return thisMonth > t ? thisMonth : Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1) + reset;
  }
  if (unit === 'd' && n === 1) return firstAfter(midnight + reset - DAY, DAY);
  if ((unit === 'd' && n === 7) || (unit === 'w' && n === 1)) {
    const monday = midnight - ((date.getUTCDay() + 6) % 7) * DAY;
    return firstAfter(monday + reset - 7 * DAY, 7 * DAY);
  }
  if (unit === 'd' || unit === 'w') return firstAfter(midnight + reset, n * (unit === 'w' ? 7 : 1) * DAY);
  if (unit === 'h') return firstAfter(midnight, n * 3_600_000);
  if (unit === 'm') return firstAfter(floorTo(3_600_000), n * 60_000);
  return firstAfter(floorTo(60_000), n * 1000);
}

/** Whether the duration's boundaries are a fixed set of local times, whatever instant one starts from. */
function isFixedSet({ amount, unit }: BudgetDuration): boolean {
  if (unit === 'mo') return true;
  if (unit === 'd') return amount === 1 || amount === 7 || amount === 30;
  if (unit === 'w') return amount === 1;
  return (unit === 'h' ? 24 : 60) % amount === 0;
}

describe('properties', () => {
  const ZONES = ['UTC', 'America/New_York', 'Europe/London', 'Asia/Kolkata', 'Australia/Sydney'];
  const RUNS = { numRuns: 300 };

  const durationText = fc.oneof(
    fc.constantFrom('hourly', 'daily', 'weekly', 'monthly', 'HOURLY', '1mo', '30d', '7d', '1w', '1d', '24h'),
    fc.integer({ min: 1, max: 120 }).map((n) => `${n}s`),
    fc.integer({ min: 1, max: 240 }).map((n) => `${n}m`),
    fc.integer({ min: 1, max: 72 }).map((n) => `${n}h`),
    fc.integer({ min: 1, max: 60 }).map((n) => `${n}d`),
    fc.integer({ min: 1, max: 10 }).map((n) => `${n}w`),
  );
  const duration = durationText.map(parseDuration);
  /** Durations whose boundaries are a fixed set: 1d, 7d, 1mo, and N dividing the minute, hour or day. */
  const fixedSet = fc.oneof(
    fc.constantFrom('hourly', 'daily', 'weekly', 'monthly', '1mo', '30d', '7d', '1w', '1d'),
    fc.constantFrom(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).map((n) => `${n}s`),
    fc.constantFrom(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).map((n) => `${n}m`),
    fc.constantFrom(1, 2, 3, 4, 6, 8, 12, 24).map((n) => `${n}h`),
  );
  const fixedDuration = fixedSet.map(parseDuration);
  const instant = fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2040, 0, 1) });
  const hhmm = fc
    .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
    .map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);
  const options = (zones: readonly string[]): fc.Arbitrary<ScheduleOptions> =>
    fc.record({ timeZone: fc.constantFrom(...zones), resetTime: fc.oneof(fc.constant('00:00'), hhmm) });

  const step = (d: BudgetDuration, t: number, opts: ScheduleOptions): number =>
    nextBoundary(d, new Date(t), opts).getTime();
  const chainFrom = (d: BudgetDuration, s: number, steps: number, opts: ScheduleOptions): number[] => {
    const chain = [s];
    for (let i = 0; i < steps; i++) chain.push(step(d, chain[i] as number, opts));
    return chain;
  };
  const times = (r: { latest: Date; missedPeriods: number; next: Date }) => ({
    latest: r.latest.getTime(),
    missedPeriods: r.missedPeriods,
    next: r.next.getTime(),
  });

  it('the isFixedSet helper agrees with the generator', () => {
    fc.assert(
      fc.property(fixedDuration, (d) => {
        expect(isFixedSet(d)).toBe(true);
      }),
    );
    for (const text of ['90m', '45m', '7s', '5h', '36h', '1440m', '2d', '14d', '2w']) {
      expect(isFixedSet(parseDuration(text))).toBe(false);
    }
  });

  it("in UTC, the result is exactly LiteLLM's rule written out naively", () => {
    fc.assert(
      fc.property(duration, instant, options(['UTC']), (d, t, opts) => {
        expect(step(d, t, opts)).toBe(literalUtc(d, t, opts.resetTime));
      }),
      { numRuns: 1000 },
    );
  });

  it('the result is strictly after from', () => {
    fc.assert(
      fc.property(duration, instant, options(ZONES), (d, t, opts) => {
        expect(step(d, t, opts)).toBeGreaterThan(t);
      }),
      RUNS,
    );
  });

  it('stepping from boundary to boundary is strictly increasing: nothing repeats', () => {
    fc.assert(
      fc.property(duration, instant, options(ZONES), (d, t, opts) => {
        const chain = chainFrom(d, t, 9, opts);
        for (let i = 1; i < chain.length; i++) {
          expect(chain[i]).toBeGreaterThan(chain[i - 1] as number);
        }
      }),
      RUNS,
    );
  });

  it('fixed sets: any instant between two boundaries leads to the second, so nothing is skipped', () => {
    fc.assert(
      fc.property(fixedDuration, instant, options(ZONES), fc.nat(), (d, t, opts, k) => {
        const b = step(d, t, opts);
        const following = step(d, b, opts);
        const gap = following - b;
        for (const between of [b + 1, b + 1 + (k % (gap - 1)), following - 1]) {
          expect(step(d, between, opts)).toBe(following);
        }
      }),
      RUNS,
    );
  });

  it('fixed sets: a boundary is the answer from one millisecond before it', () => {
    fc.assert(
      fc.property(fixedDuration, instant, options(ZONES), (d, t, opts) => {
        let b = step(d, t, opts);
        for (let i = 0; i < 4; i++) {
          expect(step(d, b - 1, opts)).toBe(b);
          b = step(d, b, opts);
        }
      }),
      RUNS,
    );
  });

  it('day, week and month boundaries fall at the local reset time, or where the clock jumps over it', () => {
    const dayish = fc.oneof(
      fc.constantFrom('1d', '7d', '1w', 'weekly', '30d', '1mo', 'monthly'),
      fc.integer({ min: 2, max: 60 }).map((n) => `${n}d`),
      fc.integer({ min: 2, max: 10 }).map((n) => `${n}w`),
    );
    fc.assert(
      fc.property(dayish.map(parseDuration), instant, options(ZONES), (d, t, opts) => {
        const b = step(d, t, opts);
        const local = DateTime.fromMillis(b, { zone: opts.timeZone });
        const zone = IANAZone.create(opts.timeZone);
        const clockJumped = zone.offset(b - 1) !== zone.offset(b);
        if (!clockJumped) expect(local.toFormat('HH:mm:ss.SSS')).toBe(`${opts.resetTime}:00.000`);
        if (d.unit === 'mo' || d.amount === 30) expect(local.day).toBe(1);
        if ((d.unit === 'd' && d.amount === 7) || (d.unit === 'w' && d.amount === 1)) {
          expect(local.weekday).toBe(1);
        }
      }),
      RUNS,
    );
  });

  it('catchUp agrees with stepping one boundary at a time', () => {
    fc.assert(
      fc.property(
        duration,
        instant,
        options(ZONES),
        fc.integer({ min: 0, max: 12 }),
        fc.nat(),
        (d, s, opts, n, k) => {
          const chain = chainFrom(d, s, n + 1, opts);
          const latest = chain[n] as number;
          const next = chain[n + 1] as number;
          const now = latest + (k % (next - latest)); // latest <= now < next
          expect(times(catchUp(d, new Date(s), new Date(now), opts))).toEqual({
            latest,
            missedPeriods: n,
            next,
          });
          const early = catchUp(d, new Date(s), new Date(s - 1 - k), opts);
          expect(times(early)).toEqual({ latest: s, missedPeriods: 0, next: chain[1] });
        },
      ),
      RUNS,
    );
  });

  it('catchUp past its exact-count limit still agrees with stepping (UTC)', () => {
    const short = fc.oneof(
      fc.integer({ min: 1, max: 120 }).map((n) => `${n}s`),
      fc.integer({ min: 1, max: 240 }).map((n) => `${n}m`),
      fc.integer({ min: 1, max: 72 }).map((n) => `${n}h`),
      fc.integer({ min: 1, max: 5 }).map((n) => `${n}d`),
      fc.constantFrom('1w', '7d', '1mo'),
    );
    fc.assert(
      fc.property(
        short.map(parseDuration),
        instant,
        options(['UTC']),
        fc.integer({ min: 1000, max: 1300 }),
        fc.nat(),
        (d, s, opts, n, k) => {
          const chain = chainFrom(d, s, n + 1, opts);
          const latest = chain[n] as number;
          const next = chain[n + 1] as number;
          const now = latest + (k % (next - latest));
          expect(times(catchUp(d, new Date(s), new Date(now), opts))).toEqual({
            latest,
            missedPeriods: n,
            next,
          });
        },
      ),
      { numRuns: 25 },
    );
  });

  it('catchUp past its exact-count limit across DST: the same boundaries; merged skipped times count each', () => {
    const zoned = fc.oneof(
      fixedSet,
      fc.integer({ min: 2, max: 5 }).map((n) => `${n}d`),
      fc.constant('36h'),
    );
    fc.assert(
      fc.property(
        zoned.map(parseDuration),
        instant,
        options(ZONES.slice(1)),
        fc.integer({ min: 1000, max: 1300 }),
        fc.nat(),
        (d, s, opts, n, k) => {
          const chain = chainFrom(d, s, n + 1, opts);
          const latest = chain[n] as number;
          const next = chain[n + 1] as number;
          const now = latest + (k % (next - latest));
          const r = times(catchUp(d, new Date(s), new Date(now), opts));
          expect({ latest: r.latest, next: r.next }).toEqual({ latest, next });
          if (isFixedSet(d)) expect(r.missedPeriods).toBeGreaterThanOrEqual(n);
          else expect(r.missedPeriods).toBe(n);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('catchUp over long outages returns a boundary at or before now, and the next one after it', () => {
    fc.assert(
      fc.property(
        duration,
        instant,
        fc.integer({ min: 0, max: 5 * 365 * 86_400_000 }),
        options(ZONES),
        (d, s, gap, opts) => {
          const now = s + gap;
          const r = catchUp(d, new Date(s), new Date(now), opts);
          expect(r.latest.getTime()).toBeLessThanOrEqual(now);
          expect(r.latest.getTime()).toBeGreaterThanOrEqual(s);
          expect(r.next.getTime()).toBeGreaterThan(now);
          expect(r.next.getTime()).toBe(step(d, r.latest.getTime(), opts));
          expect(r.missedPeriods === 0).toBe(r.latest.getTime() === s);
          if (r.missedPeriods > 0 && isFixedSet(d)) {
            expect(step(d, r.latest.getTime() - 1, opts)).toBe(r.latest.getTime());
          }
        },
      ),
      RUNS,
    );
  });

  it('holds in zones with unusual transitions too (midnight, half-hour, two-hour, skipped day)', () => {
    const odd = [
      'America/Santiago', // DST changes at midnight
      'America/Havana', // falls back from 01:00 to 00:00: midnight happens twice
      'Australia/Lord_Howe', // 30-minute DST
      'Antarctica/Troll', // 2-hour DST
      'Europe/Dublin', // "negative" DST in tzdata
      'Pacific/Apia', // skipped 2011-12-30 entirely
      'Asia/Tehran', // DST at midnight until 2022
    ];
    fc.assert(
      fc.property(duration, instant, options(odd), fc.nat(), (d, t, opts, k) => {
        const b = step(d, t, opts);
        expect(b).toBeGreaterThan(t);
        const following = step(d, b, opts);
        expect(following).toBeGreaterThan(b);
        if (isFixedSet(d)) {
          expect(step(d, b - 1, opts)).toBe(b);
          expect(step(d, b + 1 + (k % (following - b - 1)), opts)).toBe(following);
        }
      }),
      { numRuns: 500 },
    );
  });
});
