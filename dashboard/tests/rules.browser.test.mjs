// The panel's "Alerts and auto top-up" (issue #25) in headless Chromium through the running stack
// (scripts/browser-test.sh): rules set, saved, read back and cleared through the real API, each box labelled and its
// error tied to it, keyboard-usable, axe-clean, readable at 375px; the movements naming an auto top-up. The rules'
// texts and checks themselves are unit-tested (rules.test.mjs). Puts the panel account's rules back as it found
// them (none), so the tests after it see the seeded account.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { axeViolations, launchBrowser } from './browser.mjs';

import { formatCents, parseRate, subtotalCents } from '../public/money.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_URL = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
const ARTIFACTS = join(REPO, '.artifacts', 'dashboard');
const ACCOUNT = 'acct-northwind-coffee';
const WARMUP_MS = Number(process.env.WARMUP_TIMEOUT_MS ?? 600_000); // cargo lambda watch builds on first call

let context;
let page;
let closeBrowser;
const bearer = execFileSync(process.execPath, [join(REPO, 'dev/gateway.mjs'), '--print-token', ACCOUNT], { encoding: 'utf8' }).trim();

async function api(path, { method = 'GET', body } = {}) {
  const response = await fetch(`${GATEWAY_URL}/accounts/${ACCOUNT}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** No alerts and no top-up rules on the panel's account (as seeded). */
async function clearRules() {
  assert.equal((await api('/alerts', { method: 'PUT', body: { thresholds: {} } })).status, 200);
  assert.equal((await api('/topups', { method: 'PUT', body: { rules: {} } })).status, 200);
}

/** axe-core's violations inside `selector` on this file's page. */
const axe = (selector) => axeViolations(page, selector);

async function openPanel() {
  await page.goto(`${GATEWAY_URL}/`);
  await page.locator('#topups-today').waitFor({ timeout: WARMUP_MS });
  await page.locator('#price-audience').filter({ hasText: /\$/ }).waitFor();
}

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
const alertBox = (label) => page.getByLabel(`${label}: alert below`, { exact: true });
const topup = (label) => page.getByRole('group', { name: label, exact: true });
const below = (label) => topup(label).getByLabel('When the balance would fall below', { exact: true });
const buy = (label) => topup(label).getByLabel('Buy this many credits', { exact: true });
const status = (part) => page.locator(`#${part}-status`);

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  await clearRules();
  ({ context, page, close: closeBrowser } = await launchBrowser('rules', { viewport: { width: 1100, height: 900 }, bypassCSP: true }));
});

after(async () => {
  await closeBrowser?.();
  await clearRules();
});

test('alerts and top-up rules: set by keyboard, saved, read back after a reload, cleared; prices and costs exact', async () => {
  await openPanel();
  const pricing = (await api('/pricing')).body.prices;
  const price = (type) => pricing.find((p) => p.creditType === type).pricePerCredit;
  const { body: topups } = await api('/topups');
  assert.equal(await page.locator('#topups-today').innerText(), `Auto top-ups: 0 of ${topups.dailyCap} today (UTC).`);
  assert.equal(await page.locator('#topup-cost-audience').innerText(), `At $${price('audience')} per credit.`);

  // Everything by keyboard: type into the boxes, Tab to Save, Enter.
  await alertBox('Audience').focus();
  await page.keyboard.type('100');
  await alertBox('Pixel').fill('20');
  await alertBox('Pixel').focus();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'alerts-save', 'Tab reaches Save after the last box');
  await page.keyboard.press('Enter');
  await status('alerts').filter({ hasText: 'Your alerts are saved. They apply from your next use of credits.' }).waitFor();
  assert.deepEqual((await api('/alerts')).body, { accountId: ACCOUNT, thresholds: { audience: 100, pixel: 20 } });

  await below('Audience').fill('50');
  await buy('Audience').focus();
  await page.keyboard.type('500');
  const cost = formatCents(subtotalCents(500n, parseRate(price('audience'))));
  assert.equal(
    await page.locator('#topup-cost-audience').innerText(),
    `At $${price('audience')} per credit, one top-up of 500 credits costs ${cost}, on Pay Later.`,
  );
  await page.getByRole('button', { name: 'Save auto top-up' }).press('Enter');
  await status('topups').filter({ hasText: 'Your auto top-up rules are saved.' }).waitFor();
  assert.deepEqual((await api('/topups')).body.rules, { audience: { below: 50, buy: 500 } });

  await page.reload();
  await page.locator('#topups-today').waitFor();
  await page.waitForFunction(() => /** @type {HTMLInputElement} */ (document.getElementById('topup-buy-audience')).value === '500');
  assert.equal(await alertBox('Audience').inputValue(), '100');
  assert.equal(await alertBox('Pixel').inputValue(), '20');
  assert.equal(await alertBox('Enrichment').inputValue(), '');
  assert.equal(await below('Audience').inputValue(), '50');
  await shot('rules-01-set');

  // Cleared: every box empty and saved is no rule at all.
  for (const label of ['Audience', 'Pixel']) await alertBox(label).fill('');
  await page.getByRole('button', { name: 'Save alerts' }).click();
  await status('alerts').filter({ hasText: 'saved' }).waitFor();
  await below('Audience').fill('');
  await buy('Audience').fill('');
  await page.getByRole('button', { name: 'Save auto top-up' }).click();
  await status('topups').filter({ hasText: 'saved' }).waitFor();
  assert.deepEqual((await api('/alerts')).body.thresholds, {});
  assert.deepEqual((await api('/topups')).body.rules, {});
});

test('a wrong box is marked, described and focused, and nothing is saved', async () => {
  await openPanel();
  await alertBox('Pixel').fill('0');
  await page.getByRole('button', { name: 'Save alerts' }).click();
  await status('alerts').filter({ hasText: 'Not saved: check the marked box.' }).waitFor();
  const pixel = alertBox('Pixel');
  assert.equal(await pixel.getAttribute('aria-invalid'), 'true');
  assert.ok((await pixel.getAttribute('aria-describedby')).split(' ').includes('err-alert-pixel'));
  assert.equal(await page.locator('#err-alert-pixel').innerText(), 'Enter a number from 1 to 1,000,000.');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'alert-pixel', 'focus on the wrong box');
  // Typing again clears the mark.
  await pixel.fill('3');
  assert.equal(await pixel.getAttribute('aria-invalid'), null);
  await pixel.fill('');

  // A rule with one number: the other box says what is missing.
  await below('Custom Model').fill('5');
  await page.getByRole('button', { name: 'Save auto top-up' }).click();
  await status('topups').filter({ hasText: 'Not saved' }).waitFor();
  assert.equal(await buy('Custom Model').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#err-topup-buy-custom_model').innerText(), 'Enter how many credits to buy, or clear both boxes.');
  assert.deepEqual((await api('/alerts')).body.thresholds, {}, 'nothing was sent');
  assert.deepEqual((await api('/topups')).body.rules, {});

  // The server's own refusal (a box the panel let through) lands on the box it names.
  await page.route('**/accounts/*/topups', (route) =>
    route.request().method() === 'PUT'
      ? route.fulfill({
          status: 400,
          contentType: 'application/problem+json',
          json: { type: 'https://overage-credits.dev/problems/invalid_field', title: 'Invalid field', status: 400, code: 'invalid_field', field: 'rules.custom_model.buy', detail: '`rules.custom_model.buy`: must be a whole number from 1 to 1000000' },
        })
      : route.continue(),
  );
  try {
    await buy('Custom Model').fill('7');
    await page.getByRole('button', { name: 'Save auto top-up' }).click();
    await page.locator('#err-topup-buy-custom_model').filter({ hasText: 'must be a whole number' }).waitFor();
    assert.equal(await buy('Custom Model').getAttribute('aria-invalid'), 'true');
  } finally {
    await page.unroute('**/accounts/*/topups');
  }
  assert.deepEqual(await axe('section.rules'), []);
  await shot('rules-02-errors');
});

test("today's top-ups against the cap, and the movements naming an auto top-up", async () => {
  await page.route('**/accounts/*/topups', async (route) => {
    const response = await route.fetch();
    route.fulfill({ response, json: { ...(await response.json()), dailyCap: 3, topupsToday: 1 } });
  });
  const entry = (id, trigger, createdAt) => ({
    entryId: id,
    type: 'purchase',
    createdAt,
    quantities: { audience: 500 },
    balancesAfter: { audience: 540, enrichment: 0, pixel: 0, custom_model: 0 },
    purchaseId: id,
    trigger,
  });
  await page.route('**/accounts/*/ledger?*', (route) =>
    route.fulfill({
      json: {
        entries: [
          entry('0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c', 'auto_topup', '2026-12-07T10:00:00.000Z'),
          entry('0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 'client', '2026-12-07T09:00:00.000Z'),
        ],
        nextCursor: null,
      },
    }),
  );
  try {
    await openPanel();
    assert.equal(await page.locator('#topups-today').innerText(), 'Auto top-ups: 1 of 3 today (UTC).');
    await page.locator('#ledger-rows tr').first().waitFor();
    const rows = await page.locator('#ledger-rows tr').evaluateAll((trs) =>
      trs.map((tr) => ({ trigger: tr.dataset.trigger ?? null, type: tr.querySelector('.type').textContent, reason: tr.querySelector('.reason').textContent })),
    );
    assert.deepEqual(rows, [
      { trigger: 'auto_topup', type: 'Auto top-up', reason: 'Bought by your auto top-up rule, on Pay Later' },
      { trigger: null, type: 'Purchase', reason: 'Bought on Pay Later' },
    ]);
    assert.deepEqual(await axe('section.ledger'), []);
  } finally {
    await page.unroute('**/accounts/*/topups');
    await page.unroute('**/accounts/*/ledger?*');
  }
});

test('readable at 375px: the rules fit without sideways scrolling', async () => {
  await page.setViewportSize({ width: 375, height: 812 });
  try {
    await openPanel();
    await page.locator('section.rules').scrollIntoViewIfNeeded();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at 375px`);
    const box = await page.getByRole('button', { name: 'Save auto top-up' }).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `Save fits: ${JSON.stringify(box)}`);
    assert.deepEqual(await axe('section.rules'), []);
    await page.locator('section.rules').screenshot({ path: join(ARTIFACTS, 'rules-03-mobile-375.png') });
  } finally {
    await page.setViewportSize({ width: 1100, height: 900 });
  }
});
