// The agency console's overview (issue #25, "The agency, at a glance") in headless Chromium through the running
// stack (scripts/browser-test.sh): the three attention lists and the cycle's chart against GET /overview's numbers,
// a purchase showing in today's bar (and leaving it again when voided), the table fallback by keyboard, a list
// linking to its client's row, axe-clean, and the page at 375 px. The chart's arithmetic is unit-tested
// (chart.test.mjs). The stack's seeds (SEED_SETTLED_STATEMENTS=1) give agency-brightside a held client with a
// declined collection and agency-northwind a client above 80% of its line.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { axeViolations, launchBrowser } from './browser.mjs';

import { chartSummary, signedCents } from '../public/agency/chart.js';
import { formatMoney } from '../public/money.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_URL = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
const ARTIFACTS = join(REPO, '.artifacts', 'dashboard');
const NORTHWIND = 'agency-northwind';
const BRIGHTSIDE = 'agency-brightside';
const CLIENT = 'acct-northwind-coffee';

let context;
let page;
let closeBrowser;
let clientToken;
const tokens = {};

const money = (text) => formatMoney(text) ?? '—';
const printToken = (...args) => execFileSync(process.execPath, [join(REPO, 'dev/gateway.mjs'), ...args], { encoding: 'utf8' }).trim();

async function api(bearer, method, path, body) {
  const response = await fetch(`${GATEWAY_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function overview(agency) {
  const answer = await api(tokens[agency], 'GET', `/agencies/${agency}/overview`);
  assert.equal(answer.status, 200, `GET overview: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** The console signed in as `agency`'s administrator (its config answered here, as the dev gateway's would be). */
async function openConsoleAs(agency) {
  await page.route('**/agency-config.json', (route) => route.fulfill({ json: { apiBaseUrl: '', agencyId: agency, token: tokens[agency], dev: true } }));
  try {
    await page.goto(`${GATEWAY_URL}/agency.html`);
    await page.locator('body[data-ready="true"]').waitFor();
  } finally {
    await page.unroute('**/agency-config.json');
  }
}

/** axe-core's violations inside `selector` on this file's page. */
const axe = (selector) => axeViolations(page, selector);

const listed = (list) => page.locator(`#${list}-list li`).evaluateAll((items) => items.map((li) => /** @type {HTMLElement} */ (li).dataset.account));

/** The lists and the chart as shown equal the API's answer. */
async function assertShows(body) {
  for (const [list, entries] of [['on-hold', body.onHold], ['near-limit', body.nearLimit], ['failed', body.failedCollections]]) {
    assert.equal(await page.locator(`#${list}-count`).innerText(), String(entries.length), `${list} count`);
    assert.deepEqual(await listed(list), entries.map((e) => e.accountId), `${list} clients, in the API's order`);
    assert.equal(await page.locator(`#${list}-empty`).isVisible(), entries.length === 0, `${list}: the empty state only when empty`);
  }
  for (const c of body.nearLimit) {
    assert.match(await page.locator(`#near-limit-list li[data-account="${c.accountId}"]`).innerText(), new RegExp(`${c.usedPercent}% used`));
  }
  for (const c of body.onHold) {
    assert.equal(await page.locator(`#on-hold-list li[data-account="${c.accountId}"] [data-field="due"]`).innerText(), `${money(c.amountDue)} due on its held statement`);
  }
  for (const f of body.failedCollections) {
    const text = await page.locator(`#failed-list li[data-account="${f.accountId}"] [data-field="failure"]`).innerText();
    assert.ok(text.startsWith(`${money(f.amountDue)} due: ${(f.reason ?? 'payment failed').replace(/_/g, ' ')}; `), text);
    assert.match(text, f.nextAttemptAt ? /next attempt/ : /no retry scheduled/);
  }

  const { days, totals } = body.cycle;
  const chart = page.locator('#chart svg[role="img"]');
  assert.equal(await chart.count(), 1, 'one SVG chart with role img');
  const { title, desc } = chartSummary(body.cycle);
  assert.equal(await chart.locator('title').textContent(), title);
  assert.equal(await chart.locator('desc').textContent(), desc);
  assert.equal(await chart.getAttribute('aria-labelledby'), 'chart-title chart-desc');
  const bars = await chart.locator('rect.bar').evaluateAll((rects) => rects.map((r) => [r.getAttribute('data-date'), r.getAttribute('data-total-cents')]));
  assert.deepEqual(bars, days.map((d) => [d.date, String(signedCents(d.total))]), 'one bar per day at the API total');
  const dots = await chart.locator('circle.margin-dot').evaluateAll((cs) => cs.map((c) => c.getAttribute('data-margin-cents')));
  assert.deepEqual(dots, days.map((d) => String(signedCents(d.margin))), 'one margin point per day');
  assert.ok((await chart.locator('text.axis-label').count()) >= 5 + 1, 'visible axis labels');

  // The same numbers in the table fallback.
  const rows = await page.locator('#cycle-rows tr').evaluateAll((trs) =>
    trs.map((tr) => [/** @type {HTMLElement} */ (tr).dataset.date, ...[...tr.querySelectorAll('td')].map((td) => td.textContent)]),
  );
  assert.deepEqual(rows, days.map((d) => [d.date, d.purchases.toLocaleString('en-US'), money(d.total), money(d.totalAtCost), money(d.margin)]));
  const foot = await page.locator('#cycle-totals td').allTextContents();
  assert.deepEqual(foot, [totals.purchases.toLocaleString('en-US'), money(totals.total), money(totals.totalAtCost), money(totals.margin)]);
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const agencyConfig = await (await fetch(`${GATEWAY_URL}/dev/agency-config.json`)).json();
  assert.equal(agencyConfig.agencyId, NORTHWIND);
  tokens[NORTHWIND] = agencyConfig.token;
  tokens[BRIGHTSIDE] = printToken('--print-agency-token', BRIGHTSIDE);
  clientToken = (await (await fetch(`${GATEWAY_URL}/dev/config.json`)).json()).token;
  ({ context, page, close: closeBrowser } = await launchBrowser('overview', { viewport: { width: 1280, height: 900 }, bypassCSP: true }));
});

after(async () => {
  await closeBrowser?.();
});

test("the console opens with what needs attention and the cycle's chart, as the API has them; a purchase shows in today's bar", async () => {
  await openConsoleAs(NORTHWIND);
  const first = await overview(NORTHWIND);
  assert.ok(first.nearLimit.length >= 1, `the seeds leave a northwind client above 80%: ${JSON.stringify(first.nearLimit)}`);
  await assertShows(first);
  // The overview comes first on the page: the attention lists, then the chart, then prices.
  const order = await page.locator('main > section').evaluateAll((s) => s.map((x) => x.id));
  assert.deepEqual(order.slice(0, 3), ['attention', 'cycle', 'prices']);

  // A purchase made now is in today's bar, exactly its total; voided, it leaves it again.
  const today = first.cycle.days.at(-1);
  const bought = await api(clientToken, 'POST', `/accounts/${CLIENT}/credit-purchases`, { quantities: { pixel: 1 } });
  assert.equal(bought.status, 201, JSON.stringify(bought.body));
  try {
    await openConsoleAs(NORTHWIND);
    const second = await overview(NORTHWIND);
    const now = second.cycle.days.at(-1);
    assert.equal(now.date, today.date);
    assert.equal(signedCents(now.total) - signedCents(today.total), signedCents(bought.body.purchase.total));
    assert.equal(now.purchases, today.purchases + 1);
    assert.equal(signedCents(second.cycle.totals.total), second.cycle.days.reduce((sum, d) => sum + signedCents(d.total), 0n), 'totals = the sum of the days');
    await assertShows(second);
    assert.equal(await page.locator(`#chart rect.bar[data-date="${today.date}"]`).getAttribute('data-total-cents'), String(signedCents(now.total)));
  } finally {
    const voided = await api(tokens[NORTHWIND], 'POST', `/agencies/${NORTHWIND}/purchases/${bought.body.purchase.purchaseId}/void`, { accountId: CLIENT, reason: 'overview browser test' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
  }
  const third = await overview(NORTHWIND);
  assert.deepEqual(third.cycle.days.at(-1), today, 'the void took the purchase back out of its day');

  // The table fallback opens from the keyboard.
  await page.locator('#cycle-details summary').focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('#cycle-details').getAttribute('open'), '');
  assert.ok(await page.locator('#cycle-table').isVisible());
  // A client of a list links to its row in the clients table.
  const near = first.nearLimit[0].accountId;
  await page.locator(`#near-limit-list li[data-account="${near}"] a`).click();
  await page.waitForFunction((id) => document.activeElement?.id === `client-${id}`, near);
  assert.ok(await page.locator(`#client-${near}`).evaluate((tr) => tr.classList.contains('highlight')));
  assert.deepEqual(await axe('#attention'), []);
  assert.deepEqual(await axe('#cycle'), []);
  await page.screenshot({ path: join(ARTIFACTS, 'overview-01-northwind.png'), fullPage: false });
});

test('a held client and its failed collection show with amount, reason and next attempt; axe-clean with full lists', async () => {
  await openConsoleAs(BRIGHTSIDE);
  const body = await overview(BRIGHTSIDE);
  assert.ok(body.onHold.length >= 1 && body.failedCollections.length >= 1, `the seeds decline a brightside client: ${JSON.stringify(body)}`);
  await assertShows(body);
  assert.deepEqual(await axe('#attention'), []);
  assert.deepEqual(await axe('#cycle'), []);
  await page.screenshot({ path: join(ARTIFACTS, 'overview-02-brightside.png'), fullPage: false });
});

test('at 375 px the overview fits: no sideways scrolling, the chart scales to the screen', async () => {
  await page.setViewportSize({ width: 375, height: 800 });
  try {
    await openConsoleAs(BRIGHTSIDE);
    const widths = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      chart: document.querySelector('#chart svg')?.getBoundingClientRect().width ?? 0,
      lists: Math.max(...[...document.querySelectorAll('.attention-list')].map((l) => l.getBoundingClientRect().right)),
    }));
    assert.ok(widths.page <= 375, `the page is ${widths.page}px wide`);
    assert.ok(widths.chart > 250 && widths.chart <= 375, `the chart is ${widths.chart}px wide`);
    assert.ok(widths.lists <= 375, `the lists reach ${widths.lists}px`);
    assert.deepEqual(await axe('#attention'), []);
    await page.screenshot({ path: join(ARTIFACTS, 'overview-03-375px.png'), fullPage: false });
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});
