// The agency console: plain ES module, no framework, no build step (like the client panel, app.js).
//
// Configuration (see dashboard/README.md): `agency-config.json` next to agency.html, else
// `/dev/agency-config.json` (served by the dev gateway only, with an agency administrator's dev token).
// Every figure comes from the agency API as a decimal string and is shown exactly: no floating point for money.

import { centsToDecimal, decimalToCents, formatMoney, parseRate } from './money.js';
import { callApiAt, claimsOf, fetchJson } from './load-config.js';

/** The credit types, in the order the API lists them. */
export const CREDIT_TYPES = [
  { id: 'audience', label: 'Audience' },
  { id: 'enrichment', label: 'Enrichment' },
  { id: 'pixel', label: 'Pixel' },
  { id: 'custom_model', label: 'Custom Model' },
];
const LABEL = Object.fromEntries(CREDIT_TYPES.map(({ id, label }) => [id, label]));
const labelOf = (type) => LABEL[type] ?? String(type);

const AGENCY_CLAIM = 'custom:agency_id';
/** Automatic retries of one void after a network failure or a 503, always with the same Idempotency-Key. */
const RETRY_DELAYS_MS = [400, 1200];
const PAGE_SIZE = { clients: 25, purchases: 10, statements: 10 };

const STATEMENT_STATUS = {
  building: 'Being billed',
  pending_payment: 'Awaiting payment',
  paid: 'Paid',
  payment_failed: 'Payment failed',
  overdue: 'Overdue',
};
const PURCHASE_STATUS = { unbilled: 'Unbilled', billed: 'Billed', voided: 'Voided' };

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name in node && !name.startsWith('aria')) node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
/** A decimal string from the API for people, exactly; a dash when the API sent something else. */
const money = (text) => formatMoney(text) ?? '—';
const count = (value) => (Number.isSafeInteger(value) ? value.toLocaleString('en-US') : '—');

const state = {
  /** { apiBaseUrl, agencyId, getToken, dev } once configured. */
  api: null,
  /** The GET pricing body and its ETag (what If-Match carries). */
  pricing: null,
  etag: null,
  savingPrices: false,
  /** accountId → client view, from GET /clients (names for the purchases). */
  clients: new Map(),
  cursors: { clients: null, purchases: null, statements: null },
  /** purchaseId → agency purchase view. */
  purchases: new Map(),
  /** A void whose outcome is unknown: voiding the same purchase again reuses its key (nothing is done twice). */
  unsettledVoid: null,
  voiding: null,
  /** Set when the token may not use the console at all (401/403): nothing else is loaded. */
  denied: false,
};

// ------------------------------------------------------------------------------------------ configuration

async function loadConfig() {
  const config =
    (await fetchJson(new URL('agency-config.json', document.baseURI))) ?? (await fetchJson('/dev/agency-config.json'));
  if (!config || typeof config !== 'object') throw new Error('agency-config.json is missing or is not valid JSON.');
  // A deployment supplies tokens through a module exporting getToken(); a static token is for local use only.
  let getToken = async () => config.token ?? null;
  if (typeof config.authModule === 'string' && config.authModule) {
    const auth = await import(new URL(config.authModule, document.baseURI).href);
    if (typeof auth.getToken !== 'function') throw new Error(`${config.authModule} does not export getToken().`);
    getToken = async () => auth.getToken();
  }
  let agencyId = typeof config.agencyId === 'string' && config.agencyId ? config.agencyId : null;
  if (!agencyId) {
    const token = await getToken();
    agencyId = token ? claimsOf(token)[AGENCY_CLAIM] ?? null : null;
  }
  if (!agencyId) {
    throw new Error('No agency: set agencyId in agency-config.json or sign in as an agency administrator.');
  }
  const apiBaseUrl = String(config.apiBaseUrl ?? '').replace(/\/+$/, '');
  return { apiBaseUrl, agencyId, getToken, dev: config.dev === true };
}

// ------------------------------------------------------------------------------------------ API client

/** One call under this agency's path (see `callApiAt`); a `body` object is sent as JSON. */
async function callApi(path, { method = 'GET', body, headers = {} } = {}) {
  const url = `${state.api.apiBaseUrl}/agencies/${encodeURIComponent(state.api.agencyId)}${path}`;
  const json = body !== undefined;
  return callApiAt(url, await state.api.getToken(), {
    method,
    headers: { ...(json ? { 'content-type': 'application/json' } : {}), ...headers },
    body: json ? JSON.stringify(body) : undefined,
  });
}

/** GET with a network failure turned into `{ status: 0 }`. */
async function read(path) {
  try {
    return await callApi(path);
  } catch {
    return { status: 0, headers: new Headers(), body: null };
  }
}

/** The sentence for people from any non-success answer, reading `detail` from problem+json. */
function explain(answer, doing) {
  const detail = answer.body && typeof answer.body.detail === 'string' ? answer.body.detail : null;
  switch (answer.status) {
    case 0:
      return `The service could not be reached while ${doing}. Check your connection and try again.`;
    case 401:
      return 'You are not signed in, or your session has expired. Please sign in again and reload this page.';
    case 403:
      return answer.body?.code === 'forbidden'
        ? 'Your sign-in is for another agency: you can only see and change your own agency and its clients.'
        : 'Your sign-in is not an agency administrator’s: this console is for agency administrators only.';
    case 502:
    case 503:
    case 504:
      return `The service is temporarily unavailable while ${doing}. Please try again in a moment.`;
    default:
      if (answer.status >= 500) return `Something went wrong on our side while ${doing}. Please try again.`;
      return detail ?? `The request was refused (HTTP ${answer.status}) while ${doing}.`;
  }
}

// ------------------------------------------------------------------------------------------ messages

function renderMessage(element, { tone, title, lines = [], list = [], actions = [] }) {
  element.replaceChildren();
  element.className = `message${tone === 'error' ? ' error' : tone === 'warning' ? ' warning' : ''}`;
  if (title) element.append(el('p', {}, el('strong', { textContent: title })));
  for (const line of lines) element.append(el('p', { textContent: line }));
  if (list.length) element.append(el('ul', {}, ...list.map((item) => el('li', { textContent: item }))));
  if (actions.length) element.append(el('p', { className: 'message-actions' }, ...actions));
  element.hidden = false;
}

/** A section's problem (its role="alert" region) or good news (its role="status" region). */
function sectionMessage(section, message, { focus = false } = {}) {
  const alert = $(`${section}-alert`);
  const status = $(`${section}-status`);
  const problem = message.tone === 'error' || message.tone === 'warning' || !status;
  const target = problem ? alert : status;
  const other = problem ? status : alert;
  if (other) other.hidden = true;
  renderMessage(target, message);
  if (focus) target.focus();
}

function clearSection(section) {
  for (const id of [`${section}-alert`, `${section}-status`]) if ($(id)) $(id).hidden = true;
}

function tableMessage(tbody, columns, text, className = 'unavailable') {
  tbody.replaceChildren(el('tr', { className }, el('td', { colSpan: columns, textContent: text })));
  tbody.setAttribute('aria-busy', 'false');
}

/** 401/403 on any read: the whole console is closed to this sign-in, said once at the top. */
function denyConsole(answer) {
  if (state.denied) return;
  state.denied = true;
  const notAdmin = answer.status === 403 && answer.body?.code !== 'forbidden';
  renderMessage($('alert'), {
    tone: 'error',
    title:
      answer.status === 401
        ? 'Please sign in again'
        : notAdmin
          ? 'You are not an agency administrator'
          : 'This is not your agency',
    lines: [
      explain(answer, 'opening the console'),
      ...(notAdmin ? ['Sign in with an agency administrator’s account (the agency-admin group) to use this console.'] : []),
    ],
  });
  $('alert').focus();
  for (const [tbody, columns] of [
    ['price-rows', 6],
    ['client-rows', 9],
    ['purchase-rows', 8],
    ['statement-rows', 8],
  ]) {
    tableMessage($(tbody), columns, 'Not available with this sign-in.');
  }
  $('save-prices').disabled = true;
  for (const id of ['more-clients', 'more-purchases', 'more-statements']) $(id).hidden = true;
}

const isDenied = (answer) => answer.status === 401 || answer.status === 403;

// ------------------------------------------------------------------------------------------ prices

/** The ETag to send back: the header when the browser may read it, else the body's `version` (the same value). */
function etagOf(answer) {
  const header = answer.headers.get('etag');
  if (header) return header;
  return Number.isSafeInteger(answer.body?.version) ? `"${answer.body.version}"` : null;
}

/** Validates a pricing body: one well-formed rate per credit type. */
function readPricing(body) {
  if (!body || !Array.isArray(body.rates)) return null;
  const rates = {};
  for (const rate of body.rates) {
    if (!rate || !LABEL[rate.creditType]) continue;
    if (parseRate(rate.price) === null || (rate.priceSource !== 'agency' && rate.priceSource !== 'default')) return null;
    rates[rate.creditType] = rate;
  }
  return CREDIT_TYPES.every(({ id }) => rates[id]) ? rates : null;
}

function buildPriceRows() {
  const rows = CREDIT_TYPES.map(({ id, label }) => {
    const inputId = `new-price-${id}`;
    const useDefault = el('input', { type: 'checkbox', id: `use-default-${id}`, className: 'use-default' });
    const input = el('input', {
      type: 'text',
      id: inputId,
      name: id,
      className: 'qty price-input',
      inputMode: 'decimal',
      autocomplete: 'off',
      maxLength: 20,
      'aria-describedby': `price-error-${id}`,
    });
    input.addEventListener('input', () => updatePriceForm());
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') event.preventDefault(); // saving is the button's job
    });
    useDefault.addEventListener('change', () => {
      const rate = state.pricing?.rates[id];
      if (useDefault.checked) input.value = rate?.defaultPrice ?? '';
      else if (rate) input.value = rate.price;
      updatePriceForm();
      if (!useDefault.checked) input.focus();
    });
    return el(
      'tr',
      { dataset: { type: id } },
      el('th', { scope: 'row', className: 'type', id: `type-${id}`, textContent: label }),
      el(
        'td',
        { className: 'num', dataset: { label: 'Price' } },
        el('span', { id: `price-${id}`, className: 'figure' }),
        el('span', { id: `source-${id}`, className: 'source' }),
      ),
      el('td', { className: 'num', dataset: { label: 'Cost' } }, el('span', { id: `cost-${id}`, className: 'figure' })),
      el('td', { className: 'num', dataset: { label: 'Margin' } }, el('span', { id: `margin-${id}`, className: 'figure' })),
      el('td', { className: 'num', dataset: { label: 'Margin %' } }, el('span', { id: `margin-percent-${id}`, className: 'figure' })),
      el(
        'td',
        { className: 'edit' },
        el('label', { htmlFor: inputId, className: 'visually-hidden', textContent: `New ${label} price` }),
        el('span', { className: 'dollar', 'aria-hidden': 'true', textContent: '$' }),
        input,
        el(
          'label',
          { className: 'check', htmlFor: useDefault.id },
          useDefault,
          el('span', { id: `use-default-label-${id}`, textContent: 'Use the default' }),
        ),
        el('span', { id: `price-error-${id}`, className: 'field-error', hidden: true }),
      ),
    );
  });
  $('price-rows').replaceChildren(...rows);
}

/**
 * Shows a pricing body. `keep`: the admin's unsaved edits (type → { useDefault, text }) to put back into the
 * form over the new figures (after a 412, so they can be applied again on top of the other person's prices).
 */
function showPricing(body, etag, { keep = null } = {}) {
  const rates = readPricing(body);
  if (!rates) {
    tableMessage($('price-rows'), 6, 'Prices are unavailable: the prices received were not valid.');
    state.pricing = null;
    updatePriceForm();
    return false;
  }
  if (!$(`price-${CREDIT_TYPES[0].id}`)) buildPriceRows();
  state.pricing = { body, rates };
  state.etag = etag;
  $('currency').textContent = typeof body.currency === 'string' ? body.currency : 'USD';
  for (const { id } of CREDIT_TYPES) {
    const rate = rates[id];
    $(`price-${id}`).textContent = money(rate.price);
    $(`source-${id}`).textContent =
      rate.priceSource === 'agency' ? `Your price (default ${money(rate.defaultPrice)})` : 'Default price';
    $(`source-${id}`).dataset.source = rate.priceSource;
    $(`cost-${id}`).textContent = money(rate.cost);
    $(`margin-${id}`).textContent = money(rate.margin);
    $(`margin-${id}`).classList.toggle('negative', typeof rate.margin === 'string' && rate.margin.startsWith('-'));
    $(`margin-percent-${id}`).textContent = typeof rate.marginPercent === 'string' ? `${rate.marginPercent}%` : '—';
    $(`use-default-label-${id}`).textContent = `Use the default (${money(rate.defaultPrice)})`;
    const edit = keep?.[id];
    $(`use-default-${id}`).checked = edit ? edit.useDefault : rate.priceSource === 'default';
    $(`new-price-${id}`).value = edit ? edit.text : rate.priceSource === 'default' ? rate.defaultPrice ?? '' : rate.price;
    setPriceError(id, null);
  }
  $('price-rows').setAttribute('aria-busy', 'false');
  updatePriceForm();
  return true;
}

function setPriceError(id, text) {
  const input = $(`new-price-${id}`);
  const error = $(`price-error-${id}`);
  if (!input) return;
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
  error.textContent = text ?? '';
  error.hidden = !text;
}

/** What the form asks for: per type the edit and, when it differs from the saved prices, the change to send. */
function readPriceForm() {
  const edits = {};
  const changes = {};
  const errors = {};
  if (!state.pricing) return { edits, changes, errors, valid: false };
  for (const { id, label } of CREDIT_TYPES) {
    const rate = state.pricing.rates[id];
    const useDefault = $(`use-default-${id}`).checked;
    const text = $(`new-price-${id}`).value.trim().replace(/^\$/, '');
    edits[id] = { useDefault, text };
    if (useDefault) {
      if (rate.priceSource === 'agency') changes[id] = null;
      continue;
    }
    const units = parseRate(text);
    if (text === '') errors[id] = `Enter a ${label} price, or tick “Use the default”.`;
    else if (units === null) errors[id] = 'Enter a price like 25.00: digits, with at most 4 decimal places.';
    else if (rate.priceSource === 'default' || units !== parseRate(rate.price)) changes[id] = text;
  }
  return { edits, changes, errors, valid: Object.keys(errors).length === 0 };
}

function updatePriceForm() {
  const form = readPriceForm();
  for (const { id } of CREDIT_TYPES) {
    if (!$(`new-price-${id}`)) continue;
    const input = $(`new-price-${id}`);
    input.disabled = $(`use-default-${id}`).checked || state.savingPrices;
    $(`use-default-${id}`).disabled = state.savingPrices;
    // Only what the admin typed is judged here; the server's refusals (422) stay until the field changes.
    const serverError = input.dataset.serverError;
    if (serverError && serverError === input.value) continue;
    delete input.dataset.serverError;
    setPriceError(id, form.errors[id] ?? null);
  }
  $('save-prices').disabled = !(state.pricing && form.valid && Object.keys(form.changes).length && !state.savingPrices && !state.denied);
  return form;
}

function describeChange(type, value) {
  return value === null
    ? `${labelOf(type)}: back to the default (${money(state.pricing.rates[type].defaultPrice)})`
    : `${labelOf(type)}: ${money(value)}`;
}

async function loadPricing() {
  const answer = await read('/pricing');
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status === 200) {
    showPricing(answer.body, etagOf(answer));
    return;
  }
  tableMessage($('price-rows'), 6, `Prices are unavailable: ${explain(answer, 'loading prices')}`);
}

async function savePrices() {
  const form = updatePriceForm();
  if (state.pricing && form.valid && !Object.keys(form.changes).length && !state.savingPrices) {
    // E.g. after a 412 whose prices already are the ones the admin wanted.
    sectionMessage('prices', { tone: 'ok', title: 'Nothing to save', lines: ['The prices already are what the form says.'] }, { focus: true });
    return;
  }
  if ($('save-prices').disabled) return;
  const changes = form.changes;
  state.savingPrices = true;
  $('prices-busy').hidden = false;
  clearSection('prices');
  updatePriceForm();
  let answer;
  try {
    answer = await callApi('/pricing', { method: 'PUT', body: { prices: changes }, headers: { 'if-match': state.etag ?? '"0"' } });
  } catch {
    answer = { status: 0, headers: new Headers(), body: null };
  } finally {
    state.savingPrices = false;
    $('prices-busy').hidden = true;
  }

  if (answer.status === 200) {
    const list = Object.entries(changes).map(([type, value]) => describeChange(type, value));
    showPricing(answer.body, etagOf(answer));
    sectionMessage('prices', { tone: 'ok', title: 'Prices saved', lines: ['Your clients pay these prices from now on:'], list }, { focus: true });
  } else if (answer.status === 412 && readPricing(answer.body?.currentPricing)) {
    // Someone else saved first: show theirs, keep ours in the form, let the admin apply them again.
    const theirs = answer.body.currentPricing;
    const mine = Object.fromEntries(Object.keys(changes).map((type) => [type, form.edits[type]]));
    showPricing(theirs, Number.isSafeInteger(theirs.version) ? `"${theirs.version}"` : null, { keep: mine });
    const rates = readPricing(theirs);
    const again = el('button', { type: 'button', id: 'reapply-prices', className: 'primary', textContent: 'Apply my changes again' });
    again.addEventListener('click', () => savePrices());
    sectionMessage(
      'prices',
      {
        tone: 'warning',
        title: 'Someone else changed these prices. Here are theirs:',
        list: CREDIT_TYPES.map(
          ({ id, label }) =>
            `${label}: ${money(rates[id].price)} (${rates[id].priceSource === 'agency' ? 'agency price' : 'default price'}), margin ${money(rates[id].margin)}`,
        ),
        lines: [
          'Nothing of yours was saved. The table now shows their prices; your changes are still in the form. ' +
            'Review them, then apply them again on top of theirs.',
        ],
        actions: [again],
      },
      { focus: true },
    );
    updatePriceForm();
  } else if (answer.status === 422 && (answer.body?.code === 'price_below_cost' || answer.body?.code === 'invalid_price')) {
    const type = answer.body.creditType;
    const text =
      answer.body.code === 'price_below_cost' && typeof answer.body.cost === 'string'
        ? `Below your cost of ${money(answer.body.cost)}: a sale would lose money. Set at least the cost.`
        : answer.body.detail ?? 'This price is not accepted.';
    if (LABEL[type] && $(`new-price-${type}`)) {
      const input = $(`new-price-${type}`);
      setPriceError(type, text);
      input.dataset.serverError = input.value;
      input.focus();
    }
    sectionMessage('prices', {
      tone: 'error',
      title: 'The prices were not saved',
      lines: [LABEL[type] ? `${labelOf(type)}: ${text}` : explain(answer, 'saving prices')],
    });
    updatePriceForm();
  } else if (isDenied(answer)) {
    sectionMessage('prices', { tone: 'error', title: 'The prices were not saved', lines: [explain(answer, 'saving prices')] }, { focus: true });
  } else {
    sectionMessage(
      'prices',
      {
        tone: 'error',
        title: 'The prices were not saved',
        lines: [explain(answer, 'saving prices'), ...(answer.status === 0 || answer.status >= 500 ? ['Your changes are still in the form: save again when the service is back.'] : [])],
      },
      { focus: true },
    );
    updatePriceForm();
  }
}

// ------------------------------------------------------------------------------------------ clients

function clientName(accountId) {
  const client = state.clients.get(accountId);
  return client && typeof client.name === 'string' && client.name ? client.name : accountId;
}

function lineCells(line) {
  if (!line || typeof line !== 'object') {
    return [
      el('td', { className: 'num', colSpan: 3, dataset: { label: 'Pay Later line' }, textContent: 'No Pay Later line' }),
    ];
  }
  return [
    el('td', { className: 'num', dataset: { label: 'Credit limit', field: 'limit' }, textContent: money(line.limit) }),
    el('td', { className: 'num', dataset: { label: 'Outstanding', field: 'outstanding' }, textContent: money(line.outstanding) }),
    el('td', { className: 'num', dataset: { label: 'Available', field: 'available' }, textContent: money(line.available) }),
  ];
}

function clientRow(client) {
  const id = client.accountId;
  const name = typeof client.name === 'string' && client.name ? client.name : id;
  const inputId = `limit-${id}`;
  const errorId = `limit-error-${id}`;
  const input = el('input', {
    type: 'text',
    id: inputId,
    className: 'qty limit-input',
    inputMode: 'decimal',
    autocomplete: 'off',
    maxLength: 20,
    value: client.creditLine?.limit ?? '',
    'aria-describedby': errorId,
  });
  const form = el(
    'form',
    { className: 'limit-form', noValidate: true },
    el('label', { htmlFor: inputId, className: 'visually-hidden', textContent: `New credit limit for ${name}` }),
    el('span', { className: 'dollar', 'aria-hidden': 'true', textContent: '$' }),
    input,
    el('button', { type: 'submit', className: 'secondary', textContent: 'Set limit', 'aria-label': `Set the credit limit of ${name}` }),
    el('span', { id: errorId, className: 'field-error', hidden: true }),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setLimit(id, form);
  });
  input.addEventListener('input', () => setFieldError(input, $(errorId), null));

  const balances = el(
    'ul',
    { className: 'balances-inline' },
    ...CREDIT_TYPES.map(({ id: type, label }) =>
      el('li', { dataset: { type } }, el('span', { className: 'k', textContent: label }), ' ', el('span', { className: 'v', textContent: count(client.balances?.[type]) })),
    ),
  );
  const unbilled = client.unbilled ?? {};
  const purchases = Number.isSafeInteger(unbilled.purchases) ? unbilled.purchases : null;
  const hold =
    typeof client.holdStatementId === 'string' && client.holdStatementId
      ? el('span', { className: 'badge hold-badge', textContent: `On hold: statement ${client.holdStatementId} unpaid` })
      : null;
  return el(
    'tr',
    { id: `client-${id}`, dataset: { account: id } },
    el('th', { scope: 'row', className: 'type' }, el('span', { className: 'client-name', textContent: name }), el('span', { className: 'sub id', textContent: id }), hold),
    el('td', { dataset: { label: 'Credits held' } }, balances),
    ...lineCells(client.creditLine),
    el(
      'td',
      { className: 'num', dataset: { label: 'Unbilled at price', field: 'unbilled' } },
      el('span', { className: 'figure', textContent: money(unbilled.atPrice) }),
      purchases !== null ? el('span', { className: 'sub', textContent: `${count(purchases)} purchase${purchases === 1 ? '' : 's'}` }) : null,
    ),
    el('td', { className: 'num', dataset: { label: 'At cost', field: 'at-cost' }, textContent: money(unbilled.atCost) }),
    el('td', { className: 'num', dataset: { label: 'Margin', field: 'margin' }, textContent: money(unbilled.margin) }),
    el('td', { className: 'edit', dataset: { label: 'Set the credit limit' } }, form),
  );
}

function setFieldError(input, error, text) {
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
  error.textContent = text ?? '';
  error.hidden = !text;
}

function showAgencyLine(line) {
  const p = $('agency-line');
  if (line && typeof line === 'object') {
    p.replaceChildren(
      el('span', { className: 'main', textContent: `Your agency can still buy ${money(line.available)} at cost on its line with the platform.` }),
      el('span', { className: 'sub', textContent: `Limit ${money(line.limit)} at cost, of which ${money(line.outstanding)} is not paid yet.` }),
    );
    p.hidden = false;
  } else {
    p.hidden = true;
  }
}

function refreshClientFilter() {
  const select = $('purchase-client');
  const chosen = select.value;
  select.replaceChildren(
    el('option', { value: '', textContent: 'all clients' }),
    ...[...state.clients.values()].map((c) => el('option', { value: c.accountId, textContent: `${clientName(c.accountId)} (${c.accountId})` })),
  );
  select.value = state.clients.has(chosen) ? chosen : '';
  // The purchases' client names come from this list; rows already shown get them too.
  for (const row of $('purchase-rows').querySelectorAll('tr[data-account]')) {
    const name = row.querySelector('.client-name');
    if (name) name.textContent = clientName(row.dataset.account);
  }
}

async function loadClients({ more = false } = {}) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE.clients) });
  if (more && state.cursors.clients) query.set('cursor', state.cursors.clients);
  $('more-clients').disabled = true;
  const answer = await read(`/clients?${query}`);
  $('more-clients').disabled = false;
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status !== 200 || !Array.isArray(answer.body?.clients)) {
    const why = answer.status === 200 ? 'the answer was not valid.' : explain(answer, 'loading your clients');
    if (more) sectionMessage('clients', { tone: 'error', title: 'More clients could not be loaded', lines: [why] });
    else tableMessage($('client-rows'), 9, `Clients are unavailable: ${why}`);
    return;
  }
  const { body } = answer;
  if (!more) {
    state.clients.clear();
    $('client-rows').replaceChildren();
    showAgencyLine(body.agencyCreditLine);
  }
  for (const client of body.clients) {
    if (!client || typeof client.accountId !== 'string') continue;
    state.clients.set(client.accountId, client);
    const existing = $(`client-${client.accountId}`);
    const row = clientRow(client);
    if (existing) existing.replaceWith(row);
    else $('client-rows').append(row);
  }
  if (!$('client-rows').children.length) tableMessage($('client-rows'), 9, 'Your agency has no clients yet.', 'empty');
  $('client-rows').setAttribute('aria-busy', 'false');
  state.cursors.clients = typeof body.nextCursor === 'string' && body.nextCursor ? body.nextCursor : null;
  $('more-clients').hidden = !state.cursors.clients;
  refreshClientFilter();
}

async function setLimit(accountId, form) {
  const input = form.querySelector('input');
  const error = form.querySelector('.field-error');
  const button = form.querySelector('button');
  const name = clientName(accountId);
  const typed = input.value.trim().replace(/^\$/, '').replace(/,/g, '');
  const cents = decimalToCents(typed);
  if (cents === null) {
    setFieldError(input, error, 'Enter an amount like 20000.00: digits, with at most 2 decimal places.');
    input.focus();
    return;
  }
  const creditLimit = centsToDecimal(cents);
  setFieldError(input, error, null);
  button.disabled = true;
  input.readOnly = true;
  let answer;
  try {
    answer = await callApi(`/clients/${encodeURIComponent(accountId)}/credit-limit`, { method: 'PUT', body: { creditLimit } });
  } catch {
    answer = { status: 0, headers: new Headers(), body: null };
  } finally {
    button.disabled = false;
    input.readOnly = false;
  }
  if (answer.status === 200 && answer.body?.creditLine) {
    const client = { ...(state.clients.get(accountId) ?? { accountId }), creditLine: answer.body.creditLine };
    state.clients.set(accountId, client);
    const row = clientRow(client);
    $(`client-${accountId}`)?.replaceWith(row);
    sectionMessage(
      'clients',
      {
        tone: 'ok',
        title: 'Credit limit set',
        lines: [
          `${name} can now buy up to ${money(answer.body.creditLine.limit)} on Pay Later ` +
            `(${money(answer.body.creditLine.available)} available now).`,
        ],
      },
      { focus: true },
    );
  } else if (answer.status === 422) {
    setFieldError(input, error, answer.body?.detail ?? 'This credit limit is not accepted.');
    input.focus();
  } else {
    const lines =
      answer.status === 404
        ? [`${name} is not one of your agency’s clients (any more). Reload the page to see your clients.`]
        : [explain(answer, 'setting the credit limit')];
    sectionMessage('clients', { tone: 'error', title: `The credit limit of ${name} was not changed`, lines }, { focus: true });
  }
}

// ------------------------------------------------------------------------------------------ purchases

/** "2026-11-26T03:41:07.123Z" → "2026-11-26 03:41" (UTC, as stored: no time zone guessing). */
/**
 * The day a statement is due, in the client's terms: dueAt is the end of that day anywhere on Earth (12:00 UTC
 * the next day; README "Due dates"), so the day is the UTC date 12 hours before it. Older statements were due at
 * 00:00 UTC, the end of the UTC day before, which the same rule also names.
 * @param {string} text
 */
function dueDay(text) {
  const at = Date.parse(text);
  if (Number.isNaN(at)) return String(text ?? '—');
  return `${new Date(at - 12 * 3600 * 1000 - 1).toISOString().slice(0, 10)} (end of day, any time zone)`;
}

function shortTime(text) {
  const m = typeof text === 'string' ? /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(text) : null;
  return m ? `${m[1]} ${m[2]}` : String(text ?? '—');
}

function statusOf(purchase) {
  if (purchase.status && PURCHASE_STATUS[purchase.status]) return purchase.status;
  if (purchase.voidedAt) return 'voided';
  return purchase.billedToClient || purchase.billedToAgency ? 'billed' : 'unbilled';
}

function purchaseRow(purchase) {
  const id = purchase.purchaseId;
  const status = statusOf(purchase);
  const lines = Array.isArray(purchase.lines) ? purchase.lines : [];
  const credits = el(
    'ul',
    { className: 'lines' },
    ...lines.map((line) =>
      el(
        'li',
        {},
        `${count(line.quantity)} ${labelOf(line.creditType)}`,
        el('span', { className: 'sub' }, ` at ${money(line.unitPrice)} (cost ${money(line.unitCost)})`),
      ),
    ),
  );
  let statusCell = el('span', { className: `badge status-${status}`, textContent: PURCHASE_STATUS[status] });
  if (status === 'voided' && purchase.voidedAt) {
    statusCell = el('span', {}, statusCell, el('span', { className: 'sub', textContent: `on ${shortTime(purchase.voidedAt)}` }));
  }
  const action =
    status === 'unbilled'
      ? el('button', {
          type: 'button',
          className: 'danger small void-button',
          textContent: 'Void',
          'aria-label': `Void purchase of ${shortTime(purchase.createdAt)} by ${clientName(purchase.accountId)}`,
        })
      : null;
  action?.addEventListener('click', () => askVoid(id));
  return el(
    'tr',
    { id: `purchase-${id}`, dataset: { account: purchase.accountId, purchase: id, status } },
    el('td', { dataset: { label: 'Date (UTC)' } }, el('time', { dateTime: purchase.createdAt ?? '', textContent: shortTime(purchase.createdAt) })),
    el('td', { dataset: { label: 'Client' } }, el('span', { className: 'client-name', textContent: clientName(purchase.accountId) })),
    el('td', { dataset: { label: 'Credits' } }, credits),
    el('td', { className: 'num', dataset: { label: 'Price', field: 'total' }, textContent: money(purchase.total) }),
    el('td', { className: 'num', dataset: { label: 'Cost', field: 'at-cost' }, textContent: money(purchase.totalAtCost) }),
    el('td', { className: 'num', dataset: { label: 'Margin', field: 'margin' }, textContent: money(purchase.margin) }),
    el('td', { dataset: { label: 'Status', field: 'status' } }, statusCell),
    el('td', { className: 'action' }, action),
  );
}

function showPurchase(purchase) {
  state.purchases.set(purchase.purchaseId, purchase);
  const row = purchaseRow(purchase);
  const existing = $(`purchase-${purchase.purchaseId}`);
  if (existing) existing.replaceWith(row);
  else $('purchase-rows').append(row);
}

/** Counts reads of the purchases: only the newest answer is shown (the filter may change meanwhile). */
let purchaseReads = 0;

async function loadPurchases({ more = false } = {}) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE.purchases) });
  const accountId = $('purchase-client').value;
  if (accountId) query.set('accountId', accountId);
  if (more && state.cursors.purchases) query.set('cursor', state.cursors.purchases);
  const reading = ++purchaseReads;
  $('more-purchases').disabled = true;
  const answer = await read(`/purchases?${query}`);
  if (reading !== purchaseReads) return;
  $('more-purchases').disabled = false;
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status !== 200 || !Array.isArray(answer.body?.purchases)) {
    const why = answer.status === 200 ? 'the answer was not valid.' : explain(answer, 'loading purchases');
    if (more) sectionMessage('purchases', { tone: 'error', title: 'More purchases could not be loaded', lines: [why] });
    else tableMessage($('purchase-rows'), 8, `Purchases are unavailable: ${why}`);
    return;
  }
  if (!more) {
    state.purchases.clear();
    $('purchase-rows').replaceChildren();
  }
  for (const purchase of answer.body.purchases) {
    if (purchase && typeof purchase.purchaseId === 'string') showPurchase(purchase);
  }
  if (!$('purchase-rows').children.length) {
    const none = accountId ? `${clientName(accountId)} has made no purchases yet.` : 'Your clients have made no purchases yet.';
    tableMessage($('purchase-rows'), 8, none, 'empty');
  }
  $('purchase-rows').setAttribute('aria-busy', 'false');
  state.cursors.purchases = typeof answer.body.nextCursor === 'string' && answer.body.nextCursor ? answer.body.nextCursor : null;
  $('more-purchases').hidden = !state.cursors.purchases;
}

function describeLines(purchase) {
  return (purchase.lines ?? []).map((line) => `${count(line.quantity)} ${labelOf(line.creditType)}`).join(', ');
}

function askVoid(purchaseId) {
  const purchase = state.purchases.get(purchaseId);
  if (!purchase || state.voiding) return;
  const dialog = $('void-dialog');
  dialog.dataset.purchase = purchaseId;
  $('void-summary').replaceChildren(
    el('p', {}, `Purchase of ${shortTime(purchase.createdAt)} UTC by `, el('strong', { textContent: clientName(purchase.accountId) }), `: ${describeLines(purchase)} credits, ${money(purchase.total)}.`),
    el('p', {
      textContent:
        'Voiding takes these credits back out of the client’s balance (refused if the client has already used them), ' +
        'gives the client and your agency their Pay Later credit back, and the purchase is never billed. It cannot be undone.',
    }),
  );
  $('void-reason').value = '';
  dialog.returnValue = '';
  dialog.showModal();
  $('void-cancel').focus(); // the safe choice first
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends one void, retrying network failures and 503s with the same key. Null means no answer at all. */
async function sendVoid(purchaseId, body, key) {
  for (let attempt = 0; ; attempt++) {
    let answer = null;
    try {
      answer = await callApi(`/purchases/${encodeURIComponent(purchaseId)}/void`, { method: 'POST', body, headers: { 'idempotency-key': key } });
    } catch {
      answer = null;
    }
    const retryable = answer === null || answer.status === 503;
    if (!retryable || attempt >= RETRY_DELAYS_MS.length) return answer;
    await sleep(RETRY_DELAYS_MS[attempt]);
  }
}

async function voidPurchase(purchaseId, reason) {
  const purchase = state.purchases.get(purchaseId);
  if (!purchase || state.voiding) return;
  const body = { accountId: purchase.accountId, ...(reason ? { reason } : {}) };
  const bodyText = JSON.stringify([purchaseId, body]);
  // A fresh key per attempt, except to settle an earlier identical attempt whose outcome we never learned.
  const key = state.unsettledVoid?.body === bodyText ? state.unsettledVoid.key : crypto.randomUUID();
  state.unsettledVoid = { body: bodyText, key };
  state.voiding = purchaseId;
  const row = $(`purchase-${purchaseId}`);
  const button = row?.querySelector('.void-button');
  if (button) {
    button.disabled = true;
    button.textContent = 'Voiding…';
  }
  clearSection('purchases');
  let answer;
  try {
    answer = await sendVoid(purchaseId, body, key);
  } finally {
    state.voiding = null;
  }
  const name = clientName(purchase.accountId);
  const what = `the purchase of ${shortTime(purchase.createdAt)} UTC (${describeLines(purchase)})`;
  const refused = (title, lines) => sectionMessage('purchases', { tone: 'error', title, lines }, { focus: true });

  if (answer?.status === 200 && answer.body?.purchase) {
    state.unsettledVoid = null;
    showPurchase({ ...purchase, ...answer.body.purchase });
    sectionMessage(
      'purchases',
      {
        tone: 'ok',
        title: 'Purchase voided',
        lines: [
          `${describeLines(purchase)} credits were taken back from ${name}, and ${money(purchase.total)} will not be billed.`,
        ],
      },
      { focus: true },
    );
    loadClients(); // balances, lines and unbilled sums changed
    return;
  }
  if (answer && answer.status < 500) state.unsettledVoid = null; // a final answer
  const code = answer?.body?.code;
  if (answer?.status === 409 && code === 'credits_already_used') {
    const type = answer.body.creditType;
    const short = answer.body.shortBy;
    refused('This purchase cannot be voided: the client has already used these credits', [
      `${name} has already used some of the credits of ${what}` +
        (LABEL[type] ? `: its ${labelOf(type)} balance is ${short ?? 'some credits'} short of what the purchase added.` : '.'),
      'Nothing was changed. The purchase will be billed as usual.',
    ]);
    showPurchase(purchase);
  } else if (answer?.status === 409 && code === 'purchase_already_billed') {
    refused('This purchase cannot be voided: it has been billed already', [
      `${name}’s ${what.slice('the '.length)} is on a statement now. A billed purchase is corrected on a statement, not voided.`,
      'Nothing was changed.',
    ]);
    showPurchase({ ...purchase, status: 'billed' });
  } else if (answer?.status === 409 && code === 'purchase_already_voided') {
    sectionMessage('purchases', { tone: 'warning', title: 'This purchase was voided already', lines: ['Nothing more was changed.'] }, { focus: true });
    showPurchase({ ...purchase, status: 'voided' });
  } else if (answer?.status === 404) {
    refused('This purchase was not found', [`None of your clients has this purchase (any more). Reload the page to see the current purchases.`]);
    showPurchase(purchase);
  } else if (answer === null || answer.status >= 500) {
    refused('We could not confirm the void', [
      answer === null ? 'The service could not be reached: the void may or may not have been done.' : explain(answer, 'voiding the purchase'),
      'Voiding it again is safe: it is never done twice.',
    ]);
    showPurchase(purchase);
  } else {
    refused('The purchase was not voided', [explain(answer, 'voiding the purchase')]);
    showPurchase(purchase);
  }
}

// ------------------------------------------------------------------------------------------ statements

function statementRow(statement) {
  const status = typeof statement.status === 'string' ? statement.status : '';
  return el(
    'tr',
    { id: `statement-${statement.statementId}`, dataset: { statement: statement.statementId, status } },
    el('th', { scope: 'row', className: 'id', dataset: { label: 'Statement' }, textContent: statement.statementId }),
    el('td', { dataset: { label: 'Cycle end' }, textContent: shortTime(statement.cycleEnd) }),
    el('td', { dataset: { label: 'Status', field: 'status' } }, el('span', { className: `badge status-${status}`, textContent: STATEMENT_STATUS[status] ?? status })),
    el('td', { className: 'num', dataset: { label: 'Purchases' }, textContent: count(statement.purchaseCount) }),
    el('td', { className: 'num', dataset: { label: 'Total', field: 'total' }, textContent: money(statement.total) }),
    el('td', { className: 'num', dataset: { label: 'Paid', field: 'paid' }, textContent: money(statement.amountPaid) }),
    el('td', { className: 'num', dataset: { label: 'Due', field: 'due' }, textContent: money(statement.amountDue) }),
    el('td', { dataset: { label: 'Due by' }, textContent: statement.dueAt ? dueDay(statement.dueAt) : '—' }),
  );
}

async function loadStatements({ more = false } = {}) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE.statements) });
  if (more && state.cursors.statements) query.set('cursor', state.cursors.statements);
  $('more-statements').disabled = true;
  const answer = await read(`/statements?${query}`);
  $('more-statements').disabled = false;
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status !== 200 || !Array.isArray(answer.body?.statements)) {
    const why = answer.status === 200 ? 'the answer was not valid.' : explain(answer, 'loading statements');
    if (more) sectionMessage('statements', { tone: 'error', title: 'More statements could not be loaded', lines: [why] });
    else tableMessage($('statement-rows'), 8, `Statements are unavailable: ${why}`);
    return;
  }
  if (!more) $('statement-rows').replaceChildren();
  for (const statement of answer.body.statements) {
    if (statement && typeof statement.statementId === 'string') $('statement-rows').append(statementRow(statement));
  }
  if (!$('statement-rows').children.length) {
    tableMessage($('statement-rows'), 8, 'No statements yet: the platform bills your agency at the end of each billing cycle.', 'empty');
  }
  $('statement-rows').setAttribute('aria-busy', 'false');
  state.cursors.statements = typeof answer.body.nextCursor === 'string' && answer.body.nextCursor ? answer.body.nextCursor : null;
  $('more-statements').hidden = !state.cursors.statements;
}

// ------------------------------------------------------------------------------------------ start

async function start() {
  $('prices-form').addEventListener('submit', (event) => {
    event.preventDefault();
    savePrices();
  });
  $('more-clients').addEventListener('click', () => loadClients({ more: true }));
  $('more-purchases').addEventListener('click', () => loadPurchases({ more: true }));
  $('purchase-client').addEventListener('change', () => loadPurchases());
  $('more-statements').addEventListener('click', () => loadStatements({ more: true }));
  $('void-dialog').addEventListener('close', () => {
    const dialog = $('void-dialog');
    const purchaseId = dialog.dataset.purchase;
    if (dialog.returnValue === 'confirm' && purchaseId) voidPurchase(purchaseId, $('void-reason').value.trim());
    else $(`purchase-${purchaseId}`)?.querySelector('.void-button')?.focus();
  });

  try {
    state.api = await loadConfig();
  } catch (err) {
    state.denied = true;
    renderMessage($('alert'), { tone: 'error', title: 'This console is not set up', lines: [err.message] });
    for (const [tbody, columns] of [['price-rows', 6], ['client-rows', 9], ['purchase-rows', 8], ['statement-rows', 8]]) {
      tableMessage($(tbody), columns, 'Not available: this console is not configured.');
    }
    return;
  }
  $('agency-id').textContent = state.api.agencyId;
  $('agency').hidden = false;
  $('dev-nav').hidden = !state.api.dev;
  // Clients first: the purchases show their names.
  await Promise.all([loadPricing(), loadClients(), loadStatements()]);
  if (!state.denied) await loadPurchases();
  document.body.dataset.ready = 'true';
}

start();
