import type { Logger } from '../../src/log';
import { DatabaseWatch, isDatabaseUnavailable } from '../../src/runner/database';

/** Unit tests of pure logic: which errors mean "the database is away", and logging once each way. */
describe('isDatabaseUnavailable', () => {
  const err = (message: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(message), extra);

  it.each([
    [
      'a backend terminated by an administrator',
      err('terminating connection due to administrator command', { code: '57P01' }),
    ],
    ['a connection that ended under a query', err('Connection terminated unexpectedly')],
    ['a refused connection', err('connect ECONNREFUSED 127.0.0.1:5432', { code: 'ECONNREFUSED' })],
    [
      'a pool that found no connection in time',
      err('Knex: Timeout acquiring a connection.', { name: 'KnexTimeoutError' }),
    ],
    ['a server starting up', err('the database system is starting up', { code: '57P03' })],
    ['a connection exception', err('connection failure', { code: '08006' })],
  ])('%s: yes', (_what, e) => expect(isDatabaseUnavailable(e)).toBe(true));

  it.each([
    ['a unique violation', err('duplicate key value violates unique constraint', { code: '23505' })],
    ['a syntax error', err('syntax error at or near "x"', { code: '42601' })],
    ['a plain bug', new TypeError("Cannot read properties of undefined (reading 'id')")],
    ['not an error', 'Connection terminated'],
  ])('%s: no', (_what, e) => expect(isDatabaseUnavailable(e)).toBe(false));
});

describe('DatabaseWatch', () => {
  it('says an outage once and its end once, however many failures it sees', () => {
    const said: string[] = [];
    const logger = {
      warn: (_o: unknown, msg: string) => said.push(`warn ${msg}`),
      info: (msg: string) => said.push(`info ${msg}`),
    } as unknown as Logger;
    const watch = new DatabaseWatch(logger);
    const away = Object.assign(new Error('Connection terminated unexpectedly'));
    watch.answered();
    expect(said).toEqual([]);
    for (let i = 0; i < 10; i++) expect(watch.failed(away, 'claiming tasks')).toBe(true);
    expect(watch.unreachable).toBe(true);
    expect(watch.failed(new Error('a bug'), 'claiming tasks')).toBe(false);
    watch.answered();
    watch.answered();
    expect(watch.unreachable).toBe(false);
    expect(said).toHaveLength(2);
    expect(said[0]).toMatch(/^warn database unreachable/);
    expect(said[1]).toMatch(/^info database answers again/);
  });
});
