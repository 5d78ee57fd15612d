// @ts-check
// The console's prices section: the agency's price per credit type, its cost and margin, changed with If-Match.
import { CREDIT_TYPES, isCreditType, labelOf } from '../api.js';
import { $, el, money, tableMessage } from '../ui.js';
import { parseRate } from '../money.js';
import { callApi, clearSection, denyConsole, explain, isDenied, read, sectionMessage, state } from './common.js';

/** The ETag to send back: the header when the browser may read it, else the body's `version` (the same value). */
function etagOf(answer) {
  const header = answer.headers.get('etag');
  if (header) return header;
  return Number.isSafeInteger(answer.body?.version) ? `"${answer.body.version}"` : null;
}

/**
 * Validates a pricing body: one well-formed rate per credit type.
 * @param {import('../../types/openapi').components['schemas']['AgencyPricing']} body
 */
function readPricing(body) {
  if (!body || !Array.isArray(body.rates)) return null;
  const rates = {};
  for (const rate of body.rates) {
    if (!rate || !isCreditType(rate.creditType)) continue;
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
 * @param {import('../../types/openapi').components['schemas']['AgencyPricing']} body
 * @param {string | null} etag
 * @param {{ keep?: Record<string, { useDefault: boolean, text: string }> | null }} [options]
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

export async function loadPricing() {
  const answer = await read('/pricing');
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status === 200) {
    showPricing(answer.body, etagOf(answer));
    return;
  }
  tableMessage($('price-rows'), 6, `Prices are unavailable: ${explain(answer, 'loading prices')}`);
}

export async function savePrices() {
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
    if (isCreditType(type) && $(`new-price-${type}`)) {
      const input = $(`new-price-${type}`);
      setPriceError(type, text);
      input.dataset.serverError = input.value;
      input.focus();
    }
    sectionMessage('prices', {
      tone: 'error',
      title: 'The prices were not saved',
      lines: [isCreditType(type) ? `${labelOf(type)}: ${text}` : explain(answer, 'saving prices')],
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
