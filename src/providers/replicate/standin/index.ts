export { parseGoDuration } from './answers';
export { startStandin, type Standin, type StandinOptions, type StandinPreset, type RecordedRequest } from './server';
export { VirtualClock, RealClock, type StandinClock } from './clock';
export {
  Faults,
  type FaultAction,
  type FaultOp,
  type FaultRule,
  type Outcome,
  type SignatureMode,
  type WebhookFaults,
} from './faults';
export { STANDIN_MODELS, DEMO_TIMELINES, validateInput, type StandinModel, type Timeline } from './models';
export type { WebhookDelivery } from './webhook-sender';
export { SAFETY_ERROR } from './simulation';
