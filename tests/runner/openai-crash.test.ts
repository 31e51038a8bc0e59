import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startOpenAIStandin, type OpenAIStandin } from '../../src/providers/openai/standin';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { call, createTask, events, freePort, waitFor } from './helpers';

/**
 * Issue 24, acceptance 3: `kill -9` of the gateway streaming a chat completion. A completion
 * cannot be resumed, and sending it again would bill it twice: the restarted gateway fails the
 * task with `completion_interrupted` (docs/providers.md), keeping the text announced before the
 * crash, and the endpoint saw one request.
 */
describe('an OpenAI-compatible completion when its gateway is killed mid-stream', () => {
  let oai: OpenAIStandin;
  let dataDir: string;
  const procs: GatewayProcess[] = [];

  beforeAll(async () => {
    oai = await startOpenAIStandin({ wordMs: 100, words: 400 });
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-oai-crash-'));
  });
  afterAll(async () => {
    for (const p of procs) await p.kill9();
    await oai?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('fails the task with completion_interrupted after the restart; the endpoint saw one request', async () => {
    const port = await freePort();
    const env = {
      PORT: String(port),
      OPENAI_BASE_URL: oai.url,
      OPENAI_API_KEY: oai.apiKey,
      OPENAI_MODELS: 'stand-in-chat',
      RUNNER_ENABLED: 'true',
      DATA_DIR: dataDir,
      PYRE_FIXTURE_RUNNER: JSON.stringify({ leaseMs: 1500, pollIntervalMs: 100, claimIntervalMs: 200 }),
    };
    const first = await spawnGateway(env);
    procs.push(first);
    const prompt = 'stream a long answer';
    const id = await createTask(first.url, { type: 'text', model: 'stand-in-chat', prompt });
    // Mid-stream: deltas announced, the endpoint still sending.
    await waitFor(
      'deltas announced',
      async () => (await events(first.url, id)).filter((e) => e.event === 'text_delta').length >= 2,
      60_000,
    );
    await first.kill9();
    const announced = (await waitFor('the endpoint saw the connection drop', () =>
      oai.completions().find((c) => c.prompt === prompt && c.aborted),
    ))!;
    expect(announced.completed).toBe(false);

    const second = await spawnGateway(env);
    procs.push(second);
    const t = await waitFor(
      'the task ended',
      async () => {
        const cur = (await call(`${second.url}/api/tasks/${id}`)).body.data;
        return cur.status === 'failed' || cur.status === 'succeeded' ? cur : null;
      },
      60_000,
    );
    expect(t).toMatchObject({ status: 'failed', error: { code: 'completion_interrupted' } });
    // Not sent again: one request, so one bill.
    expect(oai.completions().filter((c) => c.prompt === prompt)).toHaveLength(1);
    // The events say so, after the text announced before the crash, and stay gap-free.
    const log = await events(second.url, id);
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
    const tail = log.slice(-2).map((e) => [e.event, e.payload.status ?? null]);
    expect(tail).toEqual([
      ['status', 'failed'],
      ['text_response', 'failed'],
    ]);
    expect(log.filter((e) => e.event === 'text_delta').length).toBeGreaterThanOrEqual(2);
  });
});
