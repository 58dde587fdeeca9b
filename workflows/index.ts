export { budgetWorkflow } from './budget.js';
export { budgetSupervisorWorkflow } from './supervisor.js';
