// Types of the module the gateway generates and serves at /js/events.js from its task-event
// contract (src/tasks/events.ts, dashboardEventsModule in src/http/dashboard.ts). There is no
// events.js file in this folder on purpose: the names are never copied.
export const TASK_EVENTS: string[];
export const RESPONSE_EVENTS: string[];
export const GENERATE_EVENTS: string[];
/** The kinds of task (src/tasks/events.ts TASK_KINDS): what each produces is its `output`. */
export const TASK_KINDS: Array<{
  kind: string;
  taskType: string;
  generateEvent: string;
  responseEvent: string;
  output: 'files' | 'text';
}>;
