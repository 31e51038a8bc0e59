export { startStandin, type Standin, type StandinOptions, type StandinPreset, type RecordedRequest } from './server';
export { VirtualClock, type StandinClock } from './clock';
export {
  Faults,
  type FaultAction,
  type FaultOp,
  type FaultRule,
  type Outcome,
  type SignatureMode,
  type WebhookFaults,
} from './faults';
export { STANDIN_MODELS, type StandinModel, type Timeline } from './models';
export type { WebhookDelivery } from './webhook-sender';
export { SAFETY_ERROR } from './simulation';
