import type { WorkflowHandle } from '@temporalio/client';
import { vi } from 'vitest';
import { supervisorStatusQuery, syncNowSignal, type SupervisorStatus } from '../../workflows/supervisor.js';
import type { BudgetTestEnv } from './budget-env.js';
import { LIMITS } from './limits.js';

/**
 * Asks the supervisor for a pass now and waits for one that started after the request (a pass already running
 * when the signal arrives does not count; real time, workflow time does not move).
 */
export async function syncPass(t: BudgetTestEnv, supervisor: WorkflowHandle): Promise<SupervisorStatus> {
  const askedAt = (await t.now()).getTime();
  await supervisor.signal(syncNowSignal);
  return vi.waitFor(
    async () => {
      const s = await supervisor.query(supervisorStatusQuery);
      if (!s.lastPass || Date.parse(s.lastPass.at) < askedAt) throw new Error('no new pass yet');
      return s;
    },
    { timeout: LIMITS.supervisorPass, interval: 100 },
  );
}
