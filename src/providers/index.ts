export * from './types';
export { parseProgress, normalizeOutput, type Progress, type OutputKind, type NormalizedOutput } from './progress';
