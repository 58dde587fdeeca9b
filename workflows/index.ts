export { budgetEntityWorkflow } from './budget.js';
export { budgetWorkflow } from './legacy/budget-v1.js';
export { budgetSupervisorWorkflow } from './supervisor.js';
