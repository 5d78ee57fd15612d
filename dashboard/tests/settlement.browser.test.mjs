// How statements were settled, in the panel and the agency console (issue #24), in headless Chromium through the
// running stack (scripts/browser-test.sh). The texts themselves are unit-tested (settlement.test.mjs); here: where
// they show, that the sections are labelled, keyboard-usable and axe-clean, and (once the seeds carry them) the
// seeded paid and declined statements as the API gives them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { axeViolations, launchBrowser } from './browser.mjs';

import { formatMoney } from '../public/money.js';
import { settlement } from '../public/settlement.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_URL = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
const ARTIFACTS = join(REPO, '.artifacts', 'dashboard');
const AGENCY = 'agency-northwind';
const DECLINING = 'acct-brightside-dental'; // its seeded card declines (scripts/local-stack.sh)
const PAID_ACCOUNT = 'acct-northwind-coffee';

let context;
let page;
let closeBrowser;

const token = (...args) => execFileSync(process.execPath, [join(REPO, 'dev/gateway.mjs'), ...args], { encoding: 'utf8' }).trim();

async function api(bearer, path) {
  const response = await fetch(`${GATEWAY_URL}${path}`, { headers: { authorization: `Bearer ${bearer}` } });
  return { status: response.status, body: await response.json().catch(() => null) };
}

/** The panel signed in as `accountId` (the dev config rewritten on its way in: the gateway's is the default account). */
async function openPanelAs(accountId) {
  const bearer = token('--print-token', accountId);
  await page.route('**/config.json', (route) => route.fulfill({ json: { apiBaseUrl: '', accountId, token: bearer, dev: true } }));
  try {
    await page.goto(`${GATEWAY_URL}/`);
    await page.locator('#statements-state').filter({ hasNotText: 'Loading' }).or(page.locator('#statements-table:visible')).first().waitFor();
  } finally {
    await page.unroute('**/config.json');
  }
  return bearer;
}

/** axe-core's violations inside `selector` on this file's page. */
const axe = (selector) => axeViolations(page, selector);

const at = (days) => new Date(Date.UTC(2026, 11, 1 + days, 9)).toISOString();
const statement = (id, status, extra) => ({
  statementId: id,
  cycleEnd: '2026-12-01T00:00:00.000Z',
  status,
  currency: 'USD',
  lines: [],
  total: '300.00',
  amountPaid: status === 'paid' ? '300.00' : '0.00',
  amountDue: status === 'paid' ? '0.00' : '300.00',
  dueAt: '2027-01-01T12:00:00.000Z',
  purchaseCount: 2,
  createdAt: '2026-12-01T00:05:00.000Z',
  paidAt: null,
  collection: null,
  ...extra,
});
const PAID = statement('st-paid', 'paid', {
  cycleEnd: '2026-11-01T00:00:00.000Z',
  paidAt: at(1),
  collection: { attempt: 1, state: 'succeeded', reason: null, lastAttemptAt: at(1), nextAttemptAt: null },
});
const DECLINED = statement('st-declined', 'payment_failed', {
  collection: { attempt: 1, state: 'failed', reason: 'card_declined', lastAttemptAt: at(1), nextAttemptAt: at(4) },
});

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  ({ context, page, close: closeBrowser } = await launchBrowser('settlement', { viewport: { width: 1100, height: 900 }, bypassCSP: true }));
});

after(async () => {
  await closeBrowser?.();
});

test("the panel lists the client's statements with amount, status and settlement; the held one's shows in the banner", async () => {
  const older = [statement('st-old-1', 'paid', { cycleEnd: '2026-10-01T00:00:00.000Z', paidAt: at(-60) }), statement('st-old-2', 'paid', { cycleEnd: '2026-09-01T00:00:00.000Z' })];
  await page.route('**/accounts/*/statements?*', (route) =>
    route.fulfill({
      json: new URL(route.request().url()).searchParams.has('cursor') ? { statements: older, nextCursor: null } : { statements: [DECLINED, PAID], nextCursor: 'older' },
    }),
  );
  await page.route('**/accounts/*/balances', async (route) => {
    const response = await route.fetch();
    route.fulfill({ response, json: { ...(await response.json()), holdStatementId: DECLINED.statementId } });
  });
  try {
    await openPanelAs(PAID_ACCOUNT);
    const section = page.getByRole('region', { name: 'Your statements' });
    const table = section.getByRole('table', { name: 'Your statements' });
    await table.waitFor();
    assert.deepEqual(
      (await table.getByRole('columnheader').allInnerTexts()).map((t) => t.trim()),
      ['Billing cycle', 'Amount', 'Status', 'Settlement'],
    );
    const declined = page.locator('#statement-st-declined');
    assert.deepEqual((await declined.locator('th, td').allInnerTexts()).map((t) => t.trim()), [
      'Cycle ending Dec 1, 2026',
      '$300.00',
      'Payment failed',
      'Payment failed: your card was declined; we retry on Dec 5, 2026',
    ]);
    assert.equal(await page.locator('#statement-st-paid [data-field="settlement"]').innerText(), 'Charged to your card on Dec 2, 2026');
    // Next to the hold banner: how the held statement is being settled.
    await page.locator('#hold-settlement').waitFor();
    assert.equal(await page.locator('#hold-settlement').innerText(), 'Payment failed: your card was declined; we retry on Dec 5, 2026.');
    assert.match(await page.locator('#hold').innerText(), /^Purchases are on hold/);
    assert.deepEqual(await axe('.statements'), []);
    assert.deepEqual(await axe('#hold'), []);

    // Older statements by keyboard.
    const more = page.getByRole('button', { name: 'Show older statements' });
    await more.focus();
    await page.keyboard.press('Enter');
    await more.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('#statement-rows tr').count(), 4, 'the next page appended');
    assert.equal(await page.locator('#statement-st-old-1 [data-field="settlement"]').innerText(), 'Paid on Oct 2, 2026');
    await page.screenshot({ path: join(ARTIFACTS, 'settlement-panel.png'), fullPage: true });
  } finally {
    await page.unroute('**/accounts/*/statements?*');
    await page.unroute('**/accounts/*/balances');
  }
});

test("the console shows each client's last statement and the agency's statements with their collection", async () => {
  const agencyStatement = statement(`agency-20261201T000000.000Z-${AGENCY}`, 'payment_failed', {
    collection: { attempt: 3, state: 'exhausted', reason: 'card_declined', lastAttemptAt: at(7), nextAttemptAt: null },
  });
  await page.route('**/agencies/*/statements?*', (route) => route.fulfill({ json: { agencyId: AGENCY, statements: [agencyStatement], nextCursor: null } }));
  await page.route('**/agencies/*/clients?*', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    const lasts = [{ ...DECLINED }, { ...PAID }, null];
    body.clients = body.clients.map((client, i) => ({ ...client, lastStatement: lasts[i % lasts.length] }));
    route.fulfill({ response, json: body });
  });
  try {
    await page.goto(`${GATEWAY_URL}/agency.html`);
    await page.locator('body[data-ready="true"]').waitFor();
    const rows = page.locator('#client-rows tr[data-account]');
    assert.ok((await rows.count()) >= 2, 'seeded clients');
    const first = rows.nth(0).locator('[data-field="last-statement"]');
    assert.equal(await first.locator('.badge').innerText(), 'Payment failed');
    assert.equal(await first.locator('[data-field="last-due"]').innerText(), '$300.00 due');
    assert.equal(await first.locator('[data-field="settlement"]').innerText(), settlement(DECLINED).text);
    assert.equal(await rows.nth(1).locator('[data-field="last-statement"] [data-field="settlement"]').innerText(), 'Charged to your card on Dec 2, 2026');
    assert.deepEqual((await rows.nth(1).locator('[data-field="last-statement"]').innerText()).split('\n').map((t) => t.trim()).filter(Boolean), [
      'Paid',
      'Charged to your card on Dec 2, 2026',
    ]);
    assert.ok(await page.getByRole('columnheader', { name: 'Last statement' }).isVisible());
    const own = page.locator(`#statement-rows tr[data-statement="${agencyStatement.statementId}"]`);
    assert.equal(await own.locator('[data-field="status"]').innerText(), 'Payment failed');
    assert.equal(
      await own.locator('[data-field="collection"]').innerText(),
      'Payment failed: your card was declined; no retry is scheduled: pay now to lift the hold',
    );
    assert.deepEqual(await axe('#clients'), []);
    assert.deepEqual(await axe('#statements'), []);
    await page.screenshot({ path: join(ARTIFACTS, 'settlement-console.png'), fullPage: true });
  } finally {
    await page.unroute('**/agencies/*/statements?*');
    await page.unroute('**/agencies/*/clients?*');
  }
});

// The seeded statements (paid ones for the seeded accounts, a declined one holding acct-brightside-dental), as the
// API gives them: the seed loader writes them with SEED_SETTLED_STATEMENTS=1 (the dev stack only: they bill a cycle,
// which the other browser tests' figures do not expect), so on the test command's stack this one is skipped and the
// two tests above, with the same statements written into the answers, stand for it.
test('the seeded paid and declined statements, as the API gives them', async (t) => {
  const declinedToken = token('--print-token', DECLINING);
  const theirs = await api(declinedToken, `/accounts/${DECLINING}/statements?limit=20`);
  assert.equal(theirs.status, 200, JSON.stringify(theirs.body));
  const declined = theirs.body.statements.find((s) => s.status === 'payment_failed' && s.collection?.reason === 'card_declined');
  const paidToken = token('--print-token', PAID_ACCOUNT);
  const ours = await api(paidToken, `/accounts/${PAID_ACCOUNT}/statements?limit=20`);
  const paid = ours.body?.statements?.find((s) => s.status === 'paid' && s.paidAt);
  if (!declined || !paid) return t.skip('no seeded paid and declined statements (seed with SEED_SETTLED_STATEMENTS=1, as scripts/dev.sh does)');

  await openPanelAs(DECLINING);
  const row = page.locator(`#statement-rows tr[data-statement="${declined.statementId}"]`);
  assert.equal(await row.locator('[data-field="settlement"]').innerText(), settlement(declined).text);
  assert.match(settlement(declined).text, /^Payment failed: your card was declined; /);
  assert.equal(await page.locator('#hold-statement').innerText(), declined.statementId);
  assert.equal(await page.locator('#hold-settlement').innerText(), `${settlement(declined).text}.`);
  assert.deepEqual(await axe('.statements'), []);

  await openPanelAs(PAID_ACCOUNT);
  const paidRow = page.locator(`#statement-rows tr[data-statement="${paid.statementId}"]`);
  assert.equal(await paidRow.locator('[data-field="settlement"]').innerText(), settlement(paid).text);
  assert.equal(await paidRow.locator('[data-field="amount"]').innerText(), formatMoney(paid.total));
});
