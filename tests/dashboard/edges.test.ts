import fs from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, startDemoGateway, type DemoGateway } from './helpers';

const describeBrowser = fs.existsSync(CHROMIUM) || process.env.CI ? describe : describe.skip;

jest.setTimeout(60_000);

describeBrowser('dashboard edges in headless Chromium', () => {
  let env: DemoGateway;
  let browser: Browser;

  beforeAll(async () => {
    [env, browser] = await Promise.all([
      startDemoGateway({ auth: true }),
      chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    ]);
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  async function signedIn(user: string, viewport = { width: 1280, height: 860 }, ttlSeconds = 600) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${env.url}/`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await page.fill('#token', env.token(user, ttlSeconds));
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#home').waitFor({ state: 'visible' });
    return { context, page, pageErrors };
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
    const { context, page, pageErrors } = await signedIn(user, viewport);
    try {
      const url = `https://example.com/${'very-long-path-segment/'.repeat(20)}?q=${'x'.repeat(200)}`;
      const word = 'w'.repeat(10_000);
      await env.gw.tasks.create(user, { type: 'video', prompt: `See ${url}` });
      await env.gw.tasks.create(user, { type: 'video', prompt: word });
      await page.reload();
      await page.locator('#task-list li.task').nth(1).waitFor();
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      // Every card's Cancel button is inside the window.
      const buttons = page.locator('#task-list li.task button', { hasText: 'Cancel' });
      expect(await buttons.count()).toBe(2);
      for (const b of await buttons.all()) {
        const box = (await b.boundingBox())!;
        expect(box.x + box.width).toBeLessThanOrEqual(viewport.width);
      }
      // And on the task's own page.
      await page.locator('#task-list li.task').first().getByText('Timeline →').click();
      await page.locator('.task-page').waitFor();
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
