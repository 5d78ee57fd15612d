// @ts-check
// Rendering shared by the client panel and the agency console: elements, messages, table placeholders, numbers and
// times for people. Money is the API's decimal strings, shown exactly (money.js).
import { formatMoney } from './money.js';

/** @param {string} id @returns {any} the element (the pages own their ids; a missing one is a page bug) */
export const $ = (id) => document.getElementById(id);

/**
 * An element with properties (or attributes, for aria-* and names the element does not have) and children.
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined)} children
 * @returns {any}
 */
export const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name in node && !name.startsWith('aria')) /** @type {any} */ (node)[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(.../** @type {(Node | string)[]} */ (children.filter((c) => c !== null && c !== undefined)));
  return node;
};

/** @typedef {{ tone?: 'ok' | 'error' | 'warning', title?: string, lines?: string[], list?: string[], actions?: Node[] }} Message */

/**
 * A message in its region: a bold title, paragraphs, a list and action buttons.
 * @param {HTMLElement} element
 * @param {Message} message
 */
export function renderMessage(element, { tone, title, lines = [], list = [], actions = [] }) {
  element.replaceChildren();
  element.className = `message${tone === 'error' ? ' error' : tone === 'warning' ? ' warning' : ''}`;
  if (title) element.append(el('p', {}, el('strong', { textContent: title })));
  for (const line of lines) element.append(el('p', { textContent: line }));
  if (list.length) element.append(el('ul', {}, ...list.map((item) => el('li', { textContent: item }))));
  if (actions.length) element.append(el('p', { className: 'message-actions' }, ...actions));
  element.hidden = false;
}

/**
 * One row across the table saying why it has no rows.
 * @param {HTMLElement} tbody
 * @param {number} columns
 * @param {string} text
 */
export function tableMessage(tbody, columns, text, className = 'unavailable') {
  tbody.replaceChildren(el('tr', { className }, el('td', { colSpan: columns, textContent: text })));
  tbody.setAttribute('aria-busy', 'false');
}

/** A decimal string from the API for people, exactly; a dash when the API sent something else. @param {unknown} text */
export const money = (text) => formatMoney(text) ?? '—';
/** @param {unknown} value */
export const count = (value) => (typeof value === 'number' && Number.isSafeInteger(value) ? value.toLocaleString('en-US') : '—');

/** "2026-11-26T03:41:07.123Z" → "2026-11-26 03:41" (UTC, as stored: no time zone guessing). @param {unknown} text */
export function shortTime(text) {
  const m = typeof text === 'string' ? /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(text) : null;
  return m ? `${m[1]} ${m[2]}` : String(text ?? '—');
}

/**
 * The day a statement is due, in the client's terms: dueAt is the end of that day anywhere on Earth (12:00 UTC
 * the next day; docs "Due dates"), so the day is the UTC date 12 hours before it. Older statements were due at
 * 00:00 UTC, the end of the UTC day before, which the same rule also names.
 * @param {unknown} text
 */
export function dueDay(text) {
  const at = Date.parse(String(text));
  if (Number.isNaN(at)) return String(text ?? '—');
  return `${new Date(at - 12 * 3600 * 1000 - 1).toISOString().slice(0, 10)} (end of day, any time zone)`;
}
