import { readFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeOutput, parseProgress } from '../../src/providers/progress';
import { parseRetryAfter, toPrediction } from '../../src/providers/replicate/client';
import { isTerminal } from '../../src/providers/types';

const fixture = (name: string) =>
  JSON.parse(readFileSync(path.join(__dirname, '..', 'fixtures', 'replicate', name), 'utf8')) as {
    response: { body: Record<string, unknown> };
  };

describe('parseProgress', () => {
  it('reads the recorded SDXL logs (last bar line wins)', () => {
    const logs = fixture('get-image-processing.json').response.body.logs as string;
    expect(parseProgress(logs)).toEqual({ percent: 16, current: 8, total: 50, message: 'txt2img mode' });
  });

  it('follows a second bar that starts again at 0 %', () => {
    const logs = [
      'Using seed: 1',
      '100%|██████████| 30/30 [00:06<00:00,  4.90it/s]',
      'Decoding frames...',
      '  0%|          | 0/10 [00:00<?, ?it/s]',
      ' 20%|██        | 2/10 [00:00<00:01,  4.90it/s]',
      '',
    ].join('\n');
    expect(parseProgress(logs)).toMatchObject({ percent: 20, current: 2, total: 10, message: 'Decoding frames...' });
    expect(parseProgress(logs.split('\n').slice(0, 4).join('\n')).percent).toBe(0);
  });

  it('handles tqdm carriage-return redraws', () => {
    expect(parseProgress(' 10%|█         | 1/10 [00:00<00:01]\r 50%|█████     | 5/10 [00:01<00:01]\r').percent).toBe(
      50,
    );
  });

  it('is null, not 0, when there is no bar', () => {
    expect(parseProgress('Generating text with gemini-2.5-flash...\n')).toEqual({
      percent: null,
      message: 'Generating text with gemini-2.5-flash...',
    });
    expect(parseProgress('')).toEqual({ percent: null });
    expect(parseProgress(null)).toEqual({ percent: null });
    expect(parseProgress('50% done, not a bar')).toEqual({ percent: null, message: '50% done, not a bar' });
  });
});

describe('normalizeOutput', () => {
  it('turns a URL or a list of URLs into {urls}', () => {
    expect(normalizeOutput('image', 'https://x/out.png')).toEqual({ urls: ['https://x/out.png'] });
    expect(normalizeOutput('video', ['https://x/a.mp4', 'https://x/b.mp4'])).toEqual({
      urls: ['https://x/a.mp4', 'https://x/b.mp4'],
    });
    expect(normalizeOutput('image', fixture('get-image-succeeded.json').response.body.output)).toEqual({
      urls: expect.arrayContaining([expect.stringMatching(/^https:/)]),
    });
  });

  it('joins text tokens into {text}', () => {
    const out = fixture('sync-create-official-model-wait.json').response.body.output;
    expect(normalizeOutput('text', out)).toEqual({
      text: "\n\nFuzzy, gentle beasts\nSoftly grazing, quiet eyes\nLlama's gentle charm",
    });
    expect(normalizeOutput('text', 'plain')).toEqual({ text: 'plain' });
  });

  it('gives null for no output', () => {
    expect(normalizeOutput('text', null)).toBeNull();
    expect(normalizeOutput('image', undefined)).toBeNull();
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('prefers the header: seconds or an HTTP date', () => {
    expect(parseRetryAfter('2', null, now)).toBe(2000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', null, now)).toBe(5000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', null, now)).toBe(0);
  });
  it('falls back to retry_after, then the ~Ns in the detail', () => {
    expect(parseRetryAfter(undefined, fixture('error-429-throttled.json').response.body, now)).toBe(5000);
    expect(parseRetryAfter(undefined, { detail: 'Request was throttled. Your rate limit resets in ~30s.' }, now)).toBe(
      30000,
    );
    expect(parseRetryAfter(undefined, { detail: 'Expected available in 1 second.' }, now)).toBe(1000);
    expect(parseRetryAfter(undefined, { detail: 'Too many requests' }, now)).toBeNull();
  });
});

describe('toPrediction', () => {
  it('fills keys older responses leave out', () => {
    const p = toPrediction(fixture('create-official-model-201.json').response.body);
    expect(p).toMatchObject({
      status: 'starting',
      output: null,
      metrics: null,
      data_removed: false,
      started_at: null,
      logs: '',
    });
  });
  it('keeps unknown statuses non-terminal and knows aborted is terminal', () => {
    const p = toPrediction({ id: 'x', status: 'paused' });
    expect(p.status).toBe('unknown');
    expect(p.rawStatus).toBe('paused');
    expect(isTerminal(p.status)).toBe(false);
    expect(isTerminal('aborted')).toBe(true);
  });
});
