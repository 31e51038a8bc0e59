/**
 * The task-event contract is defined once (src/tasks/events.ts): every consumer takes its event
 * names from there, and what the gateway really sends matches the OpenAPI schemas generated from
 * the same zod schemas. Adding an event (say `queued_position`) to TASK_EVENT_PAYLOADS makes it
 * appear in each list checked here with no other edit.
 */
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { TaskChannel } from '../../src/channels/task-channel';
import { FOLLOWED_EVENTS } from '../../src/cli/submit';
import { dashboardEventsModule } from '../../src/http/dashboard';
import { openApiDocument } from '../../src/http/openapi';
import { silentLogger } from '../../src/log';
import type { Standin } from '../../src/providers/replicate/standin';
import {
  RESPONSE_EVENTS,
  TASK_EVENT_NAMES,
  TASK_EVENT_PAYLOADS,
  TASK_KINDS,
  taskEventSchema,
} from '../../src/tasks/events';
import { ModelRegistry } from '../../src/tasks/models';
import type { TaskService } from '../../src/tasks/service';
import { fastStandin, standinEnv } from '../channels/helpers';
import { call, startGateway, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../runner/helpers';

/** The `export const NAME = [...]` lines of the dashboard's generated module, parsed. */
function moduleExports(source: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of source.matchAll(/^export const (\w+) = (\[.*\]);$/gm)) out[m[1]!] = JSON.parse(m[2]!);
  return out;
}

describe('the task-event contract, defined once', () => {
  const names = Object.keys(TASK_EVENT_PAYLOADS);

  test('the kinds table gives each kind its generate and response events', () => {
    for (const k of TASK_KINDS) {
      expect(k.taskType).toBe(`${k.kind}_gen`);
      expect(k.generateEvent).toBe(`${k.kind}_generate`);
      expect(k.responseEvent).toBe(`${k.kind}_response`);
      expect(names).toContain(k.responseEvent);
    }
    expect(TASK_EVENT_NAMES).toEqual(names);
  });

  test('the channel intercepts every event of the table', () => {
    const channel = new TaskChannel({} as TaskService, silentLogger());
    expect([...channel.intercept]).toEqual(names);
  });

  test("the OpenAPI document's TaskEvent has one variant per event, with that event's payload", () => {
    const doc = openApiDocument(new ModelRegistry()) as any;
    const variants = doc.components.schemas.TaskEvent.oneOf as any[];
    expect(variants.map((v) => v.properties.event.const)).toEqual(names);
    for (const v of variants) {
      const payload = TASK_EVENT_PAYLOADS[v.properties.event.const as keyof typeof TASK_EVENT_PAYLOADS];
      expect(Object.keys(v.properties.payload.properties)).toEqual(['task_id', 'seq', ...Object.keys(payload.shape)]);
    }
  });

  test('the dashboard loads the names from the module the gateway generates', () => {
    const exported = moduleExports(dashboardEventsModule());
    expect(exported.TASK_EVENTS).toEqual(names);
    expect(exported.RESPONSE_EVENTS).toEqual([...RESPONSE_EVENTS]);
    expect(exported.GENERATE_EVENTS).toEqual(TASK_KINDS.map((k) => k.generateEvent));
  });

  test('the CLI follows every event of the table', () => {
    expect([...FOLLOWED_EVENTS]).toEqual(names);
  });

  test('an event of another shape is refused by the zod schema', () => {
    const base = { task_id: '6f1c1a3e-8a39-4a51-9d5e-0a0c2b1d9e77', seq: 2, inserted_at: new Date().toISOString() };
    const ok = { ...base, event: 'progress', payload: { task_id: base.task_id, seq: 2, progress: 40 } };
    expect(taskEventSchema.safeParse(ok).success).toBe(true);
    expect(taskEventSchema.safeParse({ ...ok, payload: { ...ok.payload, progress: 140 } }).success).toBe(false);
    expect(taskEventSchema.safeParse({ ...ok, event: 'queued_position' }).success).toBe(false);
  });
});

describe('what the gateway sends matches the generated schemas', () => {
  let standin: Standin;
  let g: TestGateway;
  let token: string;

  beforeAll(async () => {
    standin = await fastStandin(8);
    g = await startGateway('pglite', { auth: true, env: standinEnv(standin) });
    token = g.gw.auth.signer!.mint('alice');
  });

  afterAll(async () => {
    await g?.close();
    await standin?.close();
  });

  test('/js/events.js is served, and tasks and their events validate against Task and TaskEvent', async () => {
    const served = await fetch(`${g.url}/js/events.js`);
    expect(served.headers.get('content-type')).toMatch(/javascript/);
    expect(moduleExports(await served.text()).TASK_EVENTS).toEqual(TASK_EVENT_NAMES);

    const doc = (await call(`${g.url}/api/openapi.json`)).body;
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(doc, 'openapi.json');
    const task = ajv.compile({ $ref: 'openapi.json#/components/schemas/Task' });
    const event = ajv.compile({ $ref: 'openapi.json#/components/schemas/TaskEvent' });

    const inputs = [
      { type: 'image', prompt: 'a lighthouse at dusk' },
      { type: 'text', prompt: 'say hello' },
      { type: 'video', prompt: 'waves', duration: 2 },
    ];
    const ids: string[] = [];
    for (const input_data of inputs) {
      const res = await call(`${g.url}/api/tasks`, { body: { input_data }, token });
      expect(res.status).toBe(202);
      expect(task(res.body.data) || task.errors).toBe(true);
      ids.push(res.body.task_id);
    }
    // A cancel ends in a failed response carrying the cancel's error.
    expect((await call(`${g.url}/api/tasks/${ids[2]}/cancel`, { method: 'POST', token })).status).toBe(200);

    const seen = new Set<string>();
    for (const id of ids) {
      const done = await waitFor(`task ${id} to end`, async () => {
        const r = await call(`${g.url}/api/tasks/${id}`, { token });
        return ['succeeded', 'failed', 'canceled'].includes(r.body.data.status) ? r.body.data : null;
      });
      expect(task(done) || task.errors).toBe(true);
      const events = (await call(`${g.url}/api/tasks/${id}/events`, { token })).body.data as any[];
      for (const e of events) {
        expect(event(e) || { event: e, errors: event.errors }).toBe(true);
        expect(taskEventSchema.safeParse(e).success).toBe(true);
        seen.add(e.event);
      }
    }
    // The run produced status events, streamed text and a final response of each kind.
    expect([...seen]).toEqual(expect.arrayContaining(['status', 'text_delta', ...RESPONSE_EVENTS]));
  });
});
