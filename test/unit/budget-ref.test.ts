import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  BUDGET_KINDS,
  budgetIdSearchValue,
  budgetWorkflowId,
  displayBudgetRef,
  displayText,
  MAX_SEARCH_ID_CHARS,
  MAX_WORKFLOW_ID_LENGTH,
  InvalidBudgetRefError,
  parseBudgetRef,
  parseBudgetWorkflowId,
} from '../../src/budget-ref.js';
import { sha256Hex } from '../../src/sha256.js';
import { decodeEntityId, encodeEntityId, ENTITY_TYPES, entityType } from '../../src/entities.js';

describe('budget references', () => {
  it.each([
    ['budget:b-42', { kind: 'budget', id: 'b-42' }],
    ['team:eng', { kind: 'team', id: 'eng' }],
    ['user:a:b:c', { kind: 'user', id: 'a:b:c' }],
    [
      'key:88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589',
      {
        kind: 'key',
        id: '88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589',
      },
    ],
  ])('parses %s', (text, ref) => {
    expect(parseBudgetRef(text)).toEqual(ref);
  });

  it.each(['', 'team', 'team:', 'org:acme', 'Team:eng', ':x'])(
    'rejects %j, naming the accepted kinds',
    (text) => {
      expect(() => parseBudgetRef(text)).toThrow(InvalidBudgetRefError);
      expect(() => parseBudgetRef(text)).toThrow(/budget, key, user, team/);
    },
  );

  it('maps every id to a workflow id and back, whatever characters it holds', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...BUDGET_KINDS),
        fc.string({ minLength: 1, unit: 'grapheme' }),
        (kind, id) => {
          const workflowId = budgetWorkflowId({ kind, id });
          expect(workflowId.startsWith(`budget/${kind}/`)).toBe(true);
          expect(parseBudgetWorkflowId(workflowId)).toEqual({ kind, id });
        },
      ),
    );
    expect(budgetWorkflowId({ kind: 'team', id: 'a/b c' })).toBe('budget/team/a%2Fb%20c');
    expect(parseBudgetWorkflowId('budget-supervisor')).toBeUndefined();
  });

  it('hashes only ids whose readable workflow id would pass the limit, and never collides', () => {
    const room = MAX_WORKFLOW_ID_LENGTH - 'budget/team/'.length;
    const fits = 'x'.repeat(room);
    expect(budgetWorkflowId({ kind: 'team', id: fits })).toBe(`budget/team/${fits}`);
    const long = `${fits}y`;
    expect(budgetWorkflowId({ kind: 'team', id: long })).toBe(`budget/team/sha256:${sha256Hex(long)}`);
    // One percent-encoded character takes three: '/' is escaped, so this id is too long as well.
    expect(budgetWorkflowId({ kind: 'team', id: `${'x'.repeat(room - 2)}/` })).toMatch(/sha256:/);
    expect(parseBudgetWorkflowId(budgetWorkflowId({ kind: 'team', id: long }))).toBeUndefined();
    // A readable id can never look like a hashed one: ':' is always escaped.
    const lookalike = { kind: 'team' as const, id: `sha256:${sha256Hex(long)}` };
    expect(budgetWorkflowId(lookalike)).toBe(`budget/team/sha256%3A${sha256Hex(long)}`);
    expect(parseBudgetWorkflowId(budgetWorkflowId(lookalike))).toEqual(lookalike);
    expect(parseBudgetWorkflowId('budget/team/%E0%A4%A')).toBeUndefined();
  });

  it('bounds the BudgetId search value and shows any id on one line', () => {
    expect(budgetIdSearchValue('demo-tier')).toBe('demo-tier');
    const long = '😀'.repeat(5_000);
    expect(budgetIdSearchValue(long)).toBe(`${'😀'.repeat(MAX_SEARCH_ID_CHARS - 1)}…`);
    expect(displayBudgetRef({ kind: 'budget', id: 'a\nb"c' })).toBe('budget:a\\nb"c');
    expect(displayBudgetRef({ kind: 'budget', id: 'x'.repeat(500) }, 10)).toBe(
      'budget:xxxxxxxxxx… (500 characters)',
    );
  });

  it('shows hostile text safe for a terminal: no control, C1, separator or bidi character, never cut inside one', () => {
    const hostile = `a\u001b[31mb\u009b2Jc\u202eevil\u2028d\\e'"*%😀\u0001`;
    expect(displayText(hostile)).toBe(`a\\u001b[31mb\\u009b2Jc\\u202eevil\\u2028d\\\\e'"*%😀\\u0001`);
    // Cut between characters: the emoji (two UTF-16 units) and the escape are whole or absent.
    expect(displayText('ab😀', 3)).toBe('ab… (4 characters)');
    expect(displayText('ab\u0001', 5)).toBe('ab… (3 characters)');
    expect(displayText('\ud800x')).toBe('\\ud800x');
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.integer({ min: 1, max: 300 }),
        (text, max) => {
          const shown = displayText(text, max);
          // No unsafe character, and no lone surrogate (with the `u` flag a range of surrogates matches only those).
          // eslint-disable-next-line no-control-regex
          const unsafe = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
          return !unsafe.test(shown) && !/[\ud800-\udfff]/u.test(shown);
        },
      ),
    );
  });
});

describe('sha256Hex', () => {
  it('matches node:crypto for any text', () => {
    const node = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
    expect(sha256Hex('')).toBe(node(''));
    for (const length of [55, 56, 63, 64, 65, 119, 120, 10_000]) {
      expect(sha256Hex('a'.repeat(length))).toBe(node('a'.repeat(length)));
    }
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => sha256Hex(text) === node(text)),
    );
  });
});

describe('entity registry', () => {
  it('round-trips composite and simple entity ids', () => {
    for (const type of ENTITY_TYPES) {
      const parts = type.key.map((k) => `${k} "x":y`);
      expect(decodeEntityId(type, encodeEntityId(parts))).toEqual(parts);
    }
  });

  it("builds LiteLLM's cache keys for each entity type", () => {
    const keys = (name: string, ...id: string[]) => entityType(name)!.cacheKeys(id);
    expect(keys('tag', 'tenant:acme')).toEqual({
      counter: 'spend:tag:tenant:acme',
      objects: ['tag:tenant:acme'],
    });
    expect(keys('team_member', 'u1', 't1')).toEqual({
      counter: 'spend:team_member:u1:t1',
      objects: ['t1_u1', 'team_membership:u1:t1'],
    });
    expect(keys('org', 'o')).toEqual({
      counter: 'spend:org:o',
      objects: ['org_id:o', 'org_id:o:with_budget'],
    });
    expect(keys('user', 'litellm-proxy-budget').objects).toContain('default_user_id:spend');
    expect(keys('org_member', 'u', 'o')).toEqual({ objects: [] });
    // Every tier-linked table and every owner is described once.
    expect(new Set(ENTITY_TYPES.map((t) => t.table)).size).toBe(ENTITY_TYPES.length);
  });
});
