import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { createGateway, type Gateway } from '../../src/app';
import { silentLogger } from '../../src/log';
import { startStandin, STANDIN_MODELS, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, type TestDb } from '../helpers/db';
import { TEST_SECRET, testConfig } from '../helpers/gateway';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts');

export interface DemoGateway {
  gw: Gateway;
  url: string;
  standin: Standin;
  /** Its database (another gateway of the file may open it too: it is the caller's to close). */
  tdb: TestDb;
  /** A signed token for the user, valid for ttlSeconds (600 unless told). */
  token(user: string, ttlSeconds?: number): string;
  close(): Promise<void>;
}

/**
 * A gateway on a Replicate stand-in in real time, as in demo mode, but with imagen
 * reporting a progress bar in ten steps over its few seconds (so a bar can be seen moving);
 * `imagenBar: false` leaves imagen as it is (no progress, as the real model reports none).
 * Its runner polls a prediction first after 100 ms (`pollIntervalMs`), for the bar.
 */
export async function startDemoGateway(
  opts: { auth?: boolean; env?: Record<string, string>; imagenBar?: boolean; pollIntervalMs?: number } = {},
): Promise<DemoGateway> {
  const imagen = STANDIN_MODELS['google/imagen-4-fast']!;
  const saved = { progress: imagen.progress, steps: imagen.steps, timeline: imagen.timeline };
  if (opts.imagenBar !== false) {
    imagen.progress = 'one-bar';
    imagen.steps = 10;
  }
  imagen.timeline = { queueMs: 300, processingMs: 2500 };
  const standin = await startStandin({ clock: { speed: 1 }, host: '127.0.0.1' });
  const tdb: TestDb = await freshDb('pglite');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-dash-'));
  const config = testConfig({
    REPLICATE_API_TOKEN: standin.token,
    REPLICATE_BASE_URL: standin.url,
    RUNNER_ENABLED: 'true',
    DATA_DIR: dataDir,
    ...(opts.auth ? { AUTH_SECRET: TEST_SECRET } : {}),
    ...opts.env,
  });
  const gw = await createGateway({
    config,
    logger: silentLogger(),
    db: tdb.db,
    // Polled often unless told (a progress bar moves); new work wakes the runner at once (the
    // claim timer, left at its default, is only for work no signal announces: none here).
    runner: { pollIntervalMs: opts.pollIntervalMs ?? 100 },
  });
  const url = await gw.start();
  return {
    gw,
    url,
    standin,
    tdb,
    token: (user, ttlSeconds = 600) => gw.auth.signer!.mint(user, ttlSeconds),
    close: async () => {
      // The tasks still running are let go at once (a deploy's shutdown waits up to 10 s for them).
      await gw.runner.stop(0);
      await gw.close();
      await standin.close();
      await tdb.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      Object.assign(imagen, saved);
    },
  };
}

/**
 * Pauses the page's CSS animations (the moving stripe of an indeterminate bar, the streaming
 * caret) in every page of the context: each animation frame costs Chromium CPU, and a test that
 * does not look at them need not pay it. A test about an animation leaves this out.
 */
export async function pauseAnimations(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const doc = (globalThis as any).document; // in the page
    const style = doc.createElement('style');
    style.textContent = '*, *::before, *::after { animation-play-state: paused !important; }';
    const add = () => (doc.head ?? doc.documentElement).appendChild(style);
    if (doc.documentElement) add();
    else doc.addEventListener('readystatechange', add, { once: true });
  });
}

/**
 * Waits until the first element the CSS selector matches has the text in its textContent (10 s
 * unless told), checked in the page every 50 ms rather than over the protocol.
 */
export async function expectText(page: Page, selector: string, text: string, timeout = 10_000): Promise<void> {
  try {
    await page.waitForFunction(
      ([sel, want]) => ((globalThis as any).document.querySelector(sel)?.textContent ?? '').includes(want),
      [selector, text] as const,
      { polling: 50, timeout },
    );
  } catch (err) {
    const loc = page.locator(selector);
    const got = (await loc.count()) ? ((await loc.first().textContent()) ?? '') : '';
    if (got.includes(text)) return;
    throw new Error(`${selector}: expected text ${JSON.stringify(text)}, got ${JSON.stringify(got)}`, { cause: err });
  }
}

/** A test's use of a page the file's tests share (one renderer for them all, not one each). */
export interface Tab {
  page: Page;
  /** The page's uncaught errors while this test had it. */
  pageErrors: string[];
  /** Hands the page back: this test's listeners and routes are removed, the origin's storage cleared. */
  release(): Promise<void>;
}

/** Lends the shared page to a test, at that window size. */
export async function borrow(page: Page, viewport: { width: number; height: number }): Promise<Tab> {
  await page.setViewportSize(viewport);
  page.setDefaultTimeout(10_000);
  const pageErrors: string[] = [];
  const onError = (e: Error) => pageErrors.push(e.message);
  page.on('pageerror', onError);
  return {
    page,
    pageErrors,
    release: async () => {
      for (const event of ['pageerror', 'console', 'dialog', 'request', 'download'] as const)
        page.removeAllListeners(event);
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      await page
        .evaluate(() => {
          const g = globalThis as any; // in the page
          g.localStorage?.clear();
          g.sessionStorage?.clear();
        })
        .catch(() => {});
    },
  };
}
