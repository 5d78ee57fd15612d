// @ts-check
// The "Buy Additional Credits" panel: plain ES modules, no framework, no build step. This one holds the prices,
// the quantities, the Pay Later line, the balances and the purchase; panel/ledger.js and panel/statements.js the
// sections read with the balances, panel/rules.js the alerts and auto top-up rules; api.js and ui.js what the panel shares with the agency console.
//
// Configuration (see dashboard/README.md): `config.json` next to index.html, else `/dev/config.json` (served by
// the dev gateway only). Prices always come from the API: the panel never shows or charges a price it made up.

import {
  centsToDecimal,
  decimalToCents,
  formatCents,
  formatRate,
  lineAfterPurchase,
  minimumQuantityError,
  parseCreditLine,
  parseMinimumQuantity,
  parseQuantity,
  parseRate,
  purchaseBlock,
  quote,
} from './money.js';
import { CREDIT_TYPES, callApiAt, explainAnswer, loadConfig, sendWithRetry } from './api.js';
import { $, renderMessage } from './ui.js';
import { loadLedger } from './panel/ledger.js';
import { loadStatements, settlementOf } from './panel/statements.js';
import { loadRules, showRulePrices } from './panel/rules.js';

const ACCOUNT_CLAIM = 'custom:account_id';

const state = {
  /** { apiBaseUrl, accountId, getToken } once configured. */
  api: null,
  /** creditType → { text: "25.00", units: 250000n, minimum: 1n }; null until prices are loaded. */
  prices: null,
  currency: 'USD',
  inFlight: false,
  /**
   * The last purchase whose outcome we do not know (network failure, 5xx): clicking again with the same body
   * reuses its key, so the server answers that purchase again instead of charging twice.
   */
  unsettled: null,
  /**
   * The account's pay-later standing, from GET /balances. Until it is first read (`loaded: false`) nothing can
   * be confirmed. `line`: { limitCents, outstandingCents, availableCents }, null (no pay-later line: nothing
   * can be bought) or undefined (not known: the server's own check decides). `hold`: the unpaid statement's
   * id, or null. `problem`: why the line is not known ('unavailable', 'malformed'), or null.
   */
  credit: { loaded: false, line: undefined, hold: null, problem: null },
};

// ------------------------------------------------------------------------------------------ API client

/** One call under this account's path (see `callApiAt`); `body` is sent as given. */
async function callApi(path, options) {
  const url = `${state.api.apiBaseUrl}/accounts/${encodeURIComponent(state.api.accountId)}${path}`;
  return callApiAt(url, await state.api.getToken(), options);
}

/** The sentence for people from any non-success answer: this panel's own 403 and 404, then the shared ones. */
function explain(answer, doing) {
  if (answer.status === 403) return 'Your sign-in does not give you permission to do this for this account. Ask your agency for access.';
  if (answer.status === 404) {
    return answer.body?.code === 'account_not_found'
      ? 'We could not find your account. Please contact your agency.'
      : `The service could not be found while ${doing}. Please try again later.`;
  }
  return explainAnswer(answer, doing);
}

// ------------------------------------------------------------------------------------------ messages

/** Errors and warnings that need the user's attention (role="alert"). */
function showAlert(message, { focus = false } = {}) {
  $('status').hidden = true;
  renderMessage($('alert'), message);
  if (focus) $('alert').focus();
}

/** Good news (role="status", polite). */
function showStatus(message, { focus = false } = {}) {
  $('alert').hidden = true;
  renderMessage($('status'), message);
  if (focus) $('status').focus();
}

function clearMessages() {
  $('alert').hidden = true;
  $('status').hidden = true;
}

// ------------------------------------------------------------------------------------------ prices table

function buildRows() {
  const rows = CREDIT_TYPES.map(({ id, label }) => {
    const tr = document.createElement('tr');
    tr.dataset.type = id;

    const type = document.createElement('th');
    type.scope = 'row';
    type.className = 'type';
    const name = document.createElement('span');
    name.id = `label-${id}`;
    name.textContent = label;
    // The server refuses fewer credits than this (their subtotal would be under a cent): shown when above 1.
    const minimum = document.createElement('span');
    minimum.className = 'min';
    minimum.id = `min-${id}`;
    minimum.hidden = true;
    type.append(name, minimum);

    const price = document.createElement('td');
    price.className = 'num price';
    price.dataset.label = 'Price per credit';
    const priceValue = document.createElement('span');
    priceValue.id = `price-${id}`;
    const was = document.createElement('span');
    was.className = 'was';
    was.id = `was-${id}`;
    was.hidden = true;
    price.append(priceValue, was);

    const qty = document.createElement('td');
    qty.className = 'num qty-cell';
    qty.dataset.label = 'Quantity';
    const inputLabel = document.createElement('label');
    inputLabel.className = 'visually-hidden';
    inputLabel.htmlFor = `qty-${id}`;
    inputLabel.textContent = `Quantity of ${label} credits`;
    const input = document.createElement('input');
    input.id = `qty-${id}`;
    input.name = id;
    input.className = 'qty';
    input.type = 'text';
    input.inputMode = 'numeric';
    input.autocomplete = 'off';
    input.placeholder = '0';
    input.maxLength = 9;
    input.setAttribute('aria-describedby', `err-${id} min-${id}`);
    const error = document.createElement('span');
    error.id = `err-${id}`;
    error.className = 'field-error';
    error.hidden = true;
    qty.append(inputLabel, input, error);

    const subtotal = document.createElement('td');
    subtotal.className = 'num subtotal';
    subtotal.dataset.label = 'Subtotal';
    const out = document.createElement('output');
    out.id = `subtotal-${id}`;
    out.htmlFor = input.id;
    out.setAttribute('aria-live', 'off'); // the total is announced; four subtotals per keystroke would be noise
    out.textContent = formatCents(0n);
    subtotal.append(out);

    tr.append(type, price, qty, subtotal);
    return tr;
  });
  $('price-rows').replaceChildren(...rows);
  for (const { id } of CREDIT_TYPES) {
    const input = $(`qty-${id}`);
    input.addEventListener('input', recompute);
    // Enter in a quantity box must not buy anything: only the button (or Enter/Space on it) confirms.
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') event.preventDefault();
    });
  }
}

function showPricesUnavailable(reason) {
  state.prices = null;
  const tr = document.createElement('tr');
  tr.className = 'unavailable';
  const td = document.createElement('td');
  td.colSpan = 4;
  td.textContent = `Prices are unavailable: ${reason} Buying is disabled until prices can be loaded.`;
  tr.append(td);
  $('price-rows').replaceChildren(tr);
  $('price-rows').setAttribute('aria-busy', 'false');
  recompute();
}

/**
 * Validates a pricing body from the API: every credit type once, every price a decimal with ≤ 4 places,
 * `minimumQuantity` a whole number ≥ 1 (1 when absent). Returns the price map, or null when anything is off
 * (then nothing may be sold).
 * @param {import('../types/openapi').components['schemas']['Pricing']} body
 */
function readPricing(body) {
  if (!body || !Array.isArray(body.prices)) return null;
  const prices = {};
  for (const entry of body.prices) {
    const units = parseRate(entry?.pricePerCredit);
    const minimum = parseMinimumQuantity(entry?.minimumQuantity);
    if (units === null || minimum === null || typeof entry.creditType !== 'string') return null;
    prices[entry.creditType] = { text: entry.pricePerCredit, units, minimum };
  }
  return CREDIT_TYPES.every(({ id }) => prices[id]) ? prices : null;
}

/** Shows new prices; returns the types whose price moved, with old and new text. */
function applyPricing(body, { markChanges = false } = {}) {
  const prices = readPricing(body);
  if (!prices) return null;
  if (!$(`price-${CREDIT_TYPES[0].id}`)) buildRows();
  const changed = [];
  for (const { id, label } of CREDIT_TYPES) {
    const before = state.prices?.[id]?.text;
    const now = prices[id].text;
    $(`price-${id}`).textContent = formatRate(now);
    showMinimum(id, prices[id].minimum);
    const was = $(`was-${id}`);
    const row = $(`price-${id}`).closest('tr');
    if (markChanges && before !== undefined && parseRate(before) !== prices[id].units) {
      changed.push({ label, before, now });
      was.textContent = `was ${formatRate(before)}`;
      was.hidden = false;
      row.classList.add('changed');
    } else {
      was.hidden = true;
      row.classList.remove('changed');
    }
  }
  state.prices = prices;
  showRulePrices(prices); // what one auto top-up costs follows the prices shown
  state.currency = typeof body.currency === 'string' ? body.currency : 'USD';
  $('currency').textContent = state.currency;
  $('price-rows').setAttribute('aria-busy', 'false');
  recompute();
  return changed;
}

function showMinimum(id, minimum) {
  const element = $(`min-${id}`);
  element.textContent = minimum > 1n ? `min. ${Number(minimum).toLocaleString('en-US')}` : '';
  element.hidden = minimum <= 1n;
}

// ------------------------------------------------------------------------------------------ quantities

/** Reads the form: per type its parsed quantity (or error); the quote when everything is valid. */
function readForm() {
  const lines = [];
  let valid = true;
  let any = false;
  const quantities = {};
  for (const { id, label } of CREDIT_TYPES) {
    const input = $(`qty-${id}`);
    let parsed = parseQuantity(input ? input.value : '');
    const tooFew = !parsed.error && state.prices && minimumQuantityError(parsed.value, state.prices[id].minimum, label);
    if (tooFew) parsed = { error: tooFew };
    quantities[id] = parsed;
    if (parsed.error) valid = false;
    else if (parsed.value > 0n) any = true;
    if (!parsed.error && state.prices) lines.push({ creditType: id, quantity: parsed.value, rateUnits: state.prices[id].units });
  }
  return { quantities, valid, any, quote: state.prices ? quote(lines) : null };
}

function recompute() {
  const form = readForm();
  for (const { id } of CREDIT_TYPES) {
    const input = $(`qty-${id}`);
    if (!input) continue;
    const parsed = form.quantities[id];
    const error = $(`err-${id}`);
    input.setAttribute('aria-invalid', parsed.error ? 'true' : 'false');
    error.textContent = parsed.error ?? '';
    error.hidden = !parsed.error;
    const line = form.quote?.lines.find((l) => l.creditType === id);
    $(`subtotal-${id}`).textContent = line ? formatCents(line.cents) : '—';
  }
  $('total').textContent = form.quote && form.valid ? formatCents(form.quote.totalCents) : '—';
  const block = renderCredit(form);
  const button = $('buy');
  button.disabled = !(state.prices && form.valid && form.any && !state.inFlight && state.api && state.credit.loaded && !block);
  // Say why Confirm is off when the account's standing is the reason (only visible messages describe it).
  const reasons = block ? (block.reason === 'over_limit' ? ['credit-over'] : block.reason === 'hold' ? ['hold', 'credit'] : ['credit']) : [];
  if (reasons.length) button.setAttribute('aria-describedby', reasons.join(' '));
  else button.removeAttribute('aria-describedby');
  return form;
}

function resetForm() {
  for (const { id } of CREDIT_TYPES) {
    const input = $(`qty-${id}`);
    if (input) input.value = '';
  }
  recompute();
}

// ------------------------------------------------------------------------------------------ pay-later line

/** Sets `element`'s text only when it changes (a live region must not re-announce the same sentence). */
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** The hold banner: which statement to pay. */
function renderHold(statementId) {
  const banner = $('hold');
  if (!statementId) {
    banner.hidden = true;
    banner.replaceChildren();
    delete banner.dataset.statementId;
    return;
  }
  if (banner.dataset.statementId === statementId && !banner.hidden) return;
  const title = document.createElement('p');
  const strong = document.createElement('strong');
  strong.textContent = 'Purchases are on hold';
  title.append(strong);
  const line = document.createElement('p');
  const code = document.createElement('code');
  code.id = 'hold-statement';
  code.textContent = statementId;
  line.append('Statement ', code, ' is unpaid (its payment failed or is overdue). ');
  line.append('You cannot buy credits until it is paid: please pay it, or contact your agency.');
  banner.replaceChildren(title, line);
  banner.dataset.statementId = statementId;
  banner.hidden = false;
  renderHoldSettlement();
}

/** How the held statement is being settled (declined, retried on …), once the statements are read. */
function renderHoldSettlement() {
  const banner = $('hold');
  const statementId = banner.dataset.statementId;
  const settled = statementId ? settlementOf(statementId) : null;
  const shown = $('hold-settlement');
  if (!settled) return shown?.remove();
  if (shown?.textContent === `${settled.text}.`) return;
  const line = document.createElement('p');
  line.id = 'hold-settlement';
  line.textContent = `${settled.text}.`;
  if (shown) shown.replaceWith(line);
  else banner.append(line);
}

/** What #credit shows now, so that typing does not rebuild it on every keystroke. */
let lastCreditRender = '';

/**
 * Shows the pay-later line and whether the total fits in it; returns what stops this purchase (purchaseBlock),
 * or null.
 */
function renderCredit(form) {
  const { loaded, line, hold, problem } = state.credit;
  const credit = $('credit');
  const over = $('credit-over');
  renderHold(hold);
  const totalCents = form.quote && form.valid ? form.quote.totalCents : 0n;
  const block = loaded ? purchaseBlock({ line, hold }, totalCents) : null;

  let stateName;
  let main;
  let sub = '';
  if (!loaded) {
    stateName = 'loading';
    main = 'Checking how much you can buy on Pay Later…';
  } else if (hold) {
    stateName = 'hold';
    main = `Purchases are on hold until statement ${hold} is paid.`;
  } else if (line === null) {
    stateName = 'none';
    main = 'This account cannot buy on Pay Later: it has no Pay Later credit line. Please contact your agency.';
  } else if (line) {
    stateName = 'line';
    main = `You can buy up to ${formatCents(line.availableCents)} more on Pay Later.`;
    sub = `Credit limit ${formatCents(line.limitCents)}, of which ${formatCents(line.outstandingCents)} is not paid yet.`;
  } else if (problem) {
    stateName = 'unknown';
    main =
      problem === 'malformed'
        ? 'Your Pay Later credit could not be read. It is checked when you confirm.'
        : 'Your Pay Later credit could not be loaded right now. It is checked when you confirm.';
  } else {
    stateName = 'absent'; // a server that does not report the line: nothing to show
    main = '';
  }
  const rendered = `${stateName}\n${main}\n${sub}`;
  if (rendered !== lastCreditRender) {
    lastCreditRender = rendered;
    credit.dataset.state = stateName;
    const strongMain = document.createElement('span');
    strongMain.className = 'main';
    strongMain.textContent = main;
    const parts = [strongMain];
    if (sub) {
      const small = document.createElement('span');
      small.className = 'sub';
      small.textContent = sub;
      parts.push(small);
    }
    credit.replaceChildren(...parts);
  }
  credit.hidden = stateName === 'absent';

  setText(
    over,
    block?.reason === 'over_limit'
      ? `Your total of ${formatCents(block.totalCents)} is ${formatCents(block.excessCents)} more than the ` +
          `${formatCents(block.availableCents)} you can buy on Pay Later. Lower the quantities to confirm, ` +
          'or pay an open statement to free up credit.'
      : '',
  );
  return block;
}

/**
 * Takes the account's standing from a GET /balances body.
 * @param {import('../types/openapi').components['schemas']['BalancesResponse']} body
 */
function applyStanding(body) {
  const hold = typeof body.holdStatementId === 'string' && body.holdStatementId !== '' ? body.holdStatementId : null;
  if (!('creditLine' in body)) {
    state.credit = { loaded: true, line: undefined, hold, problem: null };
    return;
  }
  const line = parseCreditLine(body.creditLine);
  state.credit = { loaded: true, line, hold, problem: line === undefined ? 'malformed' : null };
}

/** The balances could not be read: keep what is known from an earlier read, else the line is not known. */
function standingUnavailable() {
  if (state.credit.loaded && state.credit.problem === null) return;
  state.credit = { loaded: true, line: undefined, hold: state.credit.hold, problem: 'unavailable' };
}

// ------------------------------------------------------------------------------------------ balances

/** @param {import('../types/openapi').components['schemas']['Balances']} balances */
function renderBalances(balances) {
  const list = $('balances-list');
  list.replaceChildren(
    ...CREDIT_TYPES.map(({ id, label }) => {
      const div = document.createElement('div');
      div.dataset.type = id;
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.id = `balance-${id}`;
      const value = balances?.[id];
      dd.textContent = Number.isSafeInteger(value) ? value.toLocaleString('en-US') : '—';
      div.append(dt, dd);
      return div;
    }),
  );
  list.hidden = false;
  $('balances-state').hidden = true;
}

/** Counts reads of GET /balances: only the newest answer is shown (an older one may arrive after it). */
let balancesReads = 0;

/** Reads GET /balances: the credits held and the pay-later line (refreshed after every purchase answer). */
async function loadBalances() {
  const read = ++balancesReads;
  let failure;
  try {
    const answer = await callApi('/balances');
    if (read !== balancesReads) return;
    if (answer.status === 200 && answer.body?.balances) {
      renderBalances(answer.body.balances);
      applyStanding(answer.body);
      recompute();
      return;
    }
    failure = `Balances are unavailable: ${explain(answer, 'loading your balances')}`;
  } catch {
    if (read !== balancesReads) return;
    failure = 'Balances are unavailable: the service could not be reached.';
  }
  standingUnavailable();
  recompute();
  // Balances already shown stay (a refresh failed); otherwise say why there are none.
  if ($('balances-list').hidden) {
    $('balances-state').textContent = failure;
    $('balances-state').hidden = false;
  }
}

/** The balances, the pay-later line and the ledger: everything a purchase (or a refusal) may have changed. */
function refreshAccount() {
  return Promise.all([loadBalances(), loadLedger((path) => callApi(path), explain), refreshStatements()]);
}

/** The statements (a refused purchase may mean a new hold, whose settlement the banner shows). */
async function refreshStatements({ more = false } = {}) {
  await loadStatements((path) => callApi(path), { more, explain });
  renderHoldSettlement();
}

async function loadPricing() {
  try {
    const answer = await callApi('/pricing');
    if (answer.status === 200) {
      if (!applyPricing(answer.body)) showPricesUnavailable('the prices received were not valid.');
      return;
    }
    showPricesUnavailable(explain(answer, 'loading prices'));
    if (answer.status === 401 || answer.status === 403) {
      showAlert({ tone: 'error', title: 'Cannot load your prices', lines: [explain(answer, 'loading prices')] });
    }
  } catch {
    showPricesUnavailable('the service could not be reached. Check your connection and reload the page.');
  }
}

// ------------------------------------------------------------------------------------------ purchase

/** The message for a 402 from the purchase route; updates the standing with what the answer says. */
function explainPaymentRequired(body, totalCents) {
  const code = body?.code;
  if (code === 'credit_limit_exceeded') {
    const available = decimalToCents(body.availableCredit);
    const requested = decimalToCents(body.requestedTotal) ?? totalCents;
    if (available !== null && state.credit.line) state.credit.line = { ...state.credit.line, availableCents: available };
    return {
      tone: 'error',
      title: 'Not enough Pay Later credit — nothing was charged',
      lines: [
        available !== null
          ? `This purchase (${formatCents(requested)}) is more than the ${formatCents(available)} you can still buy on Pay Later.`
          : `This purchase (${formatCents(requested)}) is more than you can still buy on Pay Later.`,
        'Another purchase (from another tab or person on this account) may have used some of it since this page loaded. ' +
          'Lower the quantities, or pay an open statement to free up credit.',
      ],
    };
  }
  if (code === 'account_on_hold') {
    const statementId = typeof body.statementId === 'string' && body.statementId ? body.statementId : null;
    if (statementId) state.credit.hold = statementId;
    return {
      tone: 'error',
      title: 'Your account is on hold — nothing was charged',
      lines: [
        statementId
          ? `Statement ${statementId} is unpaid (its payment failed or is overdue). You cannot buy credits until it is paid.`
          : 'A statement is unpaid (its payment failed or is overdue). You cannot buy credits until it is paid.',
        'Please pay it, or contact your agency.',
      ],
    };
  }
  if (code === 'agency_credit_limit_exceeded') {
    return {
      tone: 'error',
      title: 'Pay Later purchases are paused — nothing was charged',
      lines: ['Pay Later purchases are paused for your account right now. Please contact your agency.'],
    };
  }
  return {
    tone: 'error',
    title: 'The purchase did not go through — nothing was charged',
    lines: [explain({ status: 402, body }, 'confirming your purchase')],
  };
}

/** Sends one purchase, retrying network failures and 503s with the same key. Null means no answer at all. */
function sendPurchase(body, key) {
  return sendWithRetry(() =>
    callApi('/credit-purchases', { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body }),
  );
}

function describeQuantities(quantities) {
  return CREDIT_TYPES.filter(({ id }) => quantities[id] > 0)
    .map(({ id, label }) => `${Number(quantities[id]).toLocaleString('en-US')} ${label}`)
    .join(', ');
}

async function purchase() {
  const form = recompute();
  if ($('buy').disabled || !form.quote) return;
  const quantities = {};
  for (const { id } of CREDIT_TYPES) {
    const q = form.quantities[id].value;
    if (q > 0n) quantities[id] = Number(q);
  }
  const expectedTotal = centsToDecimal(form.quote.totalCents);
  const body = JSON.stringify({ quantities, expectedTotal });
  // A fresh key per click, except to settle an earlier identical click whose outcome we never learned.
  const key = state.unsettled?.body === body ? state.unsettled.key : crypto.randomUUID();
  state.unsettled = { body, key };

  state.inFlight = true;
  $('busy').hidden = false;
  const inputs = CREDIT_TYPES.map(({ id }) => $(`qty-${id}`));
  for (const input of inputs) input.readOnly = true; // what is sent is what is shown
  clearMessages();
  recompute();
  let answer;
  try {
    answer = await sendPurchase(body, key);
  } finally {
    state.inFlight = false;
    $('busy').hidden = true;
    for (const input of inputs) input.readOnly = false;
  }

  if (answer === null) {
    showAlert(
      {
        tone: 'error',
        title: 'We could not reach the service',
        lines: [
          'Your purchase may not have gone through. Check your connection and click Confirm Purchase again:',
          'retrying the same purchase is safe, you will not be charged twice.',
        ],
      },
      { focus: true },
    );
  } else if (answer.status === 201) {
    state.unsettled = null;
    const total = decimalToCents(answer.body?.purchase?.total) ?? form.quote.totalCents;
    const balances = answer.body?.balances;
    showStatus(
      {
        tone: 'ok',
        title: 'Purchase confirmed',
        lines: [
          `${describeQuantities(quantities)} credits are in your account now. ` +
            `Your agency will bill you ${formatCents(total)} at the end of the billing cycle.`,
          // The server omits balances when it could not read them right after the purchase.
          balances ? 'New balances:' : 'Your balances below are being refreshed.',
        ],
        list: balances
          ? CREDIT_TYPES.map(({ id, label }) => `${label}: ${Number(balances[id] ?? 0).toLocaleString('en-US')}`)
          : [],
      },
      { focus: true },
    );
    if (balances) renderBalances(balances);
    // The purchase took its total out of the line: exact at once, then confirmed by reading /balances again.
    state.credit.line = lineAfterPurchase(state.credit.line, total);
    resetForm();
    for (const { id } of CREDIT_TYPES) {
      $(`was-${id}`).hidden = true;
      $(`price-${id}`).closest('tr').classList.remove('changed');
    }
    refreshAccount();
  } else if (answer.status === 400 && answer.body?.code === 'line_below_minimum') {
    // The minimum may have moved since the prices were loaded: take the server's and mark the field.
    state.unsettled = null;
    const type = CREDIT_TYPES.find(({ id }) => id === answer.body.creditType);
    const minimum = parseMinimumQuantity(answer.body.minimumQuantity);
    if (type && minimum !== null && state.prices?.[type.id]) {
      state.prices[type.id].minimum = minimum;
      showMinimum(type.id, minimum);
    }
    const what = type ? `${type.label} credits` : 'credits of one type';
    const atLeast = minimum !== null && answer.body.minimumQuantity !== undefined ? ` at least ${Number(minimum).toLocaleString('en-US')}` : ' more';
    showAlert(
      {
        tone: 'error',
        title: 'The purchase did not go through — nothing was charged',
        lines: [
          `Too few ${what}: buy${atLeast} (fewer would cost less than a cent), or set the quantity to 0.`,
          'Change the quantity and click “Confirm Purchase (Pay Later)” again.',
        ],
      },
      { focus: true },
    );
  } else if (answer.status === 402) {
    // Refused by the pay-later rules (another tab or person may have bought meanwhile): nothing was charged.
    state.unsettled = null;
    showAlert(explainPaymentRequired(answer.body, form.quote.totalCents), { focus: true });
    refreshAccount(); // the line as it is now
  } else if (answer.status === 409 && answer.body?.code === 'price_changed') {
    state.unsettled = null;
    const changed = applyPricing(answer.body.currentPricing, { markChanges: true });
    if (!changed) {
      showPricesUnavailable('the new prices could not be read.');
      showAlert({ tone: 'error', title: 'Prices changed', lines: ['Please reload the page to see the current prices.'] }, { focus: true });
    } else {
      const now = readForm().quote;
      showAlert(
        {
          tone: 'warning',
          title: 'Prices changed — nothing was charged',
          lines: [
            `Prices changed since you opened this page. The table now shows the current prices: your total is ` +
              `${now ? formatCents(now.totalCents) : '—'} instead of ${formatCents(form.quote.totalCents)}.`,
            'Please review it and click “Confirm Purchase (Pay Later)” again to buy at the new prices.',
          ],
          list: changed.map((c) => `${c.label}: ${formatRate(c.before)} → ${formatRate(c.now)} per credit`),
        },
        { focus: true },
      );
    }
  } else {
    // A 4xx is a final answer; after a 5xx the key is kept (state.unsettled) so a retry cannot buy twice.
    if (answer.status < 500) state.unsettled = null;
    showAlert(
      {
        tone: 'error',
        title: answer.status === 503 ? 'Please try again' : 'The purchase did not go through',
        lines: [
          explain(answer, 'confirming your purchase'),
          ...(answer.status >= 500
            ? ['Clicking Confirm Purchase again with the same quantities is safe: you will never be charged twice.']
            : []),
        ],
      },
      { focus: true },
    );
  }
  recompute();
}

// ------------------------------------------------------------------------------------------ start

async function start() {
  $('purchase-form').addEventListener('submit', (event) => {
    event.preventDefault();
    purchase();
  });
  $('more-statements').addEventListener('click', () => refreshStatements({ more: true }));
  try {
    const config = await loadConfig({
      file: 'config.json',
      devFile: '/dev/config.json',
      field: 'accountId',
      claim: ACCOUNT_CLAIM,
      noId: 'No account: set accountId in config.json or sign in with a token carrying it.',
    });
    state.api = { ...config, accountId: config.id };
  } catch (err) {
    showPricesUnavailable('this panel is not configured.');
    $('balances-state').textContent = 'Balances are unavailable: this panel is not configured.';
    $('ledger-state').textContent = 'Credit movements are unavailable: this panel is not configured.';
    $('statements-state').textContent = 'Statements are unavailable: this panel is not configured.';
    $('alerts-save').disabled = true;
    $('topups-save').disabled = true;
    showAlert({ tone: 'error', title: 'This panel is not set up', lines: [err.message] });
    return;
  }
  $('account-id').textContent = state.api.accountId;
  $('account').hidden = false;
  $('dev-nav').hidden = !state.api.dev; // the link to the agency console exists in dev only
  await Promise.all([loadPricing(), refreshAccount(), loadRules((path, options) => callApi(path, options), explain)]);
}

start();
