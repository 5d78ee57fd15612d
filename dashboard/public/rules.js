// @ts-check
// The client's alert thresholds and auto top-up rules, as the panel edits them: pure functions from what the user
// typed to the body a PUT sends (or the message tied to each field), from an answer to what the inputs show, and
// the figures beside them (what one top-up costs, today's top-ups). No DOM, so node:test checks every rule.
import { formatCents, formatRate, parseRate, subtotalCents } from './money.js';

/** @typedef {import('../types/openapi').components['schemas']} Schemas */
/** @typedef {'audience' | 'enrichment' | 'pixel' | 'custom_model'} CreditType */

/** The largest threshold, `below` or `buy` the API takes (the purchase's own bound). */
export const MAX_RULE_QUANTITY = 1_000_000;

/**
 * What the user typed in one rule box: empty is "no value" (null), else a whole number from 1 to 1,000,000.
 * @param {unknown} text
 * @returns {{ value: number | null } | { error: string }}
 */
export function parseRuleQuantity(text) {
  const trimmed = String(text ?? '').trim().replace(/,/g, '');
  if (trimmed === '') return { value: null };
  if (!/^\d+$/.test(trimmed)) return { error: 'Enter a whole number of credits, from 1 to 1,000,000.' };
  const value = Number(trimmed);
  if (value < 1 || value > MAX_RULE_QUANTITY) return { error: 'Enter a number from 1 to 1,000,000.' };
  return { value };
}

/**
 * The body of `PUT .../alerts` from the threshold boxes (an empty box: no alert for that type), or the message for
 * each box that is wrong (by type).
 * @param {Record<string, string>} typed credit type → the box's text
 * @returns {{ body: Schemas['AlertsChange'], errors: Record<string, string> }}
 */
export function alertsChange(typed) {
  /** @type {Record<string, number>} */
  const thresholds = {};
  /** @type {Record<string, string>} */
  const errors = {};
  for (const [type, text] of Object.entries(typed)) {
    const parsed = parseRuleQuantity(text);
    if ('error' in parsed) errors[type] = parsed.error;
    else if (parsed.value !== null) thresholds[type] = parsed.value;
  }
  return { body: { thresholds }, errors };
}

/**
 * The body of `PUT .../topups` from each type's two boxes: both empty is no rule, both set is a rule, one alone is
 * an error on the empty one. Errors are keyed `type.below` / `type.buy`.
 * @param {Record<string, { below: string, buy: string }>} typed
 * @returns {{ body: Schemas['TopupsChange'], errors: Record<string, string> }}
 */
export function topupsChange(typed) {
  /** @type {Record<string, { below: number, buy: number }>} */
  const rules = {};
  /** @type {Record<string, string>} */
  const errors = {};
  for (const [type, { below, buy }] of Object.entries(typed)) {
    const b = parseRuleQuantity(below);
    const n = parseRuleQuantity(buy);
    if ('error' in b) errors[`${type}.below`] = b.error;
    if ('error' in n) errors[`${type}.buy`] = n.error;
    if ('error' in b || 'error' in n) continue;
    if (b.value === null && n.value === null) continue;
    if (b.value === null) errors[`${type}.below`] = 'Enter the balance that starts a top-up, or clear both boxes.';
    else if (n.value === null) errors[`${type}.buy`] = 'Enter how many credits to buy, or clear both boxes.';
    else rules[type] = { below: b.value, buy: n.value };
  }
  return { body: { rules }, errors };
}

/** @param {unknown} value */
const isRuleQuantity = (value) => Number.isSafeInteger(value) && Number(value) >= 1 && Number(value) <= MAX_RULE_QUANTITY;

/**
 * The thresholds of a `GET`/`PUT .../alerts` answer as box texts (every known type; '' for none), or null when the
 * answer is not one (then nothing is shown as saved).
 * @param {any} body
 * @param {readonly CreditType[]} types
 * @returns {Record<string, string> | null}
 */
export function alertsShown(body, types) {
  const thresholds = body?.thresholds;
  if (!thresholds || typeof thresholds !== 'object' || Array.isArray(thresholds)) return null;
  if (Object.entries(thresholds).some(([type, value]) => !types.includes(/** @type {any} */ (type)) || !isRuleQuantity(value))) return null;
  return Object.fromEntries(types.map((type) => [type, thresholds[type] === undefined ? '' : String(thresholds[type])]));
}

/**
 * The rules, cap and today's count of a `GET`/`PUT .../topups` answer, or null when it is not one.
 * @param {any} body
 * @param {readonly CreditType[]} types
 * @returns {{ rules: Record<string, { below: string, buy: string }>, dailyCap: number, topupsToday: number } | null}
 */
export function topupsShown(body, types) {
  const rules = body?.rules;
  if (!rules || typeof rules !== 'object' || Array.isArray(rules)) return null;
  if (!Number.isSafeInteger(body.dailyCap) || body.dailyCap < 0 || !Number.isSafeInteger(body.topupsToday) || body.topupsToday < 0) {
    return null;
  }
  for (const [type, rule] of Object.entries(rules)) {
    if (!types.includes(/** @type {any} */ (type)) || !isRuleQuantity(rule?.below) || !isRuleQuantity(rule?.buy)) return null;
  }
  const shown = Object.fromEntries(
    types.map((type) => [type, rules[type] ? { below: String(rules[type].below), buy: String(rules[type].buy) } : { below: '', buy: '' }]),
  );
  return { rules: shown, dailyCap: body.dailyCap, topupsToday: body.topupsToday };
}

/**
 * What one top-up of `buy` credits costs at `price` (the API's price per credit), in words: the price shown, and the
 * cost when `buy` is a valid number. Money exactly as the server rounds a purchase line (money.js).
 * @param {string | undefined} price e.g. "25.00"; undefined while prices are not loaded
 * @param {string} buy the box's text
 */
export function topupCostText(price, buy) {
  const units = parseRate(price);
  if (units === null) return 'The price per credit is not known yet.';
  const perCredit = `${formatRate(String(price))} per credit`;
  const parsed = parseRuleQuantity(buy);
  if ('error' in parsed || parsed.value === null) return `At ${perCredit}.`;
  const cost = formatCents(subtotalCents(BigInt(parsed.value), units));
  return `At ${perCredit}, one top-up of ${parsed.value.toLocaleString('en-US')} credits costs ${cost}, on Pay Later.`;
}

/**
 * Today's auto top-ups against the cap: "1 of 3 today".
 * @param {number} topupsToday
 * @param {number} dailyCap
 */
export function todayText(topupsToday, dailyCap) {
  if (dailyCap === 0) return 'Auto top-up is turned off for your account (a daily limit of 0).';
  return `Auto top-ups: ${topupsToday.toLocaleString('en-US')} of ${dailyCap.toLocaleString('en-US')} today (UTC).`;
}

/**
 * The box a `400 invalid_field` names (`thresholds.audience`, `rules.pixel.buy`): its error key in
 * {@link alertsChange} / {@link topupsChange}, or null when it names no box (then the message is the section's).
 * @param {unknown} field
 */
export function fieldKey(field) {
  const m = typeof field === 'string' ? /^(?:thresholds\.([a-z_]+)|rules\.([a-z_]+)\.(below|buy))$/.exec(field) : null;
  if (!m) return null;
  return m[1] ?? `${m[2]}.${m[3]}`;
}
