import type { IncomingHttpHeaders } from 'node:http';
import { NOT_FOUND, parseGoDuration, problem, validationFailed, type Answer } from './answers';
import { STANDIN_MODELS, validateInput, type InvalidField, type StandinModel } from './models';

/**
 * The checks of a create request (POST /v1/models/{owner}/{name}/predictions or POST
 * /v1/predictions with `version`), in Replicate's order: the body's shape, the model, credit, then
 * the input and options together in one 422.
 */

const TOP_LEVEL_KEYS = new Set(['input', 'webhook', 'webhook_events_filter', 'webhook_completed', 'stream']);
const WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'];

const INSUFFICIENT_CREDIT =
  'You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase ' +
  'credit. Once you purchase credit, please wait a few minutes before trying again.';

export interface CreateRequest {
  model: StandinModel;
  input: Record<string, unknown>;
  webhook: string | null;
  webhookEventsFilter: string[] | null;
  /** From the `Cancel-After` header. */
  cancelAfterMs: number | null;
}

export interface CreateCheckOptions {
  /** Every create is refused with 402 (a fault switch). */
  noCredit: boolean;
  /** The token whose creates get 402. */
  noCreditToken?: string;
  strictInputKeys?: boolean;
}

export function modelOf(owner: string, name: string): StandinModel | null {
  return STANDIN_MODELS[`${owner}/${name}`] ?? null;
}

/** The request to create, or the answer that refuses it. */
export function checkCreate(
  raw: unknown,
  params: string[],
  headers: IncomingHttpHeaders,
  opts: CreateCheckOptions,
): { request: CreateRequest } | { refused: Answer } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return { refused: problem(400, 'The request body is not a valid JSON object.', 'Invalid JSON') };
  const body = raw as Record<string, unknown>;
  const viaVersion = params.length === 0;
  const top = topLevelProblems(body, viaVersion);
  if (top.length) return { refused: validationFailed(top) };
  const model = viaVersion ? modelOfVersion(body.version) : modelOf(params[0]!, params[1]!);
  if (model === null) return { refused: NOT_FOUND() };
  if ('status' in model) return { refused: model };
  const noCreditAuth = opts.noCreditToken !== undefined && headers.authorization === `Bearer ${opts.noCreditToken}`;
  if (opts.noCredit || noCreditAuth) return { refused: problem(402, INSUFFICIENT_CREDIT, 'Insufficient credit') };

  const fields = validateInput(model, body.input, { strictKeys: opts.strictInputKeys });
  const webhook = webhookOf(body.webhook, fields);
  const webhookEventsFilter = eventsFilterOf(body.webhook_events_filter, fields);
  const cancelAfterMs = cancelAfterOf(headers['cancel-after'], fields);
  if (fields.length) return { refused: validationFailed(fields) };
  return {
    request: { model, input: body.input as Record<string, unknown>, webhook, webhookEventsFilter, cancelAfterMs },
  };
}

function topLevelProblems(body: Record<string, unknown>, viaVersion: boolean): InvalidField[] {
  const allowed = viaVersion ? new Set([...TOP_LEVEL_KEYS, 'version']) : TOP_LEVEL_KEYS;
  const top: InvalidField[] = [];
  for (const k of Object.keys(body))
    if (!allowed.has(k))
      top.push({
        type: 'additional_property_not_allowed',
        field: '',
        description: `Additional property ${k} is not allowed`,
      });
  if (body.input === undefined) top.push({ type: 'required', field: '', description: 'input is required' });
  if (viaVersion && body.version === undefined)
    top.push({ type: 'required', field: '', description: 'version is required' });
  return top;
}

/** `owner/name` or `owner/name:<sha256>`; an unreadable version is a 422, an unknown model null (404). */
function modelOfVersion(version: unknown): StandinModel | Answer | null {
  const m = /^([^/:\s]+)\/([^/:\s]+)(?::([0-9a-f]{64}))?$/.exec(String(version));
  if (!m)
    return problem(
      422,
      "The specified version does not exist (or perhaps you don't have permission to use it?)",
      'Invalid version or not permitted',
    );
  return modelOf(m[1]!, m[2]!);
}

function webhookOf(value: unknown, fields: InvalidField[]): string | null {
  if (value === undefined || value === null) return null;
  try {
    const u = new URL(String(value));
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    return u.toString();
  } catch {
    fields.push({ type: 'format', field: 'webhook', description: "Does not match format 'uri'" });
    return null;
  }
}

function eventsFilterOf(f: unknown, fields: InvalidField[]): string[] | null {
  if (f === undefined || f === null) return null;
  if (!Array.isArray(f)) {
    fields.push({
      type: 'invalid_type',
      field: 'webhook_events_filter',
      description: 'Invalid type. Expected: array, given: ' + typeof f,
    });
    return null;
  }
  f.forEach((e, i) => {
    if (!WEBHOOK_EVENTS.includes(e as string))
      fields.push({
        type: 'enum',
        field: `webhook_events_filter.${i}`,
        description: `webhook_events_filter.${i} must be one of the following: "start", "output", "logs", "completed"`,
      });
  });
  return f as string[];
}

function cancelAfterOf(header: string | string[] | undefined, fields: InvalidField[]): number | null {
  if (typeof header !== 'string') return null;
  const ms = parseGoDuration(header);
  if (ms !== null && ms > 0) return ms;
  fields.push({ type: 'format', field: 'Cancel-After', description: `Invalid duration ${JSON.stringify(header)}` });
  return null;
}
