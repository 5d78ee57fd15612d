// @ts-check
// The panel's "Alerts and auto top-up": per credit type a low-balance alert threshold, and an auto top-up rule
// (below / buy) with the price per credit and what one top-up costs at it; each part saved on its own (a PUT that
// replaces the whole map), with a status message and each box's error tied to it. The rules: ../rules.js.
import { CREDIT_TYPES } from '../api.js';
import { alertsChange, alertsShown, fieldKey, todayText, topupCostText, topupsChange, topupsShown } from '../rules.js';
import { $, el } from '../ui.js';

/** @typedef {import('../api.js').Answer} Answer */
/** @typedef {(path: string, options?: { method?: string, body?: string, headers?: Record<string, string> }) => Promise<Answer>} CallApi */
/** @typedef {(answer: Answer, doing: string) => string} Explain */

const TYPES = CREDIT_TYPES.map(({ id }) => id);

/** The prices shown beside the top-up rules (credit type → "25.00"), from the panel's GET /pricing. */
let prices = /** @type {Record<string, string>} */ ({});

/**
 * One labelled number box with its error line (`aria-describedby` names the error and any note).
 * @param {string} id
 * @param {string} label
 * @param {string[]} [describedBy] more ids the box is described by
 */
function numberBox(id, label, describedBy = []) {
  const input = el('input', {
    id,
    type: 'text',
    inputMode: 'numeric',
    autocomplete: 'off',
    className: 'qty rule-input',
    maxLength: 9,
    'aria-describedby': [`err-${id}`, ...describedBy].join(' '),
  });
  const error = el('span', { id: `err-${id}`, className: 'field-error', hidden: true });
  return el('div', { className: 'rule-field' }, el('label', { htmlFor: id, textContent: label }), input, error);
}

function build() {
  $('alerts-fields').replaceChildren(
    ...CREDIT_TYPES.map(({ id, label }) =>
      el('div', { className: 'rule-row', dataset: { type: id } }, numberBox(`alert-${id}`, `${label}: alert below`, ['alerts-note'])),
    ),
  );
  $('topups-fields').replaceChildren(
    ...CREDIT_TYPES.map(({ id, label }) =>
      el(
        'fieldset',
        { className: 'rule-row topup', dataset: { type: id } },
        el('legend', { textContent: label }),
        numberBox(`topup-below-${id}`, 'When the balance would fall below', [`topup-cost-${id}`]),
        numberBox(`topup-buy-${id}`, 'Buy this many credits', [`topup-cost-${id}`]),
        el('p', { id: `topup-cost-${id}`, className: 'topup-cost note' }),
      ),
    ),
  );
  for (const { id } of CREDIT_TYPES) {
    $(`topup-buy-${id}`).addEventListener('input', () => showCost(id));
    for (const box of [`alert-${id}`, `topup-below-${id}`, `topup-buy-${id}`]) {
      $(box).addEventListener('input', () => markError(box, null));
    }
  }
}

/** The price per credit and what one top-up costs at it, under the type's rule. @param {string} type */
function showCost(type) {
  $(`topup-cost-${type}`).textContent = topupCostText(prices[type], $(`topup-buy-${type}`).value);
}

/**
 * The prices the panel shows (after GET /pricing, or new ones after a 409): the top-up costs follow them.
 * @param {object} shown credit type → `{ text: "25.00", ... }`, as app.js keeps the prices
 */
export function showRulePrices(shown) {
  prices = Object.fromEntries(Object.entries(shown).map(([type, price]) => [type, String(price?.text)]));
  if ($(`topup-cost-${TYPES[0]}`)) for (const type of TYPES) showCost(type);
}

/** @param {string} box @param {string | null} message */
function markError(box, message) {
  const error = $(`err-${box}`);
  error.textContent = message ?? '';
  error.hidden = !message;
  if (message) $(box).setAttribute('aria-invalid', 'true');
  else $(box).removeAttribute('aria-invalid');
}

/**
 * Shows each error by its box (keys as rules.js gives them) and clears the others; focuses the first wrong box.
 * @param {'alerts' | 'topups'} part
 * @param {Record<string, string>} errors
 */
function showErrors(part, errors) {
  const boxes =
    part === 'alerts'
      ? TYPES.map((type) => [type, `alert-${type}`])
      : TYPES.flatMap((type) => [[`${type}.below`, `topup-below-${type}`], [`${type}.buy`, `topup-buy-${type}`]]);
  let first = null;
  for (const [key, box] of boxes) {
    markError(box, errors[key] ?? null);
    if (errors[key] && !first) first = box;
  }
  if (first) $(first).focus();
}

/** @param {'alerts' | 'topups'} part @param {string} text @param {'ok' | 'error' | 'busy'} tone */
function status(part, text, tone) {
  const element = $(`${part}-status`);
  element.textContent = text;
  element.dataset.tone = tone;
}

/** @param {Record<string, string>} thresholds */
function fillAlerts(thresholds) {
  for (const type of TYPES) $(`alert-${type}`).value = thresholds[type] ?? '';
}

/** @param {NonNullable<ReturnType<typeof topupsShown>>} shown */
function fillTopups(shown) {
  for (const type of TYPES) {
    $(`topup-below-${type}`).value = shown.rules[type].below;
    $(`topup-buy-${type}`).value = shown.rules[type].buy;
    showCost(type);
  }
  $('topups-today').textContent = todayText(shown.topupsToday, shown.dailyCap);
  $('topups-today').hidden = false;
}

/**
 * Saves one part: checks the boxes, sends the PUT, shows the stored state or what is wrong.
 * @param {'alerts' | 'topups'} part
 * @param {CallApi} callApi
 * @param {Explain} explain
 */
async function save(part, callApi, explain) {
  const { body, errors } =
    part === 'alerts'
      ? alertsChange(Object.fromEntries(TYPES.map((type) => [type, $(`alert-${type}`).value])))
      : topupsChange(
          Object.fromEntries(TYPES.map((type) => [type, { below: $(`topup-below-${type}`).value, buy: $(`topup-buy-${type}`).value }])),
        );
  showErrors(part, errors);
  const what = part === 'alerts' ? 'alerts' : 'auto top-up rules';
  if (Object.keys(errors).length) {
    status(part, `Not saved: check the ${Object.keys(errors).length === 1 ? 'marked box' : 'marked boxes'}.`, 'error');
    return;
  }
  const button = $(`${part}-save`);
  button.disabled = true;
  status(part, `Saving your ${what}…`, 'busy');
  let answer;
  try {
    answer = await callApi(`/${part}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch {
    answer = null;
  } finally {
    button.disabled = false;
  }
  if (answer?.status === 200) {
    const shownAlerts = part === 'alerts' ? alertsShown(answer.body, TYPES) : null;
    const shownTopups = part === 'topups' ? topupsShown(answer.body, TYPES) : null;
    if (shownAlerts) fillAlerts(shownAlerts);
    if (shownTopups) fillTopups(shownTopups);
    status(part, `Your ${what} are saved. They apply from your next use of credits.`, 'ok');
  } else if (answer?.status === 400 && fieldKey(answer.body?.field)) {
    showErrors(part, { [/** @type {string} */ (fieldKey(answer.body.field))]: answer.body.detail ?? 'Not accepted.' });
    status(part, 'Not saved: check the marked box.', 'error');
  } else {
    status(part, `Not saved: ${answer ? explain(answer, `saving your ${what}`) : 'the service could not be reached. Please try again.'}`, 'error');
  }
}

/**
 * Builds the section and reads both parts (once, at start: a later refresh would overwrite what is being typed).
 * @param {CallApi} callApi the panel's account-scoped API call
 * @param {Explain} explain
 */
export async function loadRules(callApi, explain) {
  build();
  $('alerts-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    save('alerts', callApi, explain);
  });
  $('topups-form').addEventListener('submit', (/** @type {Event} */ event) => {
    event.preventDefault();
    save('topups', callApi, explain);
  });
  for (const type of TYPES) showCost(type);
  const read = async (part) => {
    try {
      const answer = await callApi(`/${part}`);
      if (answer.status !== 200) return `could not be loaded: ${explain(answer, `loading your ${part === 'alerts' ? 'alerts' : 'auto top-up rules'}`)}`;
      const shown = part === 'alerts' ? alertsShown(answer.body, TYPES) : topupsShown(answer.body, TYPES);
      if (!shown) return 'could not be read.';
      if (part === 'alerts') fillAlerts(/** @type {Record<string, string>} */ (shown));
      else fillTopups(/** @type {NonNullable<ReturnType<typeof topupsShown>>} */ (shown));
      return null;
    } catch {
      return 'could not be loaded: the service could not be reached.';
    }
  };
  const [alerts, topups] = await Promise.all([read('alerts'), read('topups')]);
  // Saving replaces the whole map: never from boxes that do not show what is stored.
  if (alerts) status('alerts', `Your alerts ${alerts}`, 'error');
  if (topups) status('topups', `Your auto top-up rules ${topups}`, 'error');
  $('alerts-save').disabled = Boolean(alerts);
  $('topups-save').disabled = Boolean(topups);
}
