import { readFileSync } from 'node:fs';
import path from 'node:path';
import { formatSseEvent, SseParser } from '../../src/providers/http/sse';

describe('SseParser', () => {
  it('parses the fixture transcript (comment, multi-line data, done)', () => {
    const body = (
      JSON.parse(
        readFileSync(path.join(__dirname, '..', 'fixtures', 'replicate', 'sse-stream.handwritten.json'), 'utf8'),
      ) as {
        response: { body: string };
      }
    ).response.body;
    const p = new SseParser();
    expect(p.push(body)).toEqual([
      { event: 'output', id: 'EVENT_1', data: 'hello,\nthis is a new line,\nand this is a new line too' },
      { event: 'done', id: 'EVENT_2', data: '{}' },
    ]);
    expect(p.lastEventId).toBe('EVENT_2');
  });

  it('copes with any chunking, CRLF split across chunks, and empty data', () => {
    const text = 'event: output\r\nid: 1:0\r\ndata: a\r\ndata:  b\r\n\r\nevent: output\r\nid: 1:1\r\ndata:\r\n\r\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = new SseParser();
      const evs = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(evs).toEqual([
        { event: 'output', id: '1:0', data: 'a\n b' },
        { event: 'output', id: '1:1', data: '' },
      ]);
    }
  });

  it('round-trips what the stand-in writes', () => {
    const ev = { event: 'output', id: '7:3', data: '\n\nline two\nthree' };
    expect(new SseParser().push(formatSseEvent(ev))).toEqual([ev]);
  });
});
