import { normalizeOutput } from '../../src/providers/progress';
import type { StreamEvent, StreamResult } from '../../src/providers/types';
import type { Standin } from '../../src/providers/replicate/standin';
import { setup } from './helpers';

/** Runs `client.stream` while advancing the virtual clock until the stream ends. */
async function streamWhileAdvancing(standin: Standin, run: () => Promise<StreamResult>): Promise<StreamResult> {
  let done = false;
  const p = run().finally(() => (done = true));
  for (let i = 0; i < 200 && !done; i++) await standin.advance(250);
  return p;
}

describe('SSE streaming of text output', () => {
  it('deltas join to the final text, with logs and done', async () => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model: 'google/gemini-2.5-flash', input: { prompt: 'stream me' } });
      const events: StreamEvent[] = [];
      const result = await streamWhileAdvancing(standin, () =>
        client.stream(created.urls.stream!, { onEvent: (e) => void events.push(e) }),
      );
      expect(result).toMatchObject({ reason: 'done', error: null, reconnects: 0 });
      const final = await client.get(created.id);
      expect(final.status).toBe('succeeded');
      const text = events
        .filter((e) => e.event === 'output')
        .map((e) => e.data)
        .join('');
      expect(text).toBe(normalizeOutput('text', final.output)!.text);
      expect(text).toContain('\n\n'); // multi-line data survived
      expect(events.some((e) => e.event === 'logs' && e.data.includes('Generating text'))).toBe(true);
      expect(events[events.length - 1]).toMatchObject({ event: 'done', data: '{}' });
      const streamReq = standin.requests.find((r) => r.op === 'stream')!;
      expect(streamReq.headers.accept).toBe('text/event-stream');
    } finally {
      await close();
    }
  });

  it('resumes after a dropped stream with Last-Event-ID, without losing or repeating tokens', async () => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'resume me' } });
      standin.faults.inject({ op: 'stream', times: 2, action: { kind: 'stream_drop_after', events: 4 } });
      const events: StreamEvent[] = [];
      const result = await streamWhileAdvancing(standin, () =>
        client.stream(created.urls.stream!, { onEvent: (e) => void events.push(e) }),
      );
      expect(result.reason).toBe('done');
      expect(result.reconnects).toBe(2);
      const ids = events.map((e) => e.id);
      expect(new Set(ids).size).toBe(ids.length);
      const final = await client.get(created.id);
      expect(
        events
          .filter((e) => e.event === 'output')
          .map((e) => e.data)
          .join(''),
      ).toBe(normalizeOutput('text', final.output)!.text);
      const streams = standin.requests.filter((r) => r.op === 'stream');
      expect(streams).toHaveLength(3);
      expect(streams[0]!.headers['last-event-id']).toBeUndefined();
      expect(streams[1]!.headers['last-event-id']).toBe(events[3]!.id);
      expect(streams[2]!.headers['last-event-id']).toBe(events[7]!.id);
    } finally {
      await close();
    }
  });

  it('starts after a given lastEventId', async () => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model: 'anthropic/claude-4-sonnet', input: { prompt: 'x' } });
      await standin.advance(60_000, { stepMs: 1000 });
      const all: StreamEvent[] = [];
      await client.stream(created.urls.stream!, { onEvent: (e) => void all.push(e) });
      const tail: StreamEvent[] = [];
      await client.stream(created.urls.stream!, { lastEventId: all[5]!.id!, onEvent: (e) => void tail.push(e) });
      expect(tail).toEqual(all.slice(6));
    } finally {
      await close();
    }
  });

  it('reports a failed prediction as an error event and done {reason: error}', async () => {
    const { standin, client, close } = await setup();
    try {
      standin.faults.nextOutcome({ type: 'fail', error: 'CUDA out of memory' });
      const created = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } });
      const events: StreamEvent[] = [];
      const result = await streamWhileAdvancing(standin, () =>
        client.stream(created.urls.stream!, { onEvent: (e) => void events.push(e) }),
      );
      expect(result).toMatchObject({ reason: 'error', error: 'CUDA out of memory' });
      expect(events.slice(-2).map((e) => e.event)).toEqual(['error', 'done']);
    } finally {
      await close();
    }
  });

  it('ends with done {reason: canceled} when the prediction is canceled mid-stream', async () => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } });
      let outputs = 0;
      const p = client.stream(created.urls.stream!, {
        onEvent: async (e) => {
          if (e.event === 'output' && ++outputs === 3) await client.cancel(created.id);
        },
      });
      const result = await streamWhileAdvancing(standin, () => p);
      expect(result.reason).toBe('canceled');
      const final = await client.get(created.id);
      expect(final.status).toBe('canceled');
      expect(Array.isArray(final.output)).toBe(true); // partial output is kept
    } finally {
      await close();
    }
  });

  it('can be aborted by the caller', async () => {
    const { client, close } = await setup();
    try {
      const created = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } });
      const ac = new AbortController();
      const p = client.stream(created.urls.stream!, { signal: ac.signal, onEvent: () => undefined });
      setTimeout(() => ac.abort(new Error('stop')), 50);
      await expect(p).rejects.toThrow('stop');
    } finally {
      await close();
    }
  });

  it('gives up as transient when reconnects make no progress, and permanent on 404', async () => {
    const { standin, client, close } = await setup();
    try {
      const created = await client.create({ model: 'openai/gpt-4.1', input: { prompt: 'x' } });
      standin.faults.inject({ op: 'stream', times: 10, action: { kind: 'status', status: 503 } });
      const e = await client
        .stream(created.urls.stream!, { maxReconnects: 2, onEvent: () => undefined })
        .catch((err: unknown) => err);
      expect(e).toMatchObject({ name: 'ProviderError', kind: 'transient' });
      expect(standin.requests.filter((r) => r.op === 'stream')).toHaveLength(3);
      standin.faults.reset();
      const gone = await client
        .stream(`${standin.url}/streams/nosuchstream`, { onEvent: () => undefined })
        .catch((err: unknown) => err);
      expect(gone).toMatchObject({ name: 'ProviderError', kind: 'permanent', status: 404 });
    } finally {
      await close();
    }
  });
});
