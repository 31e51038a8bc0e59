import type { KnownPredictionStatus, Prediction } from '../types';

const KNOWN: readonly string[] = ['starting', 'processing', 'succeeded', 'failed', 'canceled', 'aborted'];

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Fills in the keys Replicate sometimes leaves out; keeps the raw object alongside. */
export function toPrediction(raw: unknown): Prediction {
  if (!raw || typeof raw !== 'object' || typeof (raw as { id?: unknown }).id !== 'string') {
    throw new Error('Not a prediction object');
  }
  const r = raw as Record<string, unknown>;
  const rawStatus = typeof r.status === 'string' ? r.status : 'unknown';
  const urls = (r.urls && typeof r.urls === 'object' ? r.urls : {}) as Record<string, unknown>;
  const u: Prediction['urls'] = {};
  for (const k of ['get', 'cancel', 'stream', 'web'] as const)
    if (typeof urls[k] === 'string') u[k] = urls[k] as string;
  return {
    id: r.id as string,
    model: str(r.model),
    version: str(r.version),
    status: KNOWN.includes(rawStatus) ? (rawStatus as KnownPredictionStatus) : 'unknown',
    rawStatus,
    input: r.input && typeof r.input === 'object' ? (r.input as Record<string, unknown>) : null,
    output: r.output === undefined ? null : r.output,
    error: r.error == null ? null : typeof r.error === 'string' ? r.error : JSON.stringify(r.error),
    logs: str(r.logs),
    urls: u,
    created_at: str(r.created_at),
    started_at: str(r.started_at),
    completed_at: str(r.completed_at),
    metrics: r.metrics && typeof r.metrics === 'object' ? (r.metrics as Record<string, unknown>) : null,
    data_removed: r.data_removed === true,
    webhook: str(r.webhook),
    deadline: str(r.deadline),
    raw: r,
  };
}
