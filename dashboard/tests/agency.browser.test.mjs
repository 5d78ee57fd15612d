// End-to-end test of the agency console in Debian's Chromium, through the dev gateway, against the seeded
// functions (the same harness as panel.browser.test.mjs).
//
// Needs: a running gateway at GATEWAY_URL (default http://127.0.0.1:3000) in front of `cargo lambda watch`,
// TABLE_NAME + AWS_ENDPOINT_URL_DYNAMODB naming the seeded local table (the seeds are loaded again if the prices
// cannot be put back through the API), and optionally LAMBDA_INVOKE_URL (where `cargo lambda watch` listens;
// set by scripts/local-stack.sh) to spend a client's credits with `consume-credits` for the real
// `credits_already_used` refusal. The console acts as agency-northwind's administrator (the gateway's
// /dev/agency-config.json); purchases are made as acct-northwind-coffee (/dev/config.json) and voided again.
// Everything the test changes (prices, a credit limit, purchases) is put back. Screenshots: .artifacts/dashboard/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { centsToDecimal, decimalToCents, formatMoney, parseRate, quote } from '../public/money.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_URL = (process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
const LAMBDA_INVOKE_URL = (process.env.LAMBDA_INVOKE_URL ?? '').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO, '.artifacts', 'dashboard');
const WARMUP_MS = Number(process.env.WARMUP_TIMEOUT_MS ?? 600_000); // cargo lambda watch builds on first call
const AGENCY = 'agency-northwind';
const CLIENT = 'acct-northwind-coffee';
const CLIENT_NAME = 'Harbor Coffee Roasters';
const TYPES = ['audience', 'enrichment', 'pixel', 'custom_model'];
const LABELS = { audience: 'Audience', enrichment: 'Enrichment', pixel: 'Pixel', custom_model: 'Custom Model' };
const PURCHASES_PAGE = 10; // agency.js asks purchases 10 at a time
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let context;
let page;
let adminToken;
let clientToken;
let userDataDir;
/** What to put back: agency-northwind's prices (type → agency price or null) and the client's limit. */
let initialPrices;
let initialLimit;
/** Purchases this test made; any still unbilled at the end is voided through the API. */
const madePurchases = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const money = (text) => formatMoney(text) ?? '—';

async function call(token, method, path, { body, headers = {} } = {}) {
  const response = await fetch(`${GATEWAY_URL}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, headers: response.headers, body: await response.json().catch(() => null) };
}
const agencyApi = (method, path, options) => call(adminToken, method, `/agencies/${AGENCY}${path}`, options);
const clientApi = (method, path, options) => call(clientToken, method, `/accounts/${CLIENT}${path}`, options);

async function pricing() {
  const answer = await agencyApi('GET', '/pricing');
  assert.equal(answer.status, 200, `GET pricing: ${JSON.stringify(answer.body)}`);
  const etag = answer.headers.get('etag');
  assert.match(etag ?? '', /^"\d+"$/, 'a strong, quoted ETag');
  assert.equal(etag, `"${answer.body.version}"`, 'the ETag is the version');
  return { etag, body: answer.body, rate: Object.fromEntries(answer.body.rates.map((r) => [r.creditType, r])) };
}

/** Sets prices through the API, with the current version. */
async function putPrices(prices) {
  const { etag } = await pricing();
  const answer = await agencyApi('PUT', '/pricing', { body: { prices }, headers: { 'if-match': etag } });
  assert.equal(answer.status, 200, `PUT pricing: ${JSON.stringify(answer.body)}`);
  return answer;
}

async function clients() {
  const answer = await agencyApi('GET', '/clients?limit=100');
  assert.equal(answer.status, 200, `GET clients: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

async function client(accountId = CLIENT) {
  const found = (await clients()).clients.find((c) => c.accountId === accountId);
  assert.ok(found, `${accountId} is one of ${AGENCY}'s clients`);
  return found;
}

async function clientBalances() {
  const answer = await clientApi('GET', '/balances');
  assert.equal(answer.status, 200);
  return answer.body;
}

/**
 * A purchase as the client makes it (through the gateway, with the client's token), at the current prices. The
 * total is quoted from the agency's prices: the client's `GET /pricing` is never asked while this test has prices
 * of its own in place, so its per-instance cache (30 s) never holds them for the panel's test that follows.
 */
async function buy(quantities) {
  const rate = Object.fromEntries((await pricing()).body.rates.map((r) => [r.creditType, parseRate(r.price)]));
  const { totalCents } = quote(Object.entries(quantities).map(([creditType, q]) => ({ creditType, quantity: BigInt(q), rateUnits: rate[creditType] })));
  const answer = await clientApi('POST', '/credit-purchases', {
    body: { quantities, expectedTotal: centsToDecimal(totalCents) },
    headers: { 'idempotency-key': crypto.randomUUID() },
  });
  assert.equal(answer.status, 201, `purchase: ${JSON.stringify(answer.body)}`);
  madePurchases.push(answer.body.purchase.purchaseId);
  return answer.body.purchase;
}

/** Spends the client's credits as the platform's services do (a direct invoke of consume-credits). */
async function consume(body) {
  const response = await fetch(`${LAMBDA_INVOKE_URL}/2015-03-31/functions/consume-credits/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ accountId: CLIENT, ...body }),
  });
  const result = await response.json();
  assert.ok(!result?.errorType, `consume-credits: ${JSON.stringify(result)}`);
  return result;
}

function run(cmd, args) {
  const env = { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', ...process.env };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise(output.trim()) : reject(new Error(`${cmd} exited ${code}: ${output.trim()}`))));
  });
}

/** The seeded prices again (only when the API could not put them back). */
async function loadSeeds(files) {
  if (process.env.SEED_LOADER) return run(process.env.SEED_LOADER, files);
  try {
    return await run('cargo', ['run', '-q', '-p', 'seed-loader', '--', ...files]);
  } catch (err) {
    const built = join(process.env.CARGO_TARGET_DIR ?? join(REPO, 'target'), 'debug', 'seed-loader');
    if (!existsSync(built)) throw err;
    return run(built, files);
  }
}

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `agency-${name}.png`), fullPage: true });
}

const text = (selector) => page.locator(selector).first().innerText().then((t) => t.trim());
const priceInput = (type) => page.getByLabel(`New ${LABELS[type]} price`, { exact: true });
const saveButton = () => page.getByRole('button', { name: 'Save prices' });

async function openConsole() {
  await page.goto(`${GATEWAY_URL}/agency.html`);
  await page.locator('body[data-ready="true"]').waitFor();
}

/** Runs `action` and returns the requests matching `method` + `suffix` it caused and the last response. */
async function requestsDuring(method, suffix, action, { settle = true } = {}) {
  const requests = [];
  const matches = (r) => r.method() === method && new URL(r.url()).pathname.endsWith(suffix);
  const onRequest = (request) => matches(request) && requests.push(request);
  page.on('request', onRequest);
  const settled = settle ? page.waitForResponse((r) => matches(r.request())) : null;
  await action();
  const response = settled ? await settled : null;
  page.off('request', onRequest);
  return { requests, response };
}

/** The figures of a price row, as shown. */
async function priceRow(type) {
  return {
    price: await text(`#price-${type}`),
    source: await text(`#source-${type}`),
    cost: await text(`#cost-${type}`),
    margin: await text(`#margin-${type}`),
    marginPercent: await text(`#margin-percent-${type}`),
  };
}

function expectedPriceRow(rate) {
  return {
    price: money(rate.price),
    source: rate.priceSource === 'agency' ? `Your price (default ${money(rate.defaultPrice)})` : 'Default price',
    cost: money(rate.cost),
    margin: money(rate.margin),
    marginPercent: rate.marginPercent === null ? '—' : `${rate.marginPercent}%`,
  };
}

before(async () => {
  for (const name of ['TABLE_NAME', 'AWS_ENDPOINT_URL_DYNAMODB']) {
    assert.ok(process.env[name], `${name} must be set (the seeded local table the gateway's functions use)`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  let agencyConfig;
  let clientConfig;
  try {
    agencyConfig = await (await fetch(`${GATEWAY_URL}/dev/agency-config.json`)).json();
    clientConfig = await (await fetch(`${GATEWAY_URL}/dev/config.json`)).json();
  } catch (err) {
    throw new Error(`no dev gateway at ${GATEWAY_URL} (start: node dev/gateway.mjs): ${err.cause?.code ?? err.message}`);
  }
  assert.equal(agencyConfig.agencyId, AGENCY, "the gateway signs agency-northwind's administrator in (DEV_AGENCY_ID)");
  assert.equal(clientConfig.accountId, CLIENT, 'the gateway acts for the seeded account (DEV_ACCOUNT_ID)');
  adminToken = agencyConfig.token;
  clientToken = clientConfig.token;

  // The first call may wait for `cargo lambda watch` to build the functions.
  const deadline = Date.now() + WARMUP_MS;
  for (;;) {
    const answer = await agencyApi('GET', '/pricing').catch(() => ({}));
    if (answer.status === 200) break;
    if (answer.status === 401 || answer.status === 403) throw new Error(`the agency routes refused the admin's dev token: ${answer.status} ${JSON.stringify(answer.body)}`);
    if (Date.now() > deadline) throw new Error(`agency functions not ready after ${WARMUP_MS} ms (last: ${answer.status} ${JSON.stringify(answer.body)})`);
    await sleep(2000);
  }
  const start = await pricing();
  initialPrices = Object.fromEntries(start.body.rates.map((r) => [r.creditType, r.priceSource === 'agency' ? r.price : null]));
  initialLimit = (await client()).creditLine?.limit ?? null;

  userDataDir = mkdtempSync(join(tmpdir(), 'agency-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (!adminToken || !initialPrices) return;
  // Put back what the test changed: unbilled purchases it made, the limit, the prices.
  for (const purchaseId of madePurchases) {
    await agencyApi('POST', `/purchases/${purchaseId}/void`, { body: { accountId: CLIENT, reason: 'browser test clean-up' } }).catch(() => null);
  }
  if (initialLimit !== null) await agencyApi('PUT', `/clients/${CLIENT}/credit-limit`, { body: { creditLimit: initialLimit } }).catch(() => null);
  try {
    const now = await pricing();
    const back = {};
    for (const rate of now.body.rates) {
      const want = initialPrices[rate.creditType];
      const has = rate.priceSource === 'agency' ? rate.price : null;
      if (want !== has) back[rate.creditType] = want;
    }
    if (Object.keys(back).length) await putPrices(back);
  } catch (err) {
    console.error(`prices not put back through the API (${err.message}); loading the seeds`);
    await loadSeeds([join(REPO, 'seeds', 'data', 'agencies.json')]);
  }
  // The client's GET /pricing shows prices from a per-instance cache (at most 30 s old): wait until it shows the
  // prices put back, so the next test file starts from them.
  const want = Object.fromEntries((await pricing()).body.rates.map((r) => [r.creditType, parseRate(r.price)]));
  const deadline = Date.now() + 45_000;
  for (;;) {
    const shown = await clientApi('GET', '/pricing').catch(() => null);
    if (shown?.status === 200 && shown.body.prices.every((p) => parseRate(p.pricePerCredit) === want[p.creditType])) break;
    if (Date.now() > deadline) {
      console.error(`the client's prices still differ from the agency's after 45 s: ${JSON.stringify(shown?.body)}`);
      break;
    }
    await sleep(1000);
  }
});

test('the console shows the price table with cost, margin and margin % per credit type', async () => {
  await openConsole();
  await page.getByRole('heading', { level: 1, name: 'Agency console' }).waitFor();
  assert.equal(await text('#agency-id'), AGENCY);
  const { body, rate } = await pricing();
  assert.deepEqual(body.rates.map((r) => r.creditType), TYPES, 'one rate per credit type, in order');
  for (const type of TYPES) {
    assert.equal(await text(`#type-${type}`), LABELS[type]);
    assert.deepEqual(await priceRow(type), expectedPriceRow(rate[type]), type);
    // The margin shown is exactly price − cost (BigInt on ten-thousandths).
    const margin = parseRate(rate[type].price) - parseRate(rate[type].cost);
    assert.equal(parseRate(rate[type].margin.replace(/^-/, '')) * (rate[type].margin.startsWith('-') ? -1n : 1n), margin, `${type} margin`);
    const input = priceInput(type);
    assert.equal(await input.inputValue(), rate[type].priceSource === 'agency' ? rate[type].price : rate[type].defaultPrice);
    assert.equal(await page.locator(`#use-default-${type}`).isChecked(), rate[type].priceSource === 'default');
  }
  assert.ok(await saveButton().isDisabled(), 'nothing to save yet');
  // Only the dev gateway's config shows the link back to the client panel.
  assert.equal(await page.getByRole('link', { name: 'Client panel' }).getAttribute('href'), './');
  await shot('01-prices');
});

test('editing prices: one set, one cleared back to the default, each sent with If-Match from the ETag', async () => {
  await openConsole();
  const before = await pricing();
  const newPixel = before.rate.pixel.price === '11.25' ? '11.50' : '11.25';
  await priceInput('pixel').fill(newPixel);
  assert.ok(await saveButton().isEnabled());
  const first = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(first.requests.length, 1);
  assert.equal(first.response.status(), 200);
  const headers = await first.requests[0].allHeaders();
  assert.equal(headers['if-match'], before.etag, 'If-Match is the ETag of the GET the page showed');
  assert.match(headers['content-type'], /^application\/json/);
  assert.deepEqual(JSON.parse(first.requests[0].postData()), { prices: { pixel: newPixel } });
  await page.locator('#prices-status').filter({ hasText: 'Prices saved' }).waitFor();
  assert.match(await text('#prices-status'), new RegExp(`Pixel: \\${money(newPixel)}`));
  const afterSet = await pricing();
  assert.equal(afterSet.rate.pixel.price, newPixel);
  assert.equal(afterSet.rate.pixel.priceSource, 'agency');
  assert.equal(await first.response.headerValue('etag'), afterSet.etag, 'the PUT answers the new ETag');
  assert.notEqual(afterSet.etag, before.etag, 'the version moved');
  assert.deepEqual(await priceRow('pixel'), expectedPriceRow(afterSet.rate.pixel));
  assert.ok(await saveButton().isDisabled(), 'saved: nothing left to save');

  // Back to the default: the default price is shown and sent as null.
  await page.locator('#use-default-enrichment').check();
  assert.equal(await priceInput('enrichment').inputValue(), afterSet.rate.enrichment.defaultPrice);
  assert.ok(await priceInput('enrichment').isDisabled());
  const second = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(second.response.status(), 200);
  assert.equal((await second.requests[0].allHeaders())['if-match'], afterSet.etag, 'the ETag of the previous save');
  assert.deepEqual(JSON.parse(second.requests[0].postData()), { prices: { enrichment: null } });
  await page.locator('#prices-status').filter({ hasText: 'back to the default' }).waitFor();
  const cleared = await pricing();
  assert.equal(cleared.rate.enrichment.priceSource, 'default');
  assert.equal(cleared.rate.enrichment.price, cleared.rate.enrichment.defaultPrice);
  assert.deepEqual(await priceRow('enrichment'), expectedPriceRow(cleared.rate.enrichment));
  assert.equal(await text('#source-enrichment'), 'Default price');
  await shot('02-prices-saved');

  // And an agency price again (unticking starts from the price shown).
  await page.locator('#use-default-enrichment').uncheck();
  await priceInput('enrichment').fill(before.rate.enrichment.price);
  const third = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(third.response.status(), 200);
  assert.deepEqual(JSON.parse(third.requests[0].postData()), { prices: { enrichment: before.rate.enrichment.price } });
  await page.locator('#source-enrichment').filter({ hasText: 'Your price' }).waitFor();
});

test('a price below cost or malformed is refused next to its field', async () => {
  await openConsole();
  const before = await pricing();
  // Caught on the page: more than 4 decimals, not a number, empty. Nothing is sent.
  for (const bad of ['1.23456', 'ten', '-3', '']) {
    await priceInput('audience').fill(bad);
    assert.equal(await priceInput('audience').getAttribute('aria-invalid'), 'true', bad);
    assert.ok(await page.locator('#price-error-audience').isVisible(), bad);
    assert.ok(await saveButton().isDisabled(), `nothing saved with ${JSON.stringify(bad)}`);
  }
  assert.equal(await priceInput('audience').getAttribute('aria-describedby'), 'price-error-audience');

  // Refused by the server: below the agency's cost.
  await priceInput('audience').fill('0.01');
  const refused = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(refused.response.status(), 422);
  const problem = await refused.response.json();
  assert.equal(problem.code, 'price_below_cost');
  assert.equal(problem.creditType, 'audience');
  await page.locator('#price-error-audience').filter({ hasText: `Below your cost of ${money(before.rate.audience.cost)}` }).waitFor();
  assert.equal(await priceInput('audience').getAttribute('aria-invalid'), 'true');
  assert.match(await text('#prices-alert'), /The prices were not saved/);
  assert.equal((await pricing()).etag, before.etag, 'nothing was changed');
  await shot('03-price-below-cost');

  // Above the price cap (1,000,000.00 per credit): invalid_price, shown next to its field too.
  await priceInput('audience').fill(before.rate.audience.price);
  await priceInput('custom_model').fill('1000000.01');
  const capped = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(capped.response.status(), 422);
  const cappedProblem = await capped.response.json();
  assert.equal(cappedProblem.code, 'invalid_price');
  assert.equal(cappedProblem.creditType, 'custom_model');
  await page.locator('#price-error-custom_model').filter({ hasText: cappedProblem.detail }).waitFor();
  assert.equal(await priceInput('custom_model').getAttribute('aria-invalid'), 'true');
  assert.ok(await page.locator('#price-error-audience').isHidden(), 'the corrected field is clear');
  assert.equal((await pricing()).etag, before.etag, 'nothing was changed');
});

test('412: prices changed behind the page; theirs are shown, mine can be applied again', async () => {
  await openConsole();
  const loaded = await pricing();
  const mine = loaded.rate.enrichment.price === '0.80' ? '0.85' : '0.80';
  const theirs = loaded.rate.audience.price === '26.00' ? '26.50' : '26.00';
  await priceInput('enrichment').fill(mine);

  // Someone else (another admin, through the API) saves first.
  await putPrices({ audience: theirs });
  const changed = await pricing();

  const first = await requestsDuring('PUT', '/pricing', () => saveButton().click());
  assert.equal(first.response.status(), 412);
  assert.equal((await first.requests[0].allHeaders())['if-match'], loaded.etag, 'the page sent the version it showed');
  const problem = await first.response.json();
  assert.equal(problem.code, 'precondition_failed');
  assert.equal(problem.currentPricing.version, changed.body.version);
  await page.locator('#prices-alert').filter({ hasText: 'Someone else changed these prices. Here are theirs:' }).waitFor();
  const alert = await text('#prices-alert');
  assert.ok(alert.includes(`Audience: ${money(theirs)} (agency price)`), alert);
  assert.match(alert, /Nothing of yours was saved/);
  // The table shows their prices; my change is still in the form.
  assert.deepEqual(await priceRow('audience'), expectedPriceRow(changed.rate.audience));
  assert.equal(await priceInput('audience').inputValue(), theirs, 'their price in the form, not the old one');
  assert.equal(await priceInput('enrichment').inputValue(), mine);
  await shot('04-price-conflict-412');

  const again = await requestsDuring('PUT', '/pricing', () => page.getByRole('button', { name: 'Apply my changes again' }).click());
  assert.equal(again.response.status(), 200);
  assert.equal((await again.requests[0].allHeaders())['if-match'], changed.etag, 'applied on top of their version');
  assert.deepEqual(JSON.parse(again.requests[0].postData()), { prices: { enrichment: mine } }, 'only my change, not a revert of theirs');
  await page.locator('#prices-status').filter({ hasText: 'Prices saved' }).waitFor();
  const final = await pricing();
  assert.equal(final.rate.audience.price, theirs, 'their change stays');
  assert.equal(final.rate.enrichment.price, mine, 'mine is applied');
  assert.deepEqual(await priceRow('enrichment'), expectedPriceRow(final.rate.enrichment));
});

test('clients: balances, credit lines and what they owe; setting a limit', async () => {
  await openConsole();
  const listed = await clients();
  assert.ok(listed.clients.length >= 2, "agency-northwind's seeded clients");
  for (const c of listed.clients) {
    const row = page.locator(`#client-${c.accountId}`);
    await row.waitFor();
    assert.match(await row.locator('th').innerText(), new RegExp(c.accountId));
    if (c.creditLine) {
      assert.equal(await row.locator('[data-field="limit"]').innerText(), money(c.creditLine.limit));
      assert.equal(await row.locator('[data-field="outstanding"]').innerText(), money(c.creditLine.outstanding));
      assert.equal(await row.locator('[data-field="available"]').innerText(), money(c.creditLine.available));
    }
    assert.match(await row.locator('[data-field="unbilled"]').innerText(), new RegExp(`^\\${money(c.unbilled.atPrice)}\\n${c.unbilled.purchases} purchases?$`));
    assert.equal(await row.locator('[data-field="at-cost"]').innerText(), money(c.unbilled.atCost));
    assert.equal(await row.locator('[data-field="margin"]').innerText(), money(c.unbilled.margin));
    for (const type of TYPES) {
      assert.equal((await row.locator(`li[data-type="${type}"] .v`).innerText()).trim(), c.balances[type].toLocaleString('en-US'), `${c.accountId} ${type}`);
    }
  }
  if (listed.agencyCreditLine) {
    assert.match(await text('#agency-line'), new RegExp(`still buy \\${money(listed.agencyCreditLine.available)} at cost`));
  }
  const coffee = listed.clients.find((c) => c.accountId === CLIENT);
  assert.ok(await page.getByText(CLIENT_NAME).first().isVisible());

  // A malformed limit is caught on the page.
  const input = page.getByLabel(`New credit limit for ${CLIENT_NAME}`, { exact: true });
  const set = page.getByRole('button', { name: `Set the credit limit of ${CLIENT_NAME}` });
  await input.fill('12.345');
  const none = await requestsDuring('PUT', '/credit-limit', () => set.click(), { settle: false });
  assert.equal(none.requests.length, 0, 'nothing sent');
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.match(await text(`#limit-error-${CLIENT}`), /at most 2 decimal places/);

  // A new limit: 1,000.00 more than now.
  const newLimit = centsToDecimal(decimalToCents(coffee.creditLine.limit) + 100000n);
  await input.fill(newLimit);
  const { requests, response } = await requestsDuring('PUT', `/clients/${CLIENT}/credit-limit`, () => set.click());
  assert.equal(response.status(), 200);
  assert.deepEqual(JSON.parse(requests[0].postData()), { creditLimit: newLimit });
  await page.locator('#clients-status').filter({ hasText: 'Credit limit set' }).waitFor();
  assert.match(await text('#clients-status'), new RegExp(`${CLIENT_NAME} can now buy up to \\${money(newLimit)} on Pay Later`));
  const stored = await client();
  assert.equal(decimalToCents(stored.creditLine.limit), decimalToCents(newLimit));
  assert.equal(decimalToCents(stored.creditLine.available), decimalToCents(coffee.creditLine.available) + 100000n, 'available grows by the same');
  await page.locator(`#client-${CLIENT} [data-field="limit"]`).filter({ hasText: money(stored.creditLine.limit) }).waitFor();
  assert.equal(await page.locator(`#client-${CLIENT} [data-field="available"]`).innerText(), money(stored.creditLine.available));
  assert.equal((await clientBalances()).creditLine.limit, stored.creditLine.limit, 'the client sees its new limit');
  await shot('05-clients-limit');

  // A limit the server refuses is shown next to the field.
  await input.fill('99999999999999.00'); // above the maximum (10,000,000,000,000)
  const refused = await requestsDuring('PUT', `/clients/${CLIENT}/credit-limit`, () => set.click());
  assert.equal(refused.response.status(), 422);
  assert.equal((await refused.response.json()).code, 'invalid_credit_limit');
  await page.locator(`#limit-error-${CLIENT}`).filter({ hasText: 'credit limit' }).waitFor();
  assert.equal(await input.getAttribute('aria-invalid'), 'true');
  assert.equal((await client()).creditLine.limit, stored.creditLine.limit, 'nothing changed');
});

test('voiding an unbilled purchase: confirm dialog, Idempotency-Key, credits and line given back', async () => {
  const balancesBefore = await clientBalances();
  const purchase = await buy({ pixel: 2 });
  const balancesBought = await clientBalances();
  assert.equal(balancesBought.balances.pixel, balancesBefore.balances.pixel + 2);

  await openConsole();
  const row = page.locator(`#purchase-${purchase.purchaseId}`);
  await row.waitFor();
  assert.equal(await page.locator('#purchase-rows tr').first().getAttribute('id'), `purchase-${purchase.purchaseId}`, 'newest first');
  const listed = (await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}`)).body.purchases.find((p) => p.purchaseId === purchase.purchaseId);
  assert.ok(listed, 'the agency sees the purchase');
  assert.equal(listed.status, 'unbilled');
  assert.equal(await row.locator('[data-field="total"]').innerText(), money(listed.total));
  assert.equal(await row.locator('[data-field="at-cost"]').innerText(), money(listed.totalAtCost));
  assert.equal(await row.locator('[data-field="margin"]').innerText(), money(listed.margin));
  assert.equal(await row.locator('[data-field="status"]').innerText(), 'Unbilled');
  assert.match(await row.innerText(), new RegExp(`2 Pixel at \\${money(listed.lines[0].unitPrice)} \\(cost \\${money(listed.lines[0].unitCost)}\\)`));
  assert.match(await row.innerText(), new RegExp(CLIENT_NAME));

  // Keeping the purchase sends nothing.
  const voidButton = row.getByRole('button', { name: /^Void purchase of/ });
  await voidButton.click();
  const dialog = page.getByRole('dialog', { name: 'Void this purchase?' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /2 Pixel credits/);
  assert.match(await dialog.innerText(), new RegExp(CLIENT_NAME));
  const kept = await requestsDuring('POST', '/void', () => dialog.getByRole('button', { name: 'Keep the purchase' }).click(), { settle: false });
  assert.equal(kept.requests.length, 0);
  assert.ok(await dialog.isHidden());

  await voidButton.click();
  await dialog.waitFor();
  await shot('06-void-dialog');
  await page.getByLabel('Reason (optional, kept with the void)').fill('bought by mistake');
  const { requests, response } = await requestsDuring('POST', `/purchases/${purchase.purchaseId}/void`, () =>
    dialog.getByRole('button', { name: 'Void purchase' }).click(),
  );
  assert.equal(response.status(), 200);
  assert.equal(requests.length, 1);
  const headers = await requests[0].allHeaders();
  assert.match(headers['idempotency-key'], UUID);
  assert.deepEqual(JSON.parse(requests[0].postData()), { accountId: CLIENT, reason: 'bought by mistake' });
  await page.locator('#purchases-status').filter({ hasText: 'Purchase voided' }).waitFor();
  assert.match(await text('#purchases-status'), new RegExp(`2 Pixel credits were taken back from ${CLIENT_NAME}, and \\${money(listed.total)} will not be billed`));
  await row.locator('[data-field="status"]').filter({ hasText: 'Voided' }).waitFor();
  assert.equal(await row.getByRole('button').count(), 0, 'a voided purchase has no Void button');

  const balancesAfter = await clientBalances();
  assert.equal(balancesAfter.balances.pixel, balancesBefore.balances.pixel, 'the credits were taken back');
  assert.equal(balancesAfter.creditLine.available, balancesBefore.creditLine.available, "the client's line is given back");
  const stored = (await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}`)).body.purchases.find((p) => p.purchaseId === purchase.purchaseId);
  assert.equal(stored.status, 'voided');
  assert.ok(stored.voidedAt);
  // The clients table was read again: the client no longer owes the voided purchase.
  const coffee = await client();
  await page.locator(`#client-${CLIENT} [data-field="unbilled"]`).filter({ hasText: money(coffee.unbilled.atPrice) }).waitFor();
  await shot('07-voided');
});

test('a void that cannot be done is explained; a lost answer is retried with the same key', async () => {
  // A lost answer: the page retries with the same Idempotency-Key and the purchase is voided once.
  const lost = await buy({ pixel: 1 });
  await openConsole();
  let aborted = 0;
  await page.route(`**/purchases/${lost.purchaseId}/void`, (route) => (aborted++ === 0 ? route.abort('connectionreset') : route.continue()));
  const keys = [];
  const onRequest = (r) => r.url().endsWith(`/purchases/${lost.purchaseId}/void`) && keys.push(r.headers()['idempotency-key']);
  page.on('request', onRequest);
  try {
    await page.locator(`#purchase-${lost.purchaseId}`).getByRole('button', { name: /^Void/ }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Void purchase' }).click();
    await page.locator('#purchases-status').filter({ hasText: 'Purchase voided' }).waitFor();
  } finally {
    page.off('request', onRequest);
    await page.unroute(`**/purchases/${lost.purchaseId}/void`);
  }
  assert.equal(keys.length, 2, 'one retry');
  assert.match(keys[0], UUID);
  assert.equal(keys[1], keys[0], 'the retry reuses the key');

  // The client has used the credits meanwhile: 409 credits_already_used (for real when consume-credits can be invoked).
  const used = await buy({ pixel: 2 });
  const consumptionId = `agency-browser-test-${crypto.randomUUID()}`;
  const realConsumption = Boolean(LAMBDA_INVOKE_URL);
  if (realConsumption) {
    const { balances } = await clientBalances();
    await consume({ consumptionId, quantities: { pixel: balances.pixel - 1 }, reason: 'agency browser test' });
  } else {
    await page.route(`**/purchases/${used.purchaseId}/void`, (route) =>
      route.fulfill({
        status: 409,
        headers: { 'content-type': 'application/problem+json' },
        body: JSON.stringify({ status: 409, code: 'credits_already_used', creditType: 'pixel', shortBy: 1, detail: 'used' }),
      }),
    );
  }
  await openConsole();
  const row = page.locator(`#purchase-${used.purchaseId}`);
  const attemptKeys = [];
  const recordKey = (r) => r.url().endsWith(`/purchases/${used.purchaseId}/void`) && attemptKeys.push(r.headers()['idempotency-key']);
  page.on('request', recordKey);
  try {
    const first = await requestsDuring('POST', `/purchases/${used.purchaseId}/void`, async () => {
      await row.getByRole('button', { name: /^Void/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Void purchase' }).click();
    });
    assert.equal(first.response.status(), 409);
    assert.equal((await first.response.json()).code, 'credits_already_used');
    await page.locator('#purchases-alert').filter({ hasText: 'This purchase cannot be voided: the client has already used these credits' }).waitFor();
    const alert = await text('#purchases-alert');
    assert.match(alert, /its Pixel balance is 1 short of what the purchase added/);
    assert.match(alert, /Nothing was changed/);
    assert.equal(await row.locator('[data-field="status"]').innerText(), 'Unbilled', 'still unbilled');
    await shot('08-void-credits-used');
  } finally {
    if (realConsumption) await consume({ release: consumptionId, reason: 'agency browser test' });
    else await page.unroute(`**/purchases/${used.purchaseId}/void`);
  }

  // Billed meanwhile (a billing run between loading and voiding): 409 purchase_already_billed.
  await page.route(`**/purchases/${used.purchaseId}/void`, (route) =>
    route.fulfill({
      status: 409,
      headers: { 'content-type': 'application/problem+json' },
      body: JSON.stringify({ status: 409, code: 'purchase_already_billed', detail: 'billed' }),
    }),
  );
  try {
    await row.getByRole('button', { name: /^Void/ }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Void purchase' }).click();
    await page.locator('#purchases-alert').filter({ hasText: 'This purchase cannot be voided: it has been billed already' }).waitFor();
    assert.match(await text('#purchases-alert'), /A billed purchase is corrected on a statement, not voided/);
    await row.locator('[data-field="status"]').filter({ hasText: 'Billed' }).waitFor();
    assert.equal(await row.getByRole('button').count(), 0);
  } finally {
    await page.unroute(`**/purchases/${used.purchaseId}/void`);
  }

  // With the credits back, the same purchase is voided for real by a new attempt with a new key.
  await openConsole();
  await row.getByRole('button', { name: /^Void/ }).click();
  const last = await requestsDuring('POST', `/purchases/${used.purchaseId}/void`, () => page.getByRole('dialog').getByRole('button', { name: 'Void purchase' }).click());
  page.off('request', recordKey);
  assert.equal(last.response.status(), 200);
  assert.equal(new Set(attemptKeys).size, attemptKeys.length, `a new key per attempt: ${attemptKeys}`);
  await row.locator('[data-field="status"]').filter({ hasText: 'Voided' }).waitFor();

  // Voiding it again (another tab) is refused as already voided.
  const again = await agencyApi('POST', `/purchases/${used.purchaseId}/void`, { body: { accountId: CLIENT }, headers: { 'idempotency-key': crypto.randomUUID() } });
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'purchase_already_voided');
});

test('purchases are paged: newest first, "Load more purchases" adds the next page', async () => {
  // At least one more purchase than a page (voided again after the test).
  let first = await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}`);
  assert.equal(first.status, 200);
  if (!first.body.nextCursor) {
    const all = await agencyApi('GET', '/purchases?limit=100');
    for (let i = all.body.purchases.length; i <= PURCHASES_PAGE; i++) await buy({ enrichment: 1 });
    first = await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}`);
  }
  assert.ok(first.body.nextCursor, 'more than one page');
  const second = await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}&cursor=${encodeURIComponent(first.body.nextCursor)}`);
  assert.equal(second.status, 200);

  await openConsole();
  const rows = page.locator('#purchase-rows tr[data-purchase]');
  assert.equal(await rows.count(), PURCHASES_PAGE);
  const more = page.getByRole('button', { name: 'Load more purchases' });
  assert.ok(await more.isVisible());
  const { requests } = await requestsDuring('GET', '/purchases', () => more.click());
  assert.equal(new URL(requests[0].url()).searchParams.get('cursor'), first.body.nextCursor, 'the nextCursor of the first page');
  await page.waitForFunction((n) => document.querySelectorAll('#purchase-rows tr[data-purchase]').length >= n, PURCHASES_PAGE + second.body.purchases.length);
  const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.purchase));
  assert.deepEqual(ids, [...first.body.purchases, ...second.body.purchases].map((p) => p.purchaseId), 'both pages, in order, no duplicates');
  const times = await page.locator('#purchase-rows time').evaluateAll((ts) => ts.map((t) => t.dateTime));
  assert.deepEqual(times, [...times].sort().reverse(), 'newest first');
  assert.equal(await more.isVisible(), Boolean(second.body.nextCursor));

  // One client's purchases only (the `accountId` filter).
  const own = await agencyApi('GET', `/purchases?limit=${PURCHASES_PAGE}&accountId=${CLIENT}`);
  assert.equal(own.status, 200);
  const filtered = await requestsDuring('GET', '/purchases', () =>
    page.getByLabel('Show the purchases of').selectOption({ label: `${CLIENT_NAME} (${CLIENT})` }),
  );
  assert.equal(new URL(filtered.requests[0].url()).searchParams.get('accountId'), CLIENT);
  assert.equal(new URL(filtered.requests[0].url()).searchParams.get('cursor'), null, 'from the first page');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#purchase-rows tr[data-purchase]').length === n,
    own.body.purchases.length,
  );
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.purchase)), own.body.purchases.map((p) => p.purchaseId));
  assert.deepEqual([...new Set(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.account)))], [CLIENT]);
});

test("statements: the agency's statements at cost with their status", async () => {
  const answer = await agencyApi('GET', '/statements?limit=10');
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  await openConsole();
  if (answer.body.statements.length === 0) {
    assert.match(await text('#statement-rows'), /No statements yet/);
  } else {
    const rows = page.locator('#statement-rows tr[data-statement]');
    assert.equal(await rows.count(), answer.body.statements.length);
    const first = answer.body.statements[0];
    const row = page.locator(`#statement-rows tr[data-statement="${first.statementId}"]`);
    assert.equal(await row.locator('[data-field="total"]').innerText(), money(first.total));
    assert.equal(await row.locator('[data-field="due"]').innerText(), money(first.amountDue));
  }
  await shot('09-statements');

  // How statements look whatever the billing runs made (the answer rewritten on its way in).
  await page.route('**/agencies/*/statements?*', (route) =>
    route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({
        agencyId: AGENCY,
        statements: [
          { statementId: `agency-20261201T000000.000Z-${AGENCY}`, cycleEnd: '2026-12-01T00:00:00.000Z', status: 'pending_payment', currency: 'USD', lines: [], total: '1234.5', amountPaid: '0.00', amountDue: '1234.50', dueAt: '2027-01-01T12:00:00.000Z', purchaseCount: 12, createdAt: '2026-12-01T00:05:00.000Z' },
          { statementId: `agency-20261101T000000.000Z-${AGENCY}`, cycleEnd: '2026-11-01T00:00:00.000Z', status: 'paid', currency: 'USD', lines: [], total: '87.50', amountPaid: '87.50', amountDue: '0.00', dueAt: '2026-12-01T00:00:00.000Z', purchaseCount: 2, createdAt: '2026-11-01T00:05:00.000Z' },
        ],
        nextCursor: 'next-page',
      }),
    }),
  );
  try {
    await openConsole();
    const rows = page.locator('#statement-rows tr[data-statement]');
    assert.equal(await rows.count(), 2);
    assert.deepEqual(
      (await rows.first().locator('th, td').allInnerTexts()).map((t) => t.trim()),
      [`agency-20261201T000000.000Z-${AGENCY}`, '2026-12-01 00:00', 'Awaiting payment', '12', '$1,234.50', '$0.00', '$1,234.50', '2026-12-31 (end of day, any time zone)'],
    );
    assert.equal(await rows.nth(1).locator('[data-field="status"]').innerText(), 'Paid');
    assert.ok(await page.getByRole('button', { name: 'Load more statements' }).isVisible());
  } finally {
    await page.unroute('**/agencies/*/statements?*');
  }
});

test('a client token cannot open the console: 403 shown as "not an agency administrator"', async () => {
  const direct = await call(clientToken, 'GET', `/agencies/${AGENCY}/pricing`);
  assert.equal(direct.status, 403);
  assert.equal(direct.body.code, 'agency_admin_required');
  const listed = await call(clientToken, 'GET', `/agencies/${AGENCY}/clients`);
  assert.equal(listed.status, 403);

  await page.route('**/agency-config.json', (route) =>
    route.fulfill({ contentType: 'application/json', body: JSON.stringify({ apiBaseUrl: '', agencyId: AGENCY, token: clientToken }) }),
  );
  try {
    await page.goto(`${GATEWAY_URL}/agency.html`);
    await page.locator('#alert').filter({ hasText: 'You are not an agency administrator' }).waitFor();
    assert.match(await text('#alert'), /not an agency administrator’s: this console is for agency administrators only/);
    for (const tbody of ['#price-rows', '#client-rows', '#purchase-rows', '#statement-rows']) {
      assert.equal(await text(tbody), 'Not available with this sign-in.', tbody);
    }
    assert.ok(await saveButton().isDisabled());
    assert.equal(await page.locator('#purchase-rows button').count(), 0);
    await shot('10-client-token-403');

    // No token the gateway accepts: sign in again.
    await page.unroute('**/agency-config.json');
    await page.route('**/agency-config.json', (route) =>
      route.fulfill({ contentType: 'application/json', body: JSON.stringify({ apiBaseUrl: '', agencyId: AGENCY, token: 'not-a-jwt' }) }),
    );
    await page.goto(`${GATEWAY_URL}/agency.html`);
    await page.locator('#alert').filter({ hasText: 'Please sign in again' }).waitFor();
  } finally {
    await page.unroute('**/agency-config.json');
  }
});

test('readable at 375px: no sideways scrolling of the page, fields reachable by keyboard', async () => {
  await page.setViewportSize({ width: 375, height: 812 });
  try {
    await openConsole();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
    await priceInput('audience').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'use-default-audience');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'new-price-enrichment');
    await page.keyboard.press('Enter'); // never saves
    assert.ok(await page.locator('#prices-status').isHidden());
    await shot('11-mobile-375');
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
});
