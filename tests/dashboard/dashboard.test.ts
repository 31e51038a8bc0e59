import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import {
  ARTIFACTS,
  borrow,
  CHROMIUM,
  CHROMIUM_ARGS,
  expectText,
  pauseAnimations,
  startDemoGateway,
  type DemoGateway,
} from './helpers';

const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium && !process.env.CI) {
  // A developer machine without it skips, saying so. CI installs Debian's chromium (.ci/run), and
  // there a missing browser fails these tests rather than passing them unseen.
  console.warn(`dashboard browser tests SKIPPED: ${CHROMIUM} is missing (apt-get install -y chromium)`);
}
const describeBrowser = haveChromium || process.env.CI ? describe : describe.skip;

jest.setTimeout(60_000);

describeBrowser('dashboard in headless Chromium', () => {
  let env: DemoGateway;
  let browser: Browser;
  /** The page the desktop-sized tests share, one after the other (each a renderer less to start). */
  let shared: Page;
  let sharedContext: BrowserContext;

  beforeAll(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    [env, browser] = await Promise.all([
      // A user's tasks run two at a time, so that the rest of a user's wait queued (the task-count test).
      startDemoGateway({ auth: true, env: { RUNNER_USER_CONCURRENCY: '2' } }),
      chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    ]);
    sharedContext = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    await pauseAnimations(sharedContext);
    shared = await sharedContext.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  /**
   * Signs in with a token, then submits an image task (with `transport`, only once connected over
   * it); returns the new task's card.
   */
  async function signInAndSubmit(page: Page, user: string, prompt: string, transport?: 'long-poll') {
    page.setDefaultTimeout(10_000);
    await page.goto(`${env.url}/?debug`);
    page.on('console', (m) => {
      if (process.env.DEBUG_DASH) console.log(m.text());
    });
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await expectText(page, '#sign-in h1', 'Sign in');
    await page.fill('#token', 'not-a-token');
    await page.click('#sign-in-form button[type=submit]');
    await expectText(page, '#sign-in-error', 'not accepted');

    await page.fill('#token', env.token(user));
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#home').waitFor({ state: 'visible' });
    await expectText(page, '#who', user);

    // The form comes from GET /api/models, with the model's limits.
    await page.click('label[for=type-image]');
    expect(await page.inputValue('#model')).toBe('google/imagen-4-fast');
    await page.selectOption('#model', 'bytedance/seedream-3');
    await expectText(page, '[data-param="width"] .hint', '512 – 2048');
    await page.selectOption('#model', 'google/imagen-4-fast');
    await expectText(page, '[data-param="aspect_ratio"] .hint', 'default "1:1"');
    await page.click('#params-box summary');
    await page.selectOption('#param-aspect_ratio', '16:9');

    // Submitted only once the socket is up over the transport under test, so that the whole run
    // of the task is seen over it (not replayed at once after a late fallback).
    if (transport) await expectText(page, '#conn-label', transport);
    await page.fill('#prompt', prompt);
    await page.click('#submit');
    const card = page.locator('#task-list li.task', { hasText: prompt });
    await card.waitFor({ state: 'visible', timeout: 10_000 });
    return card;
  }

  /**
   * Records every value the card's progress bar shows (a MutationObserver in the page sees each
   * one as it is drawn, none is missed between two looks) until the image appears; returns them.
   */
  async function watchUntilImage(page: Page, prompt: string): Promise<number[]> {
    await page.evaluate((p) => {
      const g = globalThis as any; // in the page
      const doc = g.document;
      const watch = { seen: [] as number[], state: null as any, look: () => {} };
      watch.look = () => {
        const li = [...doc.querySelectorAll('#task-list li.task')].find(
          (el: any) => el.querySelector('.prompt')?.textContent === p,
        );
        if (!li) return (watch.state = null);
        const bar = li.querySelector('[role=progressbar]');
        const img = li.querySelector('[data-role=output] img');
        const state = {
          progress: bar ? Number(bar.getAttribute('aria-valuenow')) : null,
          status: li.dataset.status,
          loaded: Boolean(img && img.complete && img.naturalWidth > 0),
        };
        if (state.progress !== null && watch.seen[watch.seen.length - 1] !== state.progress)
          watch.seen.push(state.progress);
        return (watch.state = state);
      };
      (g.pyreWatch ??= {})[p] = watch;
      new g.MutationObserver(watch.look).observe(doc.body, {
        subtree: true,
        childList: true,
        attributes: true,
        characterData: true,
      });
      watch.look();
    }, prompt);
    const ended = page.waitForFunction(
      (p) => {
        const watch = (globalThis as any).pyreWatch[p]; // in the page
        const state = watch.look(); // (an image's loading ends with no change to the document)
        return Boolean(
          state && ((state.loaded && state.status === 'succeeded') || /^(failed|canceled)$/.test(state.status)),
        );
      },
      prompt,
      { polling: 50, timeout: 30_000 },
    );
    const done = await ended.then(
      () => true,
      () => false,
    );
    const { seen, state } = await page.evaluate((p) => {
      const watch = (globalThis as any).pyreWatch[p]; // in the page
      return { seen: watch.seen as number[], state: watch.state };
    }, prompt);
    if (state?.status === 'failed' || state?.status === 'canceled') throw new Error(`task ${state.status}`);
    if (!done)
      throw new Error(
        `no image after 30 s; progress seen ${seen.join(',')}; card ${JSON.stringify(state)}; ` +
          `connection ${await page.textContent('#conn-label')}; ` +
          `db ${JSON.stringify(await env.gw.db('tasks').select('status', 'attempts', 'error', 'user_id'))}; ` +
          `events ${JSON.stringify(await env.gw.db('task_events').select('seq', 'event'))}`,
      );
    return seen;
  }

  function expectMoved(seen: number[]): void {
    // The bar moved through values between empty and full, never backwards, and ended full.
    expect(seen.filter((v) => v > 0 && v < 100).length).toBeGreaterThanOrEqual(2);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(seen[seen.length - 1]).toBe(100);
  }

  test('signs in, submits an image task, watches the bar move and the image appear (WebSocket)', async () => {
    const { page, pageErrors, release } = await borrow(shared, { width: 1280, height: 860 });
    try {
      const prompt = 'A lighthouse at dusk, oil painting';
      await signInAndSubmit(page, 'alice', prompt);
      await expectText(page, '#conn-label', 'WebSocket');
      const seen = await watchUntilImage(page, prompt);
      expectMoved(seen);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-websocket.png'), fullPage: true });

      // The task's page: its stored timeline, every event naming it, seqs 1..n.
      await page.locator('#task-list li.task', { hasText: prompt }).getByText('Timeline →').click();
      await page.locator('.timeline tbody tr').first().waitFor();
      await expectText(page, '.task-page [data-role=status]', 'succeeded');
      const rows = await page.$$eval('.timeline tbody tr', (trs) =>
        trs.map((tr: any) => ({
          seq: Number(tr.dataset.seq),
          event: tr.dataset.event as string,
          bad: tr.classList.contains('bad') as boolean,
        })),
      );
      expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
      expect(rows.some((r) => r.bad)).toBe(false);
      expect(rows.map((r) => r.event)).toEqual(expect.arrayContaining(['status', 'progress', 'image_response']));
      expect(await page.locator('.task-page [data-role=output] img').count()).toBe(1);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-task-page.png'), fullPage: true });

      // Back to the list: a video (minutes long on this stand-in) is canceled from its card.
      await page.click('a.back');
      const imageCard = await page.locator('#task-list li.task', { hasText: prompt }).elementHandle();
      const image = await page.locator('#task-list li.task', { hasText: prompt }).locator('img').elementHandle();
      await page.click('label[for=type-video]');
      expect(await page.inputValue('#model')).toBe('bytedance/seedance-1-pro');
      await page.fill('#prompt', 'Waves on a beach at night');
      await page.click('#submit');
      const video = page.locator('#task-list li.task', { hasText: 'Waves on a beach at night' });
      await video.waitFor();
      // The new card went above the others, which were left as they were: the image card and its
      // image are the same elements as before (a playing video would not restart).
      expect(await page.locator('#task-list li.task').first().textContent()).toContain('Waves on a beach at night');
      expect(await imageCard!.evaluate((el: any) => el.isConnected && el.parentNode.children[1] === el)).toBe(true);
      expect(await image!.evaluate((el: any) => el.isConnected)).toBe(true);

      // A cancel that fails says so in the card, with no dialog; the next try works and clears it.
      const dialogs: string[] = [];
      page.on('dialog', (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      await page.route('**/api/tasks/*/cancel', (r) => r.abort('connectionrefused'));
      await video.getByRole('button', { name: 'Cancel' }).click();
      await expectText(
        page,
        '#task-list li.task [data-role=action-error]',
        'Could not cancel: the gateway is not reachable',
      );
      expect(await video.getAttribute('data-status')).not.toBe('canceled');
      await page.unroute('**/api/tasks/*/cancel');
      await video.getByRole('button', { name: 'Cancel' }).click();
      await page
        .locator('#task-list li.task[data-status="canceled"]', { hasText: 'Waves on a beach at night' })
        .waitFor();
      await expectText(page, '#task-list li.task[data-status="canceled"] .task-error', 'Canceled');
      expect(await page.locator('#task-list [data-role=action-error]').count()).toBe(0);
      expect(dialogs).toEqual([]);
      expect(await imageCard!.evaluate((el: any) => el.isConnected)).toBe(true);
      const canceled = (await env.gw.tasks.list('alice', { status: 'canceled' })).data;
      expect(canceled.map((t) => t.input_data.prompt)).toEqual(['Waves on a beach at night']);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('does the same on a phone-sized screen with the WebSocket blocked, over long-poll', async () => {
    // A context of its own: a phone's (touch, mobile viewport), and its WebSocket routed.
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await pauseAnimations(context);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // As a proxy that lets the upgrade through but never passes a frame: the WebSocket opens,
    // phoenix.js's first heartbeat gets no answer, and it falls back to long-poll.
    const wsTries: string[] = [];
    await page.routeWebSocket(/\/socket\/websocket/, (ws) => {
      wsTries.push(ws.url());
    });
    try {
      const before = env.gw.realtime.stats().transports.longpoll!.sessions;
      const prompt = 'A red fox in fresh snow';
      await signInAndSubmit(page, 'bob', prompt, 'long-poll');
      expect(wsTries.length).toBeGreaterThanOrEqual(1);
      expect(env.gw.realtime.stats().transports.longpoll!.sessions).toBeGreaterThan(before);
      const seen = await watchUntilImage(page, prompt);
      expectMoved(seen);
      // Laid out for the phone: nothing wider than the screen.
      const overflow = await page.evaluate(() => {
        const g = globalThis as any; // in the page
        return g.document.documentElement.scrollWidth - g.innerWidth;
      });
      expect(overflow).toBeLessThanOrEqual(0);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-longpoll-phone.png'), fullPage: true });
      // Bob sees only his own task.
      expect(await page.locator('#task-list li.task').count()).toBe(1);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  /** The shared page signed in as the user (with a token of that many seconds), at the home screen. */
  async function signedIn(
    user: string,
    opts: { ttlSeconds?: number; viewport?: { width: number; height: number } } = {},
  ) {
    const gw = env;
    const { page, pageErrors, release } = await borrow(shared, opts.viewport ?? { width: 1280, height: 860 });
    page.on('console', (m) => {
      if (process.env.DEBUG_DASH) console.log(m.text());
    });
    await page.goto(`${gw.url}/`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await page.fill('#token', gw.token(user, opts.ttlSeconds));
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#home').waitFor({ state: 'visible' });
    await expectText(page, '#conn-label', 'WebSocket');
    return { page, pageErrors, release };
  }

  test('an expired token sends the user back to sign in, keeping what they typed', async () => {
    // Tokens of 4 s: long enough for the page to connect before expiry on a loaded machine.
    const { page, pageErrors, release } = await signedIn('erin', { ttlSeconds: 4 });
    try {
      await expectText(page, '#who', 'erin');
      expect(await page.isVisible('#sign-out')).toBe(true);
      await page.fill('#prompt', 'Typed before the token expired');
      // At the token's expiry the gateway closes the socket (1008 "token expired"): the page goes
      // back to sign in by itself, before anything is clicked.
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      await expectText(page, '#sign-in-error', 'your token expired, sign in again');
      expect(await page.isVisible('#home')).toBe(false);
      expect(await page.textContent('#conn-label')).toBe('offline');
      expect(await page.evaluate(() => (globalThis as any).localStorage.getItem('pyre.token'))).toBeNull();
      // After the token expires the header no longer shows the user, nor "Sign out".
      expect(await page.textContent('#who')).toBe('');
      expect(await page.isVisible('#sign-out')).toBe(false);

      // Signed in again: the form has what was typed, and works.
      await page.fill('#token', env.token('erin'));
      await page.click('#sign-in-form button[type=submit]');
      await page.locator('#home').waitFor({ state: 'visible' });
      expect(await page.inputValue('#prompt')).toBe('Typed before the token expired');
      expect(await page.locator('#type-picker input').count()).toBe(3); // the form was not built twice
      await expectText(page, '#who', 'erin');
      expect(await page.isVisible('#sign-out')).toBe(true);
      await expectText(page, '#conn-label', 'WebSocket');
      await page.click('#submit');
      await page.locator('#task-list li.task', { hasText: 'Typed before the token expired' }).waitFor();
      expect(await page.isHidden('#form-error')).toBe(true);

      // Over long-poll too: the session ends at expiry, the reconnect is refused, and the page
      // goes back to sign in.
      const short = env.token('erin', 4);
      await page.evaluate((t) => (globalThis as any).localStorage.setItem('pyre.token', t), short);
      await page.goto(`${env.url}/?transport=longpoll`);
      await expectText(page, '#conn-label', 'long-poll');
      await expectText(page, '#who', 'erin');
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      await expectText(page, '#sign-in-error', 'your token expired, sign in again');
      expect(await page.textContent('#who')).toBe('');
      expect(await page.isVisible('#sign-out')).toBe(false);
      expect(await page.textContent('#conn-label')).toBe('offline');
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('a task page shows the task completing, and an unknown id shows only "No such task."', async () => {
    const { page, pageErrors, release } = await signedIn('frank');
    // The image takes 6 s here, not 2.5: on a loaded machine the task page could come up after it ended.
    env.standin.faults.apply({ timelines: { 'google/imagen-4-fast': { processingMs: 6000 } } });
    try {
      await page.fill('#prompt', 'A task page watched live');
      await page.click('#submit');
      const card = page.locator('#task-list li.task', { hasText: 'A task page watched live' });
      await card.getByText('Timeline →').click();
      await page.locator('.task-page').waitFor();
      expect(await page.textContent('.task-page [data-role=status]')).not.toBe('succeeded');
      await expectText(page, '.task-page [data-role=status]', 'succeeded', 20_000);
      await expectText(page, '.task-page .facts', 'completed');
      const id = await page.getAttribute('.task-page', 'data-task-id');
      const stored = await env.gw.tasks.get('frank', id!);
      expect(stored.status).toBe('succeeded');

      await page.goto(`${env.url}/#/tasks/00000000-0000-4000-8000-000000000000`);
      await expectText(page, '#task-page', 'No such task.');
      expect(await page.locator('#task-page .timeline-card').count()).toBe(0);
      expect(await page.locator('#task-page').textContent()).not.toContain('Event timeline');
      expect(pageErrors).toEqual([]);
    } finally {
      env.standin.faults.reset();
      await release();
    }
  });

  test('a task page opened while the gateway is unreachable says so, and loads once it is back', async () => {
    const { page, pageErrors, release } = await signedIn('frank');
    try {
      const task = await env.gw.tasks.create('frank', { type: 'image', prompt: 'Loaded after an outage' });
      await page.route(`**/api/tasks/${task.id}**`, (r) => r.abort('connectionrefused'));
      await page.goto(`${env.url}/#/tasks/${task.id}`);
      await expectText(page, '#task-page', 'the gateway is not reachable; retrying');
      expect(await page.locator('#task-page').textContent()).not.toContain('Failed to fetch');
      await page.unroute(`**/api/tasks/${task.id}**`);
      await page.locator('.timeline tbody tr').first().waitFor();
      await expectText(page, '.task-page .prompt-full', 'Loaded after an outage');

      // A submit that cannot reach the gateway says so in words.
      await page.goto(`${env.url}/#/`);
      await page.route('**/api/tasks', (r) =>
        r.request().method() === 'POST' ? r.abort('connectionrefused') : r.continue(),
      );
      await page.fill('#prompt', 'Never sent');
      await page.click('#submit');
      await expectText(page, '#form-error', 'the gateway is not reachable');
      expect(await page.textContent('#form-error')).not.toContain('Failed to fetch');

      // A page loaded while the gateway is unreachable: the red banner says so, and goes once it is back.
      await page.unroute('**/api/tasks');
      await page.route('**/api/session', (r) => r.abort('connectionrefused'));
      await page.reload();
      await expectText(page, '.banner', 'the gateway is not reachable');
      await page.unroute('**/api/session');
      await page.locator('#home').waitFor({ state: 'visible' });
      await page.locator('.banner').waitFor({ state: 'detached' });
      await expectText(page, '#who', 'frank');
      await expectText(page, '#conn-label', 'WebSocket');
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('list parameters are one URL per line, and their errors show under the field', async () => {
    const { page, pageErrors, release } = await signedIn('gina');
    try {
      await page.click('label[for=type-text]');
      await page.click('#params-box summary');
      await expectText(page, '[data-param="images"] .hint', 'one URL per line');
      const bodies: any[] = [];
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.url().endsWith('/api/tasks')) bodies.push(r.postDataJSON());
      });
      await page.fill('#prompt', 'Describe these');
      await page.fill('#param-images', 'not a url\n\n  https://example.com/b.png  \n');
      await page.click('#submit');
      await expectText(page, '[data-error-for="images"]', 'line 1: must be an http(s) URL');
      expect(await page.isHidden('#form-error')).toBe(true);
      expect(bodies.map((b) => b.input_data.images)).toEqual([['not a url', 'https://example.com/b.png']]);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('text a failed task streamed is shown, labelled, live and after a reload', async () => {
    const { page, pageErrors, release } = await signedIn('hana');
    try {
      await page.click('label[for=type-text]');
      await page.fill('#prompt', '[[fail]] a story cut short');
      await page.click('#submit');
      const failed = page.locator('#task-list li.task[data-status="failed"]', { hasText: 'a story cut short' });
      await failed.waitFor({ timeout: 30_000 });
      const live = await failed.locator('[data-role=partial-output]').textContent();
      expect(live).toContain('partial output before the failure');
      await page.reload();
      await failed.locator('[data-role=partial-output]').waitFor();
      expect(await failed.locator('[data-role=partial-output]').textContent()).toBe(live);

      // Its timeline: the text deltas, one after the other, share one row (not one row per token).
      const id = (await failed.getAttribute('data-task-id'))!;
      const deltas: { seq: number; payload: any }[] = await env.gw
        .db('task_events')
        .where({ task_id: id, event: 'text_delta' })
        .orderBy('seq')
        .select('seq', 'payload');
      expect(deltas.length).toBeGreaterThan(1);
      await failed.getByText('Timeline →').click();
      await page.locator('.timeline tbody tr[data-event="text_response"]').waitFor();
      const grouped = page.locator('.timeline tbody tr[data-event="text_delta"]');
      expect(await grouped.count()).toBe(1);
      expect(await grouped.getAttribute('data-seq')).toBe(String(deltas[0]!.seq));
      expect(await grouped.getAttribute('data-seq-last')).toBe(String(deltas[deltas.length - 1]!.seq));
      expect(await grouped.getAttribute('data-count')).toBe(String(deltas.length));
      const text = deltas
        .map((d) => (typeof d.payload === 'string' ? JSON.parse(d.payload) : d.payload).delta)
        .join('');
      expect(await grouped.locator('td.details').textContent()).toBe(JSON.stringify(text));
      expect(await page.locator('.timeline tbody tr.bad').count()).toBe(0);

      // Retry makes a new task with the same input, shown above the failed one.
      await page.click('a.back');
      await failed.getByRole('button', { name: 'Retry' }).click();
      await page.locator('#task-list li.task', { hasText: 'a story cut short' }).nth(1).waitFor();
      const rows = await env.gw
        .db('tasks')
        .where({ user_id: 'hana' })
        .orderBy('inserted_at')
        .select('id', 'input_data');
      expect(rows).toHaveLength(2);
      expect(rows[1].input_data).toEqual(rows[0].input_data);
      expect(await page.locator('#task-list li.task').first().getAttribute('data-task-id')).toBe(rows[1].id);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('the timeline fits a phone-sized screen', async () => {
    const { page, pageErrors, release } = await signedIn('judy', { viewport: { width: 390, height: 844 } });
    try {
      await page.fill('#prompt', 'A timeline on a phone');
      await page.click('#submit');
      const card = page.locator('#task-list li.task[data-status="succeeded"]', { hasText: 'A timeline on a phone' });
      await card.waitFor({ timeout: 30_000 });
      await card.getByText('Timeline →').click();
      await page.locator('.timeline tbody tr[data-event="image_response"]').waitFor();
      const fit = await page.evaluate(() => {
        const g = globalThis as any; // in the page
        const wrap = g.document.querySelector('.table-wrap');
        const details = [...g.document.querySelectorAll('.timeline td.details')].map(
          (td: any) => td.getBoundingClientRect().width,
        );
        return {
          page: g.document.documentElement.scrollWidth - g.innerWidth,
          wrap: wrap.scrollWidth - wrap.clientWidth,
          narrowest: Math.min(...details),
        };
      });
      expect(fit.page).toBeLessThanOrEqual(0);
      expect(fit.wrap).toBeLessThanOrEqual(0);
      expect(fit.narrowest).toBeGreaterThan(250); // a URL wraps in lines, not a letter per line
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone-timeline.png'), fullPage: true });
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  // Last: its 55 videos keep the user's two slots busy until the file's gateway closes.
  test('the task count tells running from queued; older tasks load on demand (next_cursor)', async () => {
    // The gateway runs a user's tasks two at a time (RUNNER_USER_CONCURRENCY), so that the rest wait queued.
    for (let i = 1; i <= 55; i++) await env.gw.tasks.create('ivan', { type: 'video', prompt: `Video number ${i}` });
    const { page, pageErrors, release } = await signedIn('ivan');
    try {
      expect(await page.locator('#task-list li.task').count()).toBe(50);
      const oldest = page.locator('#task-list li.task .prompt', { hasText: /^Video number 1$/ });
      expect(await oldest.count()).toBe(0);
      await page.click('#load-older');
      await oldest.waitFor();
      expect(await page.locator('#task-list li.task').count()).toBe(55);
      expect(await page.isHidden('#load-older')).toBe(true);
      // Every task is loaded now: the note agrees with the database.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const rows: { status: string }[] = await env.gw.db('tasks').where({ user_id: 'ivan' }).select('status');
        const running = rows.filter((r) => r.status === 'processing').length;
        const queued = rows.filter((r) => r.status === 'queued').length;
        const want = [running ? `${running} running` : '', queued ? `${queued} queued` : '']
          .filter(Boolean)
          .join(' · ');
        const got = await page.textContent('#tasks-note');
        if (got === want && running === 2) break;
        if (Date.now() > deadline)
          throw new Error(`note ${JSON.stringify(got)}, database ${running} processing and ${queued} queued`);
        await page.waitForTimeout(100);
      }
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });
});
