// Headless Chromium for the browser tests: one fresh profile per test file, closed and removed after it; and
// the axe-core check they run on it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const AXE = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core's violations on `page` inside `selector` (WCAG 2 A/AA rules), one line each. */
export async function axeViolations(page, selector) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(
    (include) => globalThis.axe.run({ include: [include] }, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa'] } }),
    selector,
  );
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/**
 * Launches Chromium with a profile of its own (`name` prefixes its directory) and returns its context, its first
 * page (20 s default timeout, page errors logged) and `close`, which closes it and removes the profile.
 * `bypassCSP`: the pages' CSP (script-src 'self') would refuse the injected axe-core.
 */
export async function launchBrowser(name, { viewport = { width: 1280, height: 900 }, bypassCSP = false } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), `${name}-chromium-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
    bypassCSP,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  const close = async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, page, close };
}
