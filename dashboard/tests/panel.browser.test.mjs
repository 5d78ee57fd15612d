// End-to-end test of the panel in Debian's Chromium, through the dev gateway, against the seeded functions.
//
// Needs: a running gateway at GATEWAY_URL (default http://127.0.0.1:3000) in front of `cargo lambda watch`,
// and TABLE_NAME + AWS_ENDPOINT_URL_DYNAMODB naming the seeded local table (the test changes a price with
// the seed loader and restores the seeds afterwards). Screenshots go to .artifacts/dashboard/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { decimalToCents, formatCents } from '../public/money.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_URL = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO, '.artifacts', 'dashboard');
const WARMUP_MS = Number(process.env.WARMUP_TIMEOUT_MS ?? 600_000); // cargo lambda watch builds on first call
const ACCOUNT = 'acct-northwind-coffee';
const SEEDED = { audience: '$25.00', enrichment: '$0.75', pixel: '$10.00', custom_model: '$120.00' };
const LABELS = { audience: 'Audience', enrichment: 'Enrichment', pixel: 'Pixel', custom_model: 'Custom Model' };
const CHANGED_AUDIENCE_PRICE = '26.50';
const LEDGER_ROWS = 5;
// Where `cargo lambda watch` serves the functions (scripts/local-stack.sh exports it); the consumption test needs it.
const LAMBDA_INVOKE_URL = process.env.LAMBDA_INVOKE_URL?.replace(/\/$/, '');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let context;
let page;
let token;
let userDataDir;
let workDir;
let seedsTouched = false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(path) {
  const response = await fetch(`${GATEWAY_URL}/accounts/${ACCOUNT}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function storedBalances() {
  const { status, body } = await api('/balances');
  assert.equal(status, 200, 'GET /balances through the gateway');
  return body.balances;
}

/** The account's pay-later line as the balances route gives it. */
async function storedLine() {
  const { status, body } = await api('/balances');
  assert.equal(status, 200, 'GET /balances through the gateway');
  assert.ok(body.creditLine, 'the seeded account has a pay-later line');
  return body.creditLine;
}

/** The account's newest ledger entries, as GET /ledger gives them. */
async function storedLedger(limit = LEDGER_ROWS) {
  const { status, body } = await api(`/ledger?limit=${limit}`);
  assert.equal(status, 200, 'GET /ledger through the gateway');
  return body.entries;
}

/** The credit types an entry moved, in the panel's order. */
const moved = (entry) => Object.keys(LABELS).filter((type) => (entry.quantities[type] ?? 0) !== 0);
/** "+1 Audience, −2 Pixel": a true minus sign, thousands grouped. */
const changeText = (entry) =>
  moved(entry)
    .map((type) => {
      const q = entry.quantities[type];
      return `${q > 0 ? '+' : '\u2212'}${Math.abs(q).toLocaleString('en-US')} ${LABELS[type]}`;
    })
    .join(', ');
const afterText = (entry) =>
  moved(entry).map((type) => `${LABELS[type]} ${entry.balancesAfter[type].toLocaleString('en-US')}`).join(', ');

/** What the ledger table shows, one object per row. */
function shownLedger() {
  return page.locator('#ledger-rows tr').evaluateAll((rows) =>
    rows.map((tr) => ({
      entryId: tr.dataset.entryId,
      type: tr.dataset.type,
      createdAt: tr.querySelector('time').getAttribute('datetime'),
      typeText: tr.querySelector('.type').textContent,
      change: tr.querySelector('.change').textContent,
      reason: tr.querySelector('.reason').textContent,
      after: tr.querySelector('.after').textContent,
    })),
  );
}

/** Waits until the ledger shows what GET /ledger holds now (the empty state when it holds nothing). */
async function ledgerMatchesStore() {
  const entries = await storedLedger();
  if (!entries.length) {
    await page.locator('#ledger-state').filter({ hasText: /^No credit movements yet\.$/ }).waitFor();
    assert.ok(await page.locator('#ledger-table').isHidden(), 'no table without entries');
    return entries;
  }
  await page.locator(`#ledger-rows tr[data-entry-id="${entries[0].entryId}"]`).first().waitFor();
  const shown = await shownLedger();
  assert.deepEqual(
    shown.map(({ entryId, type, createdAt, change, after }) => ({ entryId, type, createdAt, change, after })),
    entries.map((e) => ({ entryId: e.entryId, type: e.type, createdAt: e.createdAt, change: changeText(e), after: afterText(e) })),
  );
  assert.ok(await page.locator('#ledger-state').isHidden());
  return entries;
}

/** Invokes consume-credits directly, as a platform service does (the Lambda Invoke API of `cargo lambda watch`). */
async function invokeConsumeCredits(payload) {
  const response = await fetch(`${LAMBDA_INVOKE_URL}/2015-03-31/functions/consume-credits/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(payload),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body;
}

/** "You can buy up to $X more on Pay Later." for a line's `available` string. */
const availableSentence = (available) => `You can buy up to ${formatCents(decimalToCents(available))} more on Pay Later.`;

/**
 * Runs the seed loader on `files`: SEED_LOADER may name a prebuilt binary; else `cargo run -p seed-loader`,
 * falling back to the last built binary when the working tree does not compile right now.
 */
async function loadSeeds(files) {
  if (process.env.SEED_LOADER) return run(process.env.SEED_LOADER, files);
  try {
    return await run('cargo', ['run', '-q', '-p', 'seed-loader', '--', ...files]);
  } catch (err) {
    const built = join(process.env.CARGO_TARGET_DIR ?? join(REPO, 'target'), 'debug', 'seed-loader');
    if (!existsSync(built)) throw err;
    console.error(`cargo run -p seed-loader failed; using ${built}\n${err.message.slice(0, 2000)}`);
    return run(built, files);
  }
}

function run(cmd, args) {
  const env = {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    ...process.env,
  };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolvePromise(output.trim()) : reject(new Error(`${cmd} exited ${code}: ${output.trim()}`)),
    );
  });
}

const agenciesSeed = join(REPO, 'seeds', 'data', 'agencies.json');

/** Writes a seed file that gives agency-northwind a different audience price, everything else as seeded. */
function changedPriceSeed() {
  const seeded = JSON.parse(readFileSync(agenciesSeed, 'utf8'));
  const northwind = structuredClone(seeded.agencies.find((a) => a.agencyId === 'agency-northwind'));
  assert.ok(northwind, 'agency-northwind is in seeds/data/agencies.json');
  northwind.rates.audience.price = CHANGED_AUDIENCE_PRICE;
  const file = join(workDir, 'northwind-price-change.json');
  writeFileSync(file, JSON.stringify({ agencies: [northwind] }, null, 2));
  return file;
}

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const text = (selector) => page.locator(selector).innerText().then((t) => t.trim());
const quantity = (type) => page.getByLabel(`Quantity of ${LABELS[type]} credits`, { exact: true });
const confirmButton = () => page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' });

/** Waits until the panel has its prices and has read the pay-later line (Confirm stays off until then). */
async function panelLoaded() {
  await page.locator('#price-audience').filter({ hasText: SEEDED.audience }).waitFor();
  await page.locator('#credit:not([data-state="loading"])').waitFor({ state: 'attached' });
}

/**
 * Rewrites every GET /balances answer the page receives: `change(body)` edits the real body (balances from
 * the stack, the pay-later fields as the test needs them). There is no API to set a limit or a hold yet.
 */
async function rewriteBalances(change) {
  await page.route('**/balances', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    change(body);
    await route.fulfill({ response, json: body });
  });
}

/** Clicks the buy button and returns the purchase requests the page sent and the final response. */
async function buy() {
  const requests = [];
  const onRequest = (request) => {
    if (request.method() === 'POST' && request.url().endsWith('/credit-purchases')) requests.push(request);
  };
  page.on('request', onRequest);
  const settled = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/credit-purchases'));
  await page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' }).click();
  const response = await settled;
  await page.waitForFunction(() => !document.getElementById('busy') || document.getElementById('busy').hidden);
  page.off('request', onRequest);
  return { requests, response };
}

before(async () => {
  for (const name of ['TABLE_NAME', 'AWS_ENDPOINT_URL_DYNAMODB']) {
    assert.ok(process.env[name], `${name} must be set (the seeded local table the gateway's functions use)`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  workDir = mkdtempSync(join(tmpdir(), 'panel-test-'));

  let config;
  try {
    config = await (await fetch(`${GATEWAY_URL}/dev/config.json`)).json();
  } catch (err) {
    throw new Error(`no dev gateway at ${GATEWAY_URL} (start: node dev/gateway.mjs): ${err.cause?.code ?? err.message}`);
  }
  assert.equal(config.accountId, ACCOUNT, 'the gateway acts for the seeded account (DEV_ACCOUNT_ID)');
  token = config.token;

  // Seeded prices in place (a no-op when they are: the loader only bumps versions when rates change).
  await loadSeeds([agenciesSeed]);

  // The first call may wait for `cargo lambda watch` to build the functions.
  const deadline = Date.now() + WARMUP_MS;
  for (;;) {
    const [pricing, balances] = await Promise.all([api('/pricing'), api('/balances')]).catch(() => [{}, {}]);
    if (pricing.status === 200 && balances.status === 200) break;
    if (pricing.status === 401 || pricing.status === 403) throw new Error(`gateway refused the dev token: ${pricing.status}`);
    if (Date.now() > deadline) throw new Error(`functions not ready after ${WARMUP_MS} ms (last: ${pricing.status}, ${balances.status})`);
    await sleep(2000);
  }

  userDataDir = mkdtempSync(join(tmpdir(), 'panel-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1000, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
});

after(async () => {
  await context?.close();
  if (seedsTouched) await loadSeeds([agenciesSeed]); // restore the seeded prices
  for (const dir of [userDataDir, workDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the panel loads the seeded prices for acct-northwind-coffee', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await page.getByRole('heading', { level: 1, name: 'Buy Additional Credits' }).waitFor();
  await page.locator('#price-custom_model').filter({ hasText: '$' }).waitFor();
  for (const [type, price] of Object.entries(SEEDED)) {
    assert.equal(await text(`#price-${type}`), price, `${type} price`);
    assert.equal(await text(`#label-${type}`), LABELS[type]);
    assert.equal(await quantity(type).inputValue(), '');
  }
  assert.equal(await text('#total'), '$0.00');
  assert.ok(await page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' }).isDisabled(), 'nothing to buy yet');
  assert.match(await text('.info'), /added to your account at once[\s\S]*agency bills you[\s\S]*end of your billing cycle/);
  assert.equal(await page.locator('#status').getAttribute('aria-live'), 'polite');
  assert.equal(await page.locator('#alert').getAttribute('role'), 'alert');
  const stored = await storedBalances();
  for (const type of Object.keys(LABELS)) assert.equal(await text(`#balance-${type}`), stored[type].toLocaleString('en-US'));
  const line = await storedLine();
  await page.locator('#credit[data-state="line"]').waitFor();
  assert.equal(await text('#credit .main'), availableSentence(line.available), 'the available credit from GET /balances');
  assert.equal(
    await text('#credit .sub'),
    `Credit limit ${formatCents(decimalToCents(line.limit))}, of which ${formatCents(decimalToCents(line.outstanding))} is not paid yet.`,
  );
  assert.ok(await page.locator('#hold').isHidden(), 'no hold');
  assert.equal(await text('#credit-over'), '');
  await ledgerMatchesStore();
  await shot('01-loaded');
});

test('subtotals and the total follow the typing, exactly', async () => {
  await quantity('audience').pressSequentially('3');
  await quantity('enrichment').pressSequentially('7');
  await quantity('custom_model').fill('1');
  assert.equal(await text('#subtotal-audience'), '$75.00');
  assert.equal(await text('#subtotal-enrichment'), '$5.25');
  assert.equal(await text('#subtotal-pixel'), '$0.00');
  assert.equal(await text('#subtotal-custom_model'), '$120.00');
  assert.equal(await text('#total'), '$200.25');
  const button = page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' });
  assert.ok(await button.isEnabled());

  for (const bad of ['1.5', '-2', '1000001', 'ten']) {
    await quantity('pixel').fill(bad);
    assert.equal(await quantity('pixel').getAttribute('aria-invalid'), 'true', bad);
    assert.ok(await page.locator('#err-pixel').isVisible(), bad);
    assert.ok(await button.isDisabled(), `buying is disabled with quantity ${bad}`);
  }
  await quantity('pixel').fill('1000000');
  assert.equal(await text('#subtotal-pixel'), '$10,000,000.00');
  assert.equal(await text('#total'), '$10,000,200.25');
  await quantity('pixel').fill('');
  assert.equal(await text('#total'), '$200.25');
  assert.ok(await button.isEnabled());
});

test('buying records the purchase and shows the new balances and the smaller available credit', async () => {
  const before = await storedBalances();
  const lineBefore = await storedLine();
  const { requests, response } = await buy();
  assert.equal(response.status(), 201);
  assert.equal(requests.length, 1);
  const request = requests[0];
  const headers = await request.allHeaders();
  assert.match(headers['idempotency-key'], UUID);
  assert.match(headers['content-type'], /^application\/json/);
  assert.match(headers.authorization, /^Bearer /);
  assert.deepEqual(JSON.parse(request.postData()), {
    quantities: { audience: 3, enrichment: 7, custom_model: 1 },
    expectedTotal: '200.25',
  });

  await page.locator('#status').filter({ hasText: 'Purchase confirmed' }).waitFor();
  const message = await text('#status');
  assert.match(message, /3 Audience, 7 Enrichment, 1 Custom Model credits are in your account now/);
  assert.match(message, /bill you \$200\.25/);

  const after = await storedBalances();
  const bought = { audience: 3, enrichment: 7, pixel: 0, custom_model: 1 };
  for (const type of Object.keys(LABELS)) {
    assert.equal(after[type], before[type] + bought[type], `stored ${type} balance`);
    assert.match(message, new RegExp(`${LABELS[type]}: ${after[type].toLocaleString('en-US')}`));
    await page.locator(`#balance-${type}`).filter({ hasText: new RegExp(`^${after[type].toLocaleString('en-US')}$`) }).waitFor();
  }
  for (const type of Object.keys(LABELS)) assert.equal(await quantity(type).inputValue(), '', 'the form is reset');
  assert.equal(await text('#total'), '$0.00');
  assert.ok(await page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' }).isDisabled());
  // The line went down by exactly the total, on the server and on the page.
  const lineAfter = await storedLine();
  assert.equal(decimalToCents(lineAfter.available), decimalToCents(lineBefore.available) - 20025n, 'the server took $200.25 off the line');
  await page.locator('#credit .main').filter({ hasText: availableSentence(lineAfter.available) }).waitFor();
  await shot('02-purchased');
});

test('the last credit movements are listed under the balances; a purchase appears at the top at once', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  const table = page.getByRole('table', { name: 'Recent credit movements' });
  const earlier = await ledgerMatchesStore();
  assert.ok(earlier.length >= 1, 'the previous test bought credits');
  assert.deepEqual(await table.locator('thead th').allInnerTexts(), ['When', 'Type', 'Change', 'Reason', 'Balance after']);
  for (const th of await table.locator('thead th').all()) assert.equal(await th.getAttribute('scope'), 'col');
  assert.equal(await table.locator('tbody th[scope="row"] time').count(), earlier.length, 'each row is named by its time');
  // The ledger is below the balances.
  const balancesBox = await page.locator('#balances-list').boundingBox();
  assert.ok((await table.boundingBox()).y > balancesBox.y + balancesBox.height, 'the table is under the balances');

  await quantity('audience').fill('1');
  await quantity('pixel').fill('2');
  const { response } = await buy();
  assert.equal(response.status(), 201);
  const { purchase } = await response.json();
  await page.locator('#ledger-rows tr').first().and(page.locator(`[data-entry-id="${purchase.purchaseId}"]`)).waitFor();
  const entries = await ledgerMatchesStore();
  const after = await storedBalances();
  const [top] = await shownLedger();
  assert.equal(top.typeText, 'Purchase');
  assert.equal(top.change, '+1 Audience, +2 Pixel');
  assert.equal(top.reason, 'Bought on Pay Later');
  assert.equal(top.after, `Audience ${after.audience.toLocaleString('en-US')}, Pixel ${after.pixel.toLocaleString('en-US')}`);
  assert.equal(entries[1]?.entryId, earlier[0].entryId, 'the earlier newest entry is now second');
  assert.ok((await shownLedger()).length <= LEDGER_ROWS, `at most ${LEDGER_ROWS} rows`);
  await shot('12-ledger-after-purchase');
});

test('a consumption and its release by a platform service (direct invoke) are listed with their reason', async (t) => {
  if (!LAMBDA_INVOKE_URL) {
    t.skip('needs LAMBDA_INVOKE_URL (cargo lambda watch) to invoke consume-credits');
    return;
  }
  const before = await storedBalances();
  assert.ok(before.audience >= 2, 'earlier tests bought audience credits');
  const consumptionId = `panel-test-${crypto.randomUUID()}`;
  const consumed = await invokeConsumeCredits({
    accountId: ACCOUNT,
    consumptionId,
    quantities: { audience: 2 },
    reason: 'audience build',
    reference: 'job/panel-test',
  });
  assert.equal(consumed.result, 'consumed');
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await page.locator(`#ledger-rows tr[data-entry-id="${consumed.entryId}"]`).waitFor();
  await ledgerMatchesStore();
  let [top] = await shownLedger();
  assert.equal(top.typeText, 'Used');
  assert.equal(top.change, '\u22122 Audience');
  assert.equal(top.reason, 'audience build · ref. job/panel-test');
  assert.equal(top.after, `Audience ${(before.audience - 2).toLocaleString('en-US')}`);
  assert.equal(await text('#balance-audience'), (before.audience - 2).toLocaleString('en-US'));

  const released = await invokeConsumeCredits({ accountId: ACCOUNT, release: consumptionId, reason: 'job failed' });
  assert.equal(released.result, 'released');
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await page.locator(`#ledger-rows tr[data-entry-id="${released.entryId}"]`).waitFor();
  await ledgerMatchesStore();
  [top] = await shownLedger();
  assert.equal(top.typeText, 'Returned');
  assert.equal(top.change, '+2 Audience');
  assert.equal(top.reason, 'job failed');
  assert.equal(top.after, `Audience ${before.audience.toLocaleString('en-US')}`);
  await shot('13-ledger-consumption-release');
});

test('the ledger: an empty one says so; one that cannot be read says so and is not shown', async () => {
  const ledgerRoute = /\/ledger(\?|$)/;
  try {
    await page.route(ledgerRoute, (route) => route.fulfill({ json: { entries: [], nextCursor: null } }));
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await page.locator('#ledger-state').filter({ hasText: 'No credit movements yet.' }).waitFor();
    assert.ok(await page.locator('#ledger-table').isHidden());
    await page.unroute(ledgerRoute);

    // A fractional quantity (or any other surprise) is not shown as if it were right.
    await page.route(ledgerRoute, async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      body.entries[0].quantities.audience = 1.5;
      await route.fulfill({ response, json: body });
    });
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await page.locator('#ledger-state').filter({ hasText: 'Credit movements are unavailable: the answer could not be read.' }).waitFor();
    assert.ok(await page.locator('#ledger-table').isHidden());
    await page.unroute(ledgerRoute);

    await page.route(ledgerRoute, (route) =>
      route.fulfill({
        status: 503,
        headers: { 'content-type': 'application/problem+json' },
        body: JSON.stringify({ status: 503, code: 'service_unavailable', detail: 'try again' }),
      }),
    );
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await page.locator('#ledger-state').filter({ hasText: /^Credit movements are unavailable: The service is temporarily unavailable/ }).waitFor();
  } finally {
    await page.unroute(ledgerRoute);
  }
});

test('a price change after loading: 409, the new prices are shown, confirming again succeeds', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await quantity('audience').fill('2');
  await quantity('pixel').fill('1');
  assert.equal(await text('#total'), '$60.00');
  const before = await storedBalances();

  seedsTouched = true;
  const loaded = await loadSeeds([changedPriceSeed()]);
  assert.match(loaded, /agencies 1 changed/, loaded);

  const first = await buy();
  assert.equal(first.response.status(), 409);
  assert.equal(JSON.parse(first.requests[0].postData()).expectedTotal, '60.00');
  await page.locator('#alert').filter({ hasText: 'Prices changed' }).waitFor();
  const warning = await text('#alert');
  assert.match(warning, /your total is \$63\.00 instead of \$60\.00/);
  assert.match(warning, /click “Confirm Purchase \(Pay Later\)” again/);
  assert.match(warning, /Audience: \$25\.00 → \$26\.50 per credit/);
  assert.equal(await text('#price-audience'), '$26.50');
  assert.equal(await text('#was-audience'), 'was $25.00');
  assert.equal(await text('#price-pixel'), SEEDED.pixel);
  assert.equal(await text('#subtotal-audience'), '$53.00');
  assert.equal(await text('#total'), '$63.00');
  assert.equal(await quantity('audience').inputValue(), '2', 'quantities are kept');
  assert.deepEqual(await storedBalances(), before, 'nothing was bought');
  await shot('03-price-changed');

  const second = await buy();
  assert.equal(second.response.status(), 201);
  const body = JSON.parse(second.requests[0].postData());
  assert.deepEqual(body, { quantities: { audience: 2, pixel: 1 }, expectedTotal: '63.00' });
  const key1 = (await first.requests[0].allHeaders())['idempotency-key'];
  const key2 = (await second.requests[0].allHeaders())['idempotency-key'];
  assert.notEqual(key1, key2, 'a fresh Idempotency-Key per click');
  await page.locator('#status').filter({ hasText: 'Purchase confirmed' }).waitFor();
  assert.match(await text('#status'), /bill you \$63\.00/);
  const after = await storedBalances();
  assert.equal(after.audience, before.audience + 2);
  assert.equal(after.pixel, before.pixel + 1);
  await page.locator('#balance-audience').filter({ hasText: new RegExp(`^${after.audience.toLocaleString('en-US')}$`) }).waitFor();
  await shot('04-confirmed-again');

  await loadSeeds([agenciesSeed]);
  seedsTouched = false;
  const restored = await api('/pricing');
  assert.equal(restored.body.prices.find((p) => p.creditType === 'audience').pricePerCredit, '25.00', 'seeds restored');
});

test('a purchase whose answer is lost is retried with the same key and charged once', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await quantity('enrichment').fill('4');
  const before = await storedBalances();
  let calls = 0;
  await page.route('**/credit-purchases', async (route) => {
    calls += 1;
    if (calls === 1) {
      await route.fetch(); // the server records the purchase...
      await route.abort('connectionreset'); // ...but the page never hears back
    } else {
      await route.continue();
    }
  });
  try {
    const { requests, response } = await buy();
    assert.equal(response.status(), 201);
    assert.equal(requests.length, 2, 'one automatic retry');
    const keys = await Promise.all(requests.map(async (r) => (await r.allHeaders())['idempotency-key']));
    assert.equal(keys[0], keys[1], 'the retry reuses the Idempotency-Key');
    assert.equal(await response.headerValue('idempotent-replayed'), 'true');
  } finally {
    await page.unroute('**/credit-purchases');
  }
  await page.locator('#status').filter({ hasText: 'Purchase confirmed' }).waitFor();
  const after = await storedBalances();
  assert.equal(after.enrichment, before.enrichment + 4, 'charged once');
});

test('problems are explained: server detail, sign-in, unavailable', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await quantity('audience').fill('1');

  // A 400 from the server: its `detail` is shown.
  await page.route('**/credit-purchases', (route) =>
    route.continue({ postData: JSON.stringify({ quantities: { audience: 1 }, expectedTotal: '25.001' }) }),
  );
  let result = await buy();
  assert.equal(result.response.status(), 400);
  await page.locator('#alert').filter({ hasText: '`expectedTotal` must be a decimal string' }).waitFor();
  await page.unroute('**/credit-purchases');

  // A 503 (after the panel's own retries): "try again".
  await page.route('**/credit-purchases', (route) =>
    route.fulfill({
      status: 503,
      headers: { 'content-type': 'application/problem+json', 'retry-after': '0' },
      body: JSON.stringify({ status: 503, code: 'service_unavailable', detail: 'Please try again in a moment; nothing was charged.' }),
    }),
  );
  result = await buy();
  assert.equal(result.response.status(), 503);
  await page.locator('#alert').filter({ hasText: 'try again' }).waitFor();
  await page.unroute('**/credit-purchases');
  await shot('05-unavailable');

  // A token the gateway refuses: no prices, no buying, a sign-in message. (The gateway answers both
  // /config.json and /dev/config.json; the page asks the first.)
  await page.route('**/config.json', (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ apiBaseUrl: '', accountId: ACCOUNT, token: 'not-a-jwt' }) }),
  );
  await page.goto(`${GATEWAY_URL}/`);
  await page.locator('#alert').filter({ hasText: 'sign in again' }).waitFor();
  assert.match(await text('#price-rows'), /Prices are unavailable/);
  assert.ok(await page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' }).isDisabled());
  await page.unroute('**/config.json');
});

test('a minimum quantity above 1 is shown, smaller quantities cannot be confirmed, the server refusal is explained', async () => {
  // Works with or without the backend's minimumQuantity: the pricing answer is rewritten on its way in.
  await page.route('**/pricing', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    for (const entry of body.prices) entry.minimumQuantity = entry.creditType === 'enrichment' ? 3 : 1;
    await route.fulfill({ response, json: body });
  });
  const button = page.getByRole('button', { name: 'Confirm Purchase (Pay Later)' });
  try {
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    assert.equal(await text('#min-enrichment'), 'min. 3');
    assert.equal(await text('#label-enrichment'), 'Enrichment');
    for (const type of ['audience', 'pixel', 'custom_model']) assert.ok(await page.locator(`#min-${type}`).isHidden(), type);

    await quantity('audience').fill('1');
    await quantity('enrichment').fill('2');
    assert.equal(await quantity('enrichment').getAttribute('aria-invalid'), 'true');
    assert.match(await text('#err-enrichment'), /at least 3 Enrichment credits/);
    assert.ok(await button.isDisabled(), 'below the minimum: no purchase');
    await quantity('enrichment').fill('0');
    assert.equal(await quantity('enrichment').getAttribute('aria-invalid'), 'false', '0 is always allowed');
    assert.ok(await button.isEnabled());
    await quantity('enrichment').fill('3');
    assert.ok(await page.locator('#err-enrichment').isHidden());
    assert.equal(await text('#total'), '$27.25');
    assert.ok(await button.isEnabled());

    // The server's minimum moved since loading: its 400 is explained and its minimum applied.
    await page.route('**/credit-purchases', (route) =>
      route.fulfill({
        status: 400,
        headers: { 'content-type': 'application/problem+json' },
        body: JSON.stringify({
          type: 'about:blank',
          title: 'Bad Request',
          status: 400,
          code: 'line_below_minimum',
          creditType: 'enrichment',
          minimumQuantity: 5,
          detail: 'enrichment: at least 5 credits per purchase',
        }),
      }),
    );
    const result = await buy();
    assert.equal(result.response.status(), 400);
    await page.locator('#alert').filter({ hasText: 'Too few Enrichment credits: buy at least 5' }).waitFor();
    assert.equal(await text('#min-enrichment'), 'min. 5');
    assert.equal(await quantity('enrichment').getAttribute('aria-invalid'), 'true');
    assert.ok(await button.isDisabled());
    await shot('07-minimum-quantity');
  } finally {
    await page.unroute('**/credit-purchases');
    await page.unroute('**/pricing');
  }
});

test('a total above the available credit disables Confirm with a message; exactly the available credit is fine', async () => {
  // A small line with something owed (no API sets a limit yet): the balances answer is rewritten on its way in.
  await rewriteBalances((body) => {
    body.creditLine = { limit: '100.00', outstanding: '40.00', available: '60.00' };
    body.holdStatementId = null;
  });
  const button = confirmButton();
  try {
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    assert.equal(await text('#credit .main'), 'You can buy up to $60.00 more on Pay Later.');
    assert.equal(await text('#credit .sub'), 'Credit limit $100.00, of which $40.00 is not paid yet.');

    await quantity('audience').fill('2');
    await quantity('pixel').fill('1');
    assert.equal(await text('#total'), '$60.00');
    assert.ok(await button.isEnabled(), 'a total equal to the available credit can be confirmed');
    assert.equal(await text('#credit-over'), '');

    await quantity('enrichment').fill('1');
    assert.equal(await text('#total'), '$60.75');
    assert.ok(await button.isDisabled(), 'above the available credit: Confirm is off');
    assert.equal(
      await text('#credit-over'),
      'Your total of $60.75 is $0.75 more than the $60.00 you can buy on Pay Later. ' +
        'Lower the quantities to confirm, or pay an open statement to free up credit.',
    );
    assert.equal(await page.locator('#credit-over').getAttribute('aria-live'), 'polite');
    assert.equal(await button.getAttribute('aria-describedby'), 'credit-over');
    await shot('08-credit-over-limit');

    await quantity('enrichment').fill('');
    assert.ok(await button.isEnabled(), 'back within the line');
    assert.equal(await text('#credit-over'), '');
    assert.equal(await button.getAttribute('aria-describedby'), null);
  } finally {
    await page.unroute('**/balances');
  }
});

test('an account on hold shows the statement to pay and cannot confirm; an account without a line cannot either', async () => {
  const statementId = `client-20261201T000000.000Z-${ACCOUNT}`;
  await rewriteBalances((body) => {
    body.holdStatementId = statementId;
  });
  const button = confirmButton();
  try {
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await page.locator('#hold').waitFor();
    assert.equal(await page.locator('#hold').getAttribute('role'), 'alert');
    assert.equal(await text('#hold-statement'), statementId);
    assert.match(await text('#hold'), /^Purchases are on hold/);
    assert.ok(
      (await text('#hold')).includes(`Statement ${statementId} is unpaid (its payment failed or is overdue). You cannot buy credits until it is paid`),
      await text('#hold'),
    );
    assert.equal(await text('#credit .main'), `Purchases are on hold until statement ${statementId} is paid.`);
    await quantity('audience').fill('1');
    assert.equal(await text('#total'), '$25.00');
    assert.ok(await button.isDisabled(), 'on hold: Confirm is off whatever the total');
    assert.equal(await button.getAttribute('aria-describedby'), 'hold credit');
    await shot('09-on-hold');
  } finally {
    await page.unroute('**/balances');
  }

  await rewriteBalances((body) => {
    body.creditLine = null;
    body.holdStatementId = null;
  });
  try {
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    assert.equal(
      await text('#credit .main'),
      'This account cannot buy on Pay Later: it has no Pay Later credit line. Please contact your agency.',
    );
    assert.ok(await page.locator('#hold').isHidden());
    await quantity('audience').fill('1');
    assert.ok(await button.isDisabled(), 'no pay-later line: Confirm is off');
    await shot('10-no-pay-later-line');
  } finally {
    await page.unroute('**/balances');
  }
});

test('a 402 from the purchase (another tab bought meanwhile) is explained and the line is read again', async () => {
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  const before = await storedBalances();
  await page.locator('#credit[data-state="line"]').waitFor();
  await quantity('audience').fill('3');
  assert.equal(await text('#total'), '$75.00');

  // The server refuses: only $10.00 is left now. From then on the balances route says so too.
  let refused = false;
  let readsAfter = 0;
  await page.route('**/credit-purchases', (route) => {
    refused = true;
    return route.fulfill({
      status: 402,
      headers: { 'content-type': 'application/problem+json' },
      body: JSON.stringify({
        type: 'about:blank',
        title: 'Pay-later credit limit reached',
        status: 402,
        code: 'credit_limit_exceeded',
        availableCredit: '10.00',
        requestedTotal: '75.00',
        detail: 'This purchase (75.00) is more than the 10.00 you can still buy on Pay Later; nothing was charged.',
      }),
    });
  });
  await rewriteBalances((body) => {
    if (!refused) return;
    readsAfter += 1;
    body.creditLine = { limit: '25000.00', outstanding: '24990.00', available: '10.00' };
  });
  const button = confirmButton();
  try {
    const result = await buy();
    assert.equal(result.response.status(), 402);
    await page.locator('#alert').filter({ hasText: 'Not enough Pay Later credit — nothing was charged' }).waitFor();
    const alert = await text('#alert');
    assert.match(alert, /This purchase \(\$75\.00\) is more than the \$10\.00 you can still buy on Pay Later\./);
    assert.match(alert, /Lower the quantities, or pay an open statement to free up credit\./);
    await page.locator('#credit .sub').filter({ hasText: 'of which $24,990.00 is not paid yet' }).waitFor();
    assert.ok(readsAfter >= 1, 'GET /balances was read again after the 402');
    assert.equal(await text('#credit .main'), 'You can buy up to $10.00 more on Pay Later.');
    assert.equal(await quantity('audience').inputValue(), '3', 'quantities are kept');
    assert.ok(await button.isDisabled(), '$75.00 is above the $10.00 left');
    assert.match(await text('#credit-over'), /Your total of \$75\.00 is \$65\.00 more than the \$10\.00/);
    assert.deepEqual(await storedBalances(), before, 'nothing was bought');
    await shot('11-credit-limit-402');

    // A hold that began after the page loaded: its 402 names the statement and the banner shows it.
    await page.unroute('**/balances');
    await page.unroute('**/credit-purchases');
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await quantity('pixel').fill('1');
    const statementId = `client-20261201T000000.000Z-${ACCOUNT}`;
    let held = false;
    await page.route('**/credit-purchases', (route) => {
      held = true;
      return route.fulfill({
        status: 402,
        headers: { 'content-type': 'application/problem+json' },
        body: JSON.stringify({ status: 402, code: 'account_on_hold', statementId, detail: 'on hold' }),
      });
    });
    // The balances read again after the 402 carry the hold too (the newest read is what the panel shows).
    await rewriteBalances((body) => {
      if (held) body.holdStatementId = statementId;
    });
    assert.equal((await buy()).response.status(), 402);
    await page.locator('#alert').filter({ hasText: 'Your account is on hold — nothing was charged' }).waitFor();
    assert.ok((await text('#alert')).includes(`Statement ${statementId} is unpaid (its payment failed or is overdue).`));
    await page.locator('#hold').waitFor();
    assert.equal(await text('#hold-statement'), statementId);
    assert.equal(await text('#credit .main'), `Purchases are on hold until statement ${statementId} is paid.`);
    assert.ok(await button.isDisabled());
    await page.unroute('**/credit-purchases');
    await page.unroute('**/balances');

    // The agency's line: no figures, just who to ask.
    await page.goto(`${GATEWAY_URL}/`);
    await panelLoaded();
    await quantity('pixel').fill('1');
    await page.route('**/credit-purchases', (route) =>
      route.fulfill({
        status: 402,
        headers: { 'content-type': 'application/problem+json' },
        body: JSON.stringify({ status: 402, code: 'agency_credit_limit_exceeded', detail: 'paused' }),
      }),
    );
    assert.equal((await buy()).response.status(), 402);
    await page.locator('#alert').filter({ hasText: 'Pay Later purchases are paused — nothing was charged' }).waitFor();
    assert.match(await text('#alert'), /Please contact your agency\./);
    assert.deepEqual(await storedBalances(), before, 'nothing was bought');
  } finally {
    await page.unroute('**/credit-purchases');
    await page.unroute('**/balances');
  }
});

test('deployed-style config: config.json with apiBaseUrl and a getToken module, API on another origin (CORS)', async (t) => {
  const gateway = new URL(GATEWAY_URL);
  const allowed = (process.env.DASHBOARD_ORIGIN ?? '').split(',').map((o) => o.trim());
  const panelOrigin = `http://localhost:${gateway.port}`;
  if (gateway.hostname !== '127.0.0.1' || (process.env.DASHBOARD_ORIGIN && !allowed.includes(panelOrigin))) {
    t.skip(`needs the gateway on 127.0.0.1 allowing ${panelOrigin}`);
    return;
  }
  // The panel is loaded from http://localhost:PORT and calls the API at http://127.0.0.1:PORT: a cross-origin
  // call with a CORS preflight (Authorization, Idempotency-Key), as from a static host to API Gateway.
  await page.route(`${panelOrigin}/config.json`, (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ apiBaseUrl: `${GATEWAY_URL}/`, authModule: 'auth.js' }) }),
  );
  await page.route(`${panelOrigin}/auth.js`, (route) =>
    route.fulfill({ contentType: 'text/javascript', body: `export async function getToken() { return ${JSON.stringify(token)}; }` }),
  );
  try {
    await page.goto(`${panelOrigin}/`);
    await panelLoaded();
    assert.equal(await text('#account-id'), ACCOUNT, 'the account comes from the token when config.json has none');
    const before = await storedBalances();
    await quantity('pixel').fill('1');
    const { requests, response } = await buy();
    assert.equal(response.status(), 201);
    assert.ok(requests[0].url().startsWith(`${GATEWAY_URL}/accounts/`));
    assert.equal((await requests[0].allHeaders()).origin, panelOrigin);
    assert.equal(await response.headerValue('access-control-allow-origin'), panelOrigin);
    await page.locator('#status').filter({ hasText: 'Purchase confirmed' }).waitFor();
    assert.equal((await storedBalances()).pixel, before.pixel + 1);
  } finally {
    await page.unroute(`${panelOrigin}/config.json`);
    await page.unroute(`${panelOrigin}/auth.js`);
  }
});

test('readable at 375px: no sideways scrolling, inputs reachable by keyboard', async () => {
  await page.setViewportSize({ width: 375, height: 812 });
  await page.goto(`${GATEWAY_URL}/`);
  await panelLoaded();
  await quantity('audience').focus();
  await page.keyboard.type('2');
  await page.keyboard.press('Tab');
  await page.keyboard.type('10');
  assert.equal(await quantity('enrichment').inputValue(), '10', 'Tab moves to the next quantity');
  await page.keyboard.press('Enter'); // must not buy
  assert.equal(await text('#total'), '$57.50');
  assert.ok(await page.locator('#status').isHidden());
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  await shot('06-mobile-375');
});
