import { defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import {
  MAX_REASON_CHARS,
  validateBudgetWorkflowInput,
  validateForceResetArgs,
  validatePauseArgs,
} from '../../src/temporal/message-validation.js';
import { isUndecodable, payloadConverter } from '../../src/temporal/payload-converter.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('the payload converter bundled with the workflows', () => {
  it('encodes and decodes exactly like the SDK default', () => {
    const value = { reason: 'quota ✓', reanchor: true, n: [1, null, 'x'] };
    const payload = payloadConverter.toPayload(value);
    expect(payload).toEqual(defaultPayloadConverter.toPayload(value));
    expect(payloadConverter.fromPayload(payload)).toEqual(value);
    expect(payloadConverter.fromPayload(payloadConverter.toPayload(undefined))).toBeUndefined();
  });

  it.each([
    ['an unknown encoding', { encoding: bytes('binary/garbage') }, '{"reason":"x"}', 'unknown encoding'],
    [
      'JSON that does not parse',
      { encoding: bytes('json/plain') },
      '{"reason":',
      'invalid data for its encoding',
    ],
    ['no encoding at all', {}, '{}', 'unknown encoding'],
  ])('turns %s into a value handlers reject instead of throwing', (_, metadata, data, problem) => {
    const value = payloadConverter.fromPayload({ metadata, data: bytes(data) });
    expect(isUndecodable(value)).toBe(true);
    expect(value).toMatchObject({ undecodablePayload: { problem } });
    expect(validateForceResetArgs(value)).toMatch(/payload cannot be decoded.*send JSON/);
    expect(validatePauseArgs(value)).toMatch(/payload cannot be decoded/);
    expect(validateBudgetWorkflowInput(value)).toMatch(/payload cannot be decoded/);
  });

  it('keeps a hostile encoding name short and printable in the rejection', () => {
    const value = payloadConverter.fromPayload({
      metadata: { encoding: bytes(`evil\n\u0000${'x'.repeat(500)}`) },
      data: bytes('{}'),
    });
    const problem = validateForceResetArgs(value) ?? '';
    expect(problem).not.toContain('\n');
    expect(problem).not.toContain('\u0000');
    expect(problem.length).toBeLessThan(200);
  });
});

describe('forced reset arguments', () => {
  it('accepts what budgetctl and the UI send', () => {
    expect(validateForceResetArgs({ reason: 'audit' })).toBeNull();
    expect(
      validateForceResetArgs({ reason: 'audit', requestedBy: 'ops', requestId: 'r-1', reanchor: false }),
    ).toBeNull();
  });

  it.each([
    [null, /object/],
    ['just text', /object/],
    [{}, /needs a reason/],
    [{ reason: '   ' }, /reason must not be empty/],
    [{ reason: 42 }, /reason must be text/],
    [{ reason: 'a\u0000b' }, /reason contains a NUL character/],
    [{ reason: 'x'.repeat(MAX_REASON_CHARS + 1) }, /reason is 1001 characters long; the limit is 1000/],
    [{ reason: 'ok', requestedBy: 'a\u0000' }, /requestedBy contains a NUL/],
    [{ reason: 'ok', requestId: 'r'.repeat(201) }, /requestId is 201 characters long/],
    [{ reason: 'ok', reanchor: 'yes' }, /reanchor must be true or false/],
  ])('rejects %j', (args, problem) => {
    expect(validateForceResetArgs(args)).toMatch(problem);
  });
});

describe('pause arguments and workflow input', () => {
  it('pause takes an optional, bounded reason', () => {
    expect(validatePauseArgs(undefined)).toBeNull();
    expect(validatePauseArgs({})).toBeNull();
    expect(validatePauseArgs({ reason: 'maintenance' })).toBeNull();
    expect(validatePauseArgs({ reason: 'a\u0000b' })).toMatch(/NUL/);
    expect(validatePauseArgs({ reason: 'x'.repeat(MAX_REASON_CHARS + 1) })).toMatch(/limit is 1000/);
  });

  it('a budget workflow needs a known kind and a storable id', () => {
    expect(validateBudgetWorkflowInput({ kind: 'team', id: 'eng' })).toBeNull();
    expect(validateBudgetWorkflowInput({ kind: 'org', id: 'eng' })).toMatch(/kind must be one of/);
    expect(validateBudgetWorkflowInput({ kind: 'team', id: '' })).toMatch(/id must be non-empty/);
    expect(validateBudgetWorkflowInput({ kind: 'team', id: 'a\u0000' })).toMatch(/NUL/);
  });

  it('accepts a history bound a run can live with, and says which ones it takes', () => {
    expect(validateBudgetWorkflowInput({ kind: 'team', id: 'eng', maxHistoryEvents: 10 })).toBeNull();
    expect(validateBudgetWorkflowInput({ kind: 'team', id: 'eng', maxHistoryEvents: 50_000 })).toBeNull();
    for (const bad of [9, 0, -1, 1.5, 60_000, '100', null])
      expect(validateBudgetWorkflowInput({ kind: 'team', id: 'eng', maxHistoryEvents: bad })).toBe(
        'maxHistoryEvents must be a whole number from 10 to 50000',
      );
  });
});
