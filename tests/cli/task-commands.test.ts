import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { call } from '../helpers/gateway';
import { waitFor } from '../helpers/wait';
import { startDemoGateway, type DemoGateway } from '../dashboard/helpers';
import { pyreIn } from './helpers';

const ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

/** Issue 14, item 12: the CLI for tasks that exist already. */
describe('pyre watch, get, cancel, events, models', () => {
  let env: DemoGateway;
  let userEnv: Record<string, string>;
  /** The task the cancel test canceled (canceled again in a later test). */
  let canceledId = '';

  beforeAll(async () => {
    env = await startDemoGateway({ auth: true });
    userEnv = { PYRE_URL: env.url, PYRE_TOKEN: env.token('erin') };
  });

  afterAll(async () => {
    await env?.close();
  });

  test('submit --detach names `pyre watch <id>`, which follows the task to its result; get and events show it', async () => {
    const detached = await pyreIn(['submit', '--detach', '--type', 'image', 'a red kite'], userEnv);
    expect(detached.code).toBe(0);
    const id = detached.stdout.trim();
    expect(id).toMatch(new RegExp(`^${ID.source}$`));
    expect(detached.stderr).toContain(`pyre watch ${id}`);

    const watched = await pyreIn(['watch', id], userEnv);
    expect(watched.code).toBe(0);
    const urls = watched.stdout.trim().split('\n');
    expect(urls).toHaveLength(1);
    expect(urls[0]).toMatch(new RegExp(`^${env.url}/files/${id}/`));
    expect(watched.stderr).toMatch(/^succeeded 100%$/m);

    const [get, getWatch, events, eventsAfter] = await Promise.all([
      pyreIn(['get', id], userEnv),
      pyreIn(['get', id, '--watch', '--quiet'], userEnv),
      pyreIn(['events', id], userEnv),
      pyreIn(['events', id, '--after', '2', '--json'], userEnv),
    ]);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(new RegExp(`^id +${id}$`, 'm'));
    expect(get.stdout).toMatch(/^status +succeeded$/m);
    expect(get.stdout).toMatch(/^prompt +a red kite$/m);
    expect(get.stdout).toContain(`output     ${urls[0]}`);
    // --watch on a finished task: its result at once.
    expect(getWatch).toMatchObject({ code: 0, stdout: `${urls[0]}\n`, stderr: '' });
    expect(events.code).toBe(0);
    const lines = events.stdout.trim().split('\n');
    expect(lines.map((l) => Number(l.trim().split(/\s+/)[0]))).toEqual(lines.map((_, i) => i + 1));
    expect(lines[0]).toMatch(/^ *1 +\S+Z +status +queued$/);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`image_response +success ${urls[0]}$`));
    const after = JSON.parse(eventsAfter.stdout) as Array<{ seq: number }>;
    expect(after[0]!.seq).toBe(3);
    expect(after).toHaveLength(lines.length - 2);

    // Watching the finished task off a terminal: its end state, not its history replayed as
    // progress lines (which read as a restart: succeeded 100% / queued / progress 10% …).
    const again = await pyreIn(['watch', id], userEnv);
    expect(again).toMatchObject({
      code: 0,
      stdout: `${urls[0]}\n`,
      stderr: `task ${id} (google/imagen-4-fast) succeeded\nsucceeded 100%\n`,
    });
  });

  test("a failed task: submit and tasks show its error code and message, not the provider's text", async () => {
    env.standin.faults.nextOutcome({ type: 'safety' }, 'google/imagen-4-fast');
    const r = await pyreIn(['submit', '--quiet', '--type', 'image', 'something refused'], userEnv);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pyre: task \S+ failed: content_refused: .*change the prompt/m);
    expect(r.stderr).not.toContain('E005');
    const tasks = await pyreIn(['tasks', '--status', 'failed'], userEnv);
    expect(tasks.code).toBe(0);
    const lines = tasks.stdout.trim().split('\n');
    expect(lines[1]).toMatch(/^\S+\s+failed\s+/);
    expect(lines[2]).toMatch(/^ {2}error: content_refused: the request was refused by the content safety filter/);
  });

  test('cancel of a running task says the cancel is pending and names `pyre watch`, which then ends canceled', async () => {
    const created = await call(`${env.url}/api/tasks`, {
      token: env.token('erin'),
      body: { input_data: { type: 'video', prompt: 'a long film' } },
    });
    const id = created.body.task_id as string;
    await waitFor('processing', async () => (await env.gw.tasks.find(id))?.prediction_id);
    const r = await pyreIn(['cancel', id], userEnv);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`cancel requested; task ${id} .*pyre watch ${id}`));
    const watched = await pyreIn(['watch', id, '--quiet'], userEnv);
    expect(watched).toMatchObject({ code: 1, stderr: `pyre: task ${id} was canceled\n` });
    canceledId = id;
  });

  test('models lists every model by type with the defaults; unknown and malformed ids are said plainly', async () => {
    const [models, missing, malformed, other, again] = await Promise.all([
      pyreIn(['models'], userEnv),
      pyreIn(['get', '00000000-0000-4000-8000-000000000000'], userEnv),
      pyreIn(['watch', 'nope'], userEnv),
      pyreIn(['tasks', '--watch'], userEnv),
      pyreIn(['cancel', canceledId], userEnv),
    ]);
    expect(again).toMatchObject({ code: 0, stderr: `task ${canceledId} had already ended: canceled\n` });
    expect(models.code).toBe(0);
    const rows = models.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^MODEL\s+TYPE\s+DEFAULT\s+PROVIDER MODEL\s+DESCRIPTION$/);
    const { data } = (await call(`${env.url}/api/models`)).body as { data: Array<{ name: string }> };
    expect(rows.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(data.map((m) => m.name));
    expect(rows.find((l) => l.startsWith('gpt-4.1 '))).toMatch(/^gpt-4\.1\s+text\s+yes\s+openai\/gpt-4\.1/);
    // An unknown id is a usage error (2), as the README lists; 1 is for a failed or canceled task.
    expect(missing).toMatchObject({
      code: 2,
      stderr: 'pyre: no task 00000000-0000-4000-8000-000000000000 (see `npx pyre tasks`)\n',
    });
    const watchMissing = await pyreIn(['watch', '00000000-0000-4000-8000-000000000000'], userEnv);
    expect(watchMissing.code).toBe(2);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/"nope" is not a task id/);
    // --watch is a natural guess: where it is not an option, the message names the command.
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/unknown option '--watch' \(to follow a task: npx pyre watch <id>/);
  });
});

describe('pyre watch when the realtime connection is down', () => {
  /** A gateway whose REST answers but whose WebSocket endpoint refuses every upgrade (an outage). */
  let server: http.Server;
  let url: string;
  const id = '11111111-2222-4333-8444-555555555555';

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const task = {
        id,
        task_type: 'video_gen',
        model: 'bytedance/seedance-1-pro',
        status: 'processing',
        progress: 40,
      };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.url === `/api/tasks/${id}` ? { data: task } : { errors: { detail: 'Not Found' } }));
    });
    server.on('upgrade', (_req, socket) => socket.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  test('"reconnecting…" is shown, then it gives up naming `pyre watch <id>`; --timeout names it too', async () => {
    const [lost, timedOut] = await Promise.all([
      pyreIn(['watch', id], { PYRE_URL: url, PYRE_RECONNECT_GIVE_UP_MS: '1000' }),
      pyreIn(['watch', id, '--timeout', '1'], { PYRE_URL: url, PYRE_RECONNECT_GIVE_UP_MS: '60000' }),
    ]);
    expect(lost.code).toBe(69);
    expect(lost.stderr).toMatch(/^reconnecting…$/m);
    expect(lost.stderr).toContain(`lost the realtime connection to ${url}; task ${id} keeps running`);
    expect(lost.stderr).toContain(`pyre watch ${id}`);
    expect(timedOut.code).toBe(124);
    expect(timedOut.stderr).toMatch(/^reconnecting…$/m);
    expect(timedOut.stderr).toContain(
      `did not finish within 1 s; it keeps running (follow it again with \`npx pyre watch ${id}\`)`,
    );
  });
});
