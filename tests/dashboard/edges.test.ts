import fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { TaskJson } from '../../src/tasks/task';
import { startGateway, type TestGateway } from '../helpers/gateway';
import { freePort } from '../helpers/net';
import {
  borrow,
  CHROMIUM,
  CHROMIUM_ARGS,
  expectText,
  pauseAnimations,
  startDemoGateway,
  type DemoGateway,
} from './helpers';

const describeBrowser = fs.existsSync(CHROMIUM) || process.env.CI ? describe : describe.skip;

jest.setTimeout(60_000);

describeBrowser('dashboard edges in headless Chromium', () => {
  let env: DemoGateway;
  let browser: Browser;
  let haiku: TaskJson;
  let refused: TaskJson;
  /** The page the tests share, one after the other, unless one needs a context of its own. */
  let shared: Page;

  beforeAll(async () => {
    [env, browser] = await Promise.all([
      // imagen as it is: no progress events (the indeterminate bar is seen on it).
      // No progress bar is watched here: the runner polls as deployed (from 1 s on), not every 100 ms.
      startDemoGateway({ auth: true, imagenBar: false, pollIntervalMs: 1000 }),
      chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    ]);
    // Tasks whose end a test looks at, run while the tests before it do (each takes seconds).
    [haiku, refused] = await Promise.all([
      env.gw.tasks.create('tomas', { type: 'text', prompt: 'Write a haiku about rain' }),
      env.gw.tasks.create('rita', { type: 'image', prompt: '[[unsafe]] a refused picture', aspect_ratio: '16:9' }),
    ]);
    const context = await browser.newContext();
    await pauseAnimations(context);
    shared = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  // The minutes-long videos a test left running are canceled once it is over: followed to the end
  // of the file, their polls and writes cost the run CPU. (The tasks made in beforeAll are let be.)
  afterEach(async () => {
    const live: { id: string; user_id: string }[] = await env.gw
      .db('tasks')
      .whereIn('status', ['queued', 'processing'])
      .whereNotIn('id', [haiku.id, refused.id])
      .select('id', 'user_id');
    await Promise.all(live.map((t) => env.gw.tasks.cancel(t.user_id, t.id).catch(() => {})));
  });

  /**
   * A page signed in as the user: the shared one, or (to prepare the page, e.g. install a clock,
   * or to see the animations run) one in a new context, closed by `release`.
   */
  async function signedIn(
    user: string,
    viewport = { width: 1280, height: 860 },
    ttlSeconds = 600,
    prepare?: (page: Page) => Promise<void>,
    { animations = false } = {},
  ) {
    let tab;
    if (prepare || animations) {
      const context = await browser.newContext({ viewport });
      if (!animations) await pauseAnimations(context);
      tab = { ...(await borrow(await context.newPage(), viewport)), release: () => context.close() };
    } else tab = await borrow(shared, viewport);
    const { page } = tab;
    await prepare?.(page);
    await page.goto(`${env.url}/`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await page.fill('#token', env.token(user, ttlSeconds));
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#home').waitFor({ state: 'visible' });
    return tab;
  }

  /** How far the page is wider than its window (0 or less: it fits). */
  function overflow(page: Page): Promise<number> {
    return page.evaluate(() => {
      const g = globalThis as any; // in the page
      return g.document.documentElement.scrollWidth - g.innerWidth;
    });
  }

  test.each([
    ['a desktop window', 'lena', { width: 1280, height: 860 }],
    ['a phone', 'lars', { width: 390, height: 844 }],
  ])('a prompt with one long unbroken word keeps the layout inside %s', async (_name, user, viewport) => {
    const { page, pageErrors, release } = await signedIn(user, viewport);
    try {
      const url = `https://example.com/${'very-long-path-segment/'.repeat(20)}?q=${'x'.repeat(200)}`;
      const word = 'w'.repeat(10_000);
      await env.gw.tasks.create(user, { type: 'video', prompt: `See ${url}` });
      await env.gw.tasks.create(user, { type: 'video', prompt: word });
      await page.reload();
      await page.locator('#task-list li.task').nth(1).waitFor();
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      // Every card's Cancel button is inside the window (read at once: a card is redrawn when its
      // task starts, so a button found a moment earlier may be gone).
      const rights: number[] = await page.$$eval('#task-list li.task button', (buttons) =>
        buttons.filter((b: any) => b.textContent === 'Cancel').map((b: any) => b.getBoundingClientRect().right),
      );
      expect(rights).toHaveLength(2);
      for (const right of rights) expect(right).toBeLessThanOrEqual(viewport.width);
      // And on the task's own page.
      await page.locator('#task-list li.task').first().getByText('Timeline →').click();
      await page.locator('.task-page').waitFor();
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  /** The card of the task with that prompt. */
  const cardOf = (page: Page, prompt: string) => page.locator('#task-list li.task', { hasText: prompt });

  /** The prompts of the cards shown, top to bottom. */
  const shownPrompts = (page: Page) => page.locator('#task-list li.task .prompt').allTextContents();

  test("a refused token says why, in the API's words", async () => {
    const { page, release } = await borrow(shared, { width: 1280, height: 720 });
    try {
      await page.goto(`${env.url}/`);
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      await page.fill('#token', 'not-a-token');
      await page.click('#sign-in-form button[type=submit]');
      await expectText(page, '#sign-in-error', 'This token is not accepted: token malformed');
    } finally {
      await release();
    }
  });

  test('the list filters by status and searches prompts, through GET /api/tasks, live', async () => {
    const user = 'filip';
    const { page, pageErrors, release } = await signedIn(user);
    try {
      const fox = await env.gw.tasks.create(user, { type: 'video', prompt: 'A red fox in snow' });
      await env.gw.tasks.create(user, { type: 'video', prompt: 'A lighthouse at dusk' });
      const foxes = await env.gw.tasks.create(user, { type: 'video', prompt: 'Two FOXES playing' });
      await env.gw.tasks.cancel(user, fox.id);
      await page.reload();
      await cardOf(page, 'A red fox in snow').waitFor();
      expect(await page.locator('#task-list li.task').count()).toBe(3);
      const asked: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/api/tasks?')) asked.push(new URL(r.url()).search);
      });

      await page.selectOption('#filter-status', 'canceled');
      await poll(() => shownPrompts(page)).toEqual(['A red fox in snow']);
      expect(asked.some((q) => q.includes('status=canceled'))).toBe(true);

      await page.selectOption('#filter-status', '');
      await page.fill('#filter-q', 'fox');
      await poll(() => shownPrompts(page)).toEqual(['Two FOXES playing', 'A red fox in snow']);
      expect(asked.some((q) => q.includes('q=fox') && !q.includes('status='))).toBe(true);

      // Both at once, and nothing matching says so.
      await page.selectOption('#filter-status', 'canceled');
      await poll(() => shownPrompts(page)).toEqual(['A red fox in snow']);
      await page.fill('#filter-q', 'no such prompt');
      await poll(() => shownPrompts(page)).toEqual([]);
      expect(await page.isVisible('#tasks-none-match')).toBe(true);
      expect(await page.isVisible('#tasks-empty')).toBe(false);

      // Live: a task made elsewhere shows up only if it matches; a task that stops matching goes.
      await page.selectOption('#filter-status', '');
      await page.fill('#filter-q', 'fox');
      await poll(() => shownPrompts(page)).toEqual(['Two FOXES playing', 'A red fox in snow']);
      await env.gw.tasks.create(user, { type: 'video', prompt: 'A cat on a wall' });
      await env.gw.tasks.create(user, { type: 'video', prompt: 'A fox at night' });
      await cardOf(page, 'A fox at night').waitFor();
      await page.selectOption('#filter-status', 'processing');
      await env.gw.tasks.create(user, { type: 'video', prompt: 'fox' });
      await poll(() => env.gw.tasks.get(user, foxes.id).then((t) => t.status), { timeout: 15_000 }).toBe('processing');
      await cardOf(page, 'Two FOXES playing').waitFor();
      await env.gw.tasks.cancel(user, foxes.id);
      await cardOf(page, 'Two FOXES playing').waitFor({ state: 'detached' });
      expect(await shownPrompts(page)).not.toContain('A cat on a wall');

      // Cleared: every task again.
      await page.selectOption('#filter-status', '');
      await page.fill('#filter-q', '');
      await poll(() => page.locator('#task-list li.task').count()).toBe(6);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('an image task without progress events shows a moving bar; its image downloads', async () => {
    const user = 'ines';
    // A context of its own, its animations running: the stripe's is looked at.
    const { page, pageErrors, release } = await signedIn(user, undefined, undefined, undefined, { animations: true });
    try {
      await env.gw.tasks.create(user, { type: 'image', prompt: 'A quiet harbour' });
      const card = cardOf(page, 'A quiet harbour');
      await page.locator('#task-list li.task[data-status="processing"]', { hasText: 'A quiet harbour' }).waitFor();
      const bar = card.locator('[role=progressbar]');
      expect(await bar.getAttribute('class')).toContain('indeterminate');
      // Indeterminate: no value to announce, and no "…" in place of one; its stripe moves.
      expect(await bar.getAttribute('aria-valuenow')).toBeNull();
      expect((await bar.textContent())?.trim()).toBe('');
      expect(await bar.locator('span').evaluate((el) => (globalThis as any).getComputedStyle(el).animationName)).toBe(
        'slide',
      );

      await page.locator('#task-list li.task[data-status="succeeded"]', { hasText: 'A quiet harbour' }).waitFor({
        timeout: 20_000,
      });
      const link = card.locator('[data-role=download]');
      expect(await link.count()).toBe(1);
      const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
      const id = (await card.getAttribute('data-task-id'))!;
      expect(download.suggestedFilename()).toMatch(new RegExp(`^pyre-${id.slice(0, 8)}\\.(png|jpg|jpeg|webp)$`));
      const saved = fs.readFileSync((await download.path())!);
      const url = ((await env.gw.tasks.get(user, id)).output as { urls: string[] }).urls[0]!;
      const served = Buffer.from(await (await fetch(new URL(url, env.url))).arrayBuffer());
      expect(saved.length).toBeGreaterThan(0);
      expect(saved.equals(served)).toBe(true);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('a text result has a Copy button that puts it on the clipboard', async () => {
    const user = 'tomas';
    const { page, pageErrors, release } = await signedIn(user);
    try {
      await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.url });
      expect(haiku.input_data.prompt).toBe('Write a haiku about rain');
      const done = page.locator('#task-list li.task[data-status="succeeded"]', { hasText: 'a haiku about rain' });
      await done.waitFor({ timeout: 20_000 });
      const text = await done.locator('[data-role=output]').textContent();
      expect(text!.length).toBeGreaterThan(0);
      await done.locator('[data-role=copy]').click();
      await expectText(page, '#task-list [data-role=copy]', 'Copied');
      expect(await page.evaluate(() => (globalThis as any).navigator.clipboard.readText())).toBe(text);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('Retry on a canceled task; a refused prompt is changed before the retry', async () => {
    const user = 'rita';
    const { page, pageErrors, release } = await signedIn(user);
    try {
      const video = await env.gw.tasks.create(user, { type: 'video', prompt: 'Canceled waves', duration: 3 });
      await env.gw.tasks.cancel(user, video.id);
      const canceled = page.locator('#task-list li.task[data-status="canceled"]', { hasText: 'Canceled waves' });
      await canceled.waitFor();
      await canceled.getByRole('button', { name: 'Retry' }).click();
      await poll(() => cardOf(page, 'Canceled waves').count()).toBe(2);
      const again = (await env.gw.tasks.list(user, { search: 'Canceled waves' })).data.find((t) => t.id !== video.id)!;
      expect(again.input_data).toEqual(video.input_data);

      // The safety filter refused it: the error asks for another prompt, and the retry offers to change it.
      expect((await env.gw.tasks.get(user, refused.id)).id).toBe(refused.id); // rita's task
      const failed = page.locator('#task-list li.task[data-status="failed"]', { hasText: 'a refused picture' });
      await failed.waitFor({ timeout: 20_000 });
      await expectText(page, `#task-list li.task[data-task-id="${refused.id}"] .task-error`, 'content_refused');
      expect(await failed.getByRole('button', { name: 'Retry', exact: true }).count()).toBe(0);
      await failed.locator('[data-role=edit-retry]').click();
      const editor = failed.locator('[data-role=retry-edit] textarea');
      expect(await editor.inputValue()).toBe('[[unsafe]] a refused picture');
      await editor.fill('a harmless picture');
      await failed.locator('[data-role=retry-edit] button[type=submit]').click();
      await cardOf(page, 'a harmless picture').waitFor();
      const retried = (await env.gw.tasks.list(user, { search: 'harmless' })).data;
      expect(retried).toHaveLength(1);
      expect(retried[0]!.input_data).toEqual({ ...refused.input_data, prompt: 'a harmless picture' });
      expect(await failed.locator('[data-role=retry-edit]').count()).toBe(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test("relative times come from the gateway's clock and move together", async () => {
    const user = 'kai';
    // The browser's clock is a minute ahead of the gateway's (the database's).
    const { page, pageErrors, release } = await signedIn(user, undefined, undefined, (p) =>
      p.clock.install({ time: Date.now() + 60_000 }),
    );
    try {
      await env.gw.tasks.create(user, { type: 'video', prompt: 'Older one' });
      await cardOf(page, 'Older one').waitFor();
      await env.gw.tasks.create(user, { type: 'video', prompt: 'Newer one' });
      await cardOf(page, 'Newer one').waitFor();
      const ages = async () =>
        Promise.all(
          ['Newer one', 'Older one'].map(async (p) => (await cardOf(page, p).locator('time').textContent()) ?? ''),
        );
      expect(await ages()).toEqual(['just now', 'just now']);
      // Twenty seconds on: every card says so, from one reading of the clock.
      await page.clock.fastForward(20_000);
      await poll(ages).toEqual([expect.stringMatching(/^\d+ s ago$/), expect.stringMatching(/^\d+ s ago$/)]);
      const [newer, older] = (await ages()).map((t) => Number.parseInt(t, 10));
      expect(newer).toBeGreaterThanOrEqual(20);
      expect(newer).toBeLessThan(40);
      expect(older).toBeGreaterThanOrEqual(newer!);
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  test('a pasted prompt cut at 10,000 characters says so', async () => {
    const { page, pageErrors, release } = await signedIn('paula');
    try {
      await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.url });
      await page.evaluate((t) => (globalThis as any).navigator.clipboard.writeText(t), 'p'.repeat(10_050));
      await page.fill('#prompt', 'Start: ');
      await page.focus('#prompt');
      await page.keyboard.press('ControlOrMeta+V');
      await poll(() => page.inputValue('#prompt').then((v) => v.length)).toBe(10_000);
      await expectText(page, '#prompt-cut', 'The pasted text was cut at 10,000 characters');
      expect(await page.textContent('#prompt-cut')).toContain('the last 57 were left out');
      // Typing on takes the notice away.
      await page.fill('#prompt', 'short');
      await page.locator('#prompt-cut').waitFor({ state: 'hidden' });
      expect(pageErrors).toEqual([]);
    } finally {
      await release();
    }
  });

  describe('in open mode', () => {
    let open: TestGateway;
    let port: number;

    // In this process, on the file's database (no other gateway there is in open mode, nor runs
    // tasks as its user "local").
    beforeAll(async () => {
      port = await freePort();
      open = await startGateway('pglite', { tdb: env.tdb, env: { PORT: String(port) } });
    });
    afterAll(async () => {
      await open?.close();
    });

    test('the phone header shows the user whole', async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
      await pauseAnimations(context);
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      try {
        await page.goto(`${open.url}/`);
        await expectText(page, '#who', 'local (open mode)');
        const who = await page.locator('#who').evaluate((el) => ({
          cut: el.scrollWidth > el.clientWidth,
          right: el.getBoundingClientRect().right,
          text: el.textContent,
        }));
        expect(who).toEqual({ cut: false, right: expect.any(Number), text: 'local (open mode)' });
        expect(who.right).toBeLessThanOrEqual(390);
        expect(await overflow(page)).toBeLessThanOrEqual(0);
      } finally {
        await context.close();
      }
    });

    test('the red banner shows when the gateway goes away after the page loaded, and goes when it is back', async () => {
      const { page, pageErrors, release } = await borrow(shared, { width: 1280, height: 720 });
      try {
        await page.goto(`${open.url}/`);
        await expectText(page, '#conn-label', 'WebSocket');
        expect(await page.locator('.banner').count()).toBe(0);
        await open.close();
        await expectText(page, '.banner', 'the gateway is not reachable');
        expect(await page.getAttribute('.banner', 'role')).toBe('alert');
        open = await startGateway('pglite', { tdb: env.tdb, env: { PORT: String(port) } });
        await page.locator('.banner').waitFor({ state: 'detached', timeout: 20_000 });
        await expectText(page, '#conn-label', 'WebSocket');
        expect(pageErrors).toEqual([]);
      } finally {
        await release();
      }
    });
  });
});

/** Polls `fn` until its value passes the check (as Playwright's expect.poll), for 10 s unless told. */
function poll<T>(fn: () => Promise<T> | T, { timeout = 10_000 } = {}) {
  const run = async (check: (v: T) => void) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = await fn();
      try {
        check(v);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return {
    toEqual: (want: unknown) => run((v) => expect(v).toEqual(want)),
    toBe: (want: unknown) => run((v) => expect(v).toBe(want)),
  };
}
