import { Client, Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refusal } from '../../src/temporal/budget-workflows.js';
import { services, uniqueName } from '../helpers/services.js';

// Which of the dev server's INVALID_ARGUMENT answers discovery records as a refused budget, and which it retries.
let connection: Connection;
let client: Client;

beforeAll(async () => {
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
});

afterAll(async () => {
  await connection?.close();
});

async function startError(options: { workflowId: string; unknownAttribute?: boolean }): Promise<unknown> {
  const unknown = defineSearchAttributeKey(
    uniqueName('NotRegistered').replace(/-/g, ''),
    SearchAttributeType.KEYWORD,
  );
  return client.workflow
    .start('budgetEntityWorkflow', {
      taskQueue: uniqueName('refusals'),
      workflowId: options.workflowId,
      args: [],
      typedSearchAttributes: options.unknownAttribute ? [{ key: unknown, value: 'x' }] : [],
    })
    .then(
      () => undefined,
      (error: unknown) => error,
    );
}

/** The messages of an error and its causes. */
function messages(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e instanceof Error; e = e.cause) parts.push(e.message);
  return parts.join(': ');
}

describe('refusal', () => {
  it('is the reason for an id the server can never hold', async () => {
    const error = await startError({ workflowId: `budget/budget/${'x'.repeat(2_000)}` });
    expect(error).toBeInstanceOf(Error);
    expect(refusal(error)).toMatch(/length/i);
  });

  it('is nothing for a search attribute the server does not know yet, so the budget is tried again', async () => {
    const error = await startError({
      workflowId: uniqueName('budget/budget/unknown-attribute'),
      unknownAttribute: true,
    });
    expect(error).toBeInstanceOf(Error);
    expect(messages(error)).toMatch(/search attribute/);
    expect(refusal(error)).toBeUndefined();
  });
});
