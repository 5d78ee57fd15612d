// @ts-check
// What every section of the agency console shares: its state, the agency's API calls and their explanations,
// the section messages, and closing the whole console to a sign-in that may not use it.
import { callApiAt, explainAnswer } from '../api.js';
import { $, renderMessage, tableMessage } from '../ui.js';

export const AGENCY_CLAIM = 'custom:agency_id';
/** The clients table's columns (agency.html). */
export const CLIENT_COLUMNS = 10;
export const PAGE_SIZE = { clients: 25, purchases: 10, statements: 10 };

export const PURCHASE_STATUS = { unbilled: 'Unbilled', billed: 'Billed', voided: 'Voided' };

export const state = {
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

// ------------------------------------------------------------------------------------------ API client

/**
 * One call under this agency's path (see `callApiAt`); a `body` object is sent as JSON.
 * @param {string} path
 * @param {{ method?: string, body?: object, headers?: Record<string, string> }} [options]
 * @returns {Promise<import('../api.js').Answer>}
 */
export async function callApi(path, { method = 'GET', body, headers = {} } = {}) {
  const url = `${state.api.apiBaseUrl}/agencies/${encodeURIComponent(state.api.agencyId)}${path}`;
  const json = body !== undefined;
  return callApiAt(url, await state.api.getToken(), {
    method,
    headers: { ...(json ? { 'content-type': 'application/json' } : {}), ...headers },
    body: json ? JSON.stringify(body) : undefined,
  });
}

/** GET with a network failure turned into `{ status: 0 }`. */
export async function read(path) {
  try {
    return await callApi(path);
  } catch {
    return { status: 0, headers: new Headers(), body: null };
  }
}

/** The sentence for people from any non-success answer: the console's own 403, then the shared ones. */
export function explain(answer, doing) {
  if (answer.status === 403) {
    return answer.body?.code === 'forbidden'
      ? 'Your sign-in is for another agency: you can only see and change your own agency and its clients.'
      : 'Your sign-in is not an agency administrator’s: this console is for agency administrators only.';
  }
  return explainAnswer(answer, doing);
}

/** A section's problem (its role="alert" region) or good news (its role="status" region). */
export function sectionMessage(section, message, { focus = false } = {}) {
  const alert = $(`${section}-alert`);
  const status = $(`${section}-status`);
  const problem = message.tone === 'error' || message.tone === 'warning' || !status;
  const target = problem ? alert : status;
  const other = problem ? status : alert;
  if (other) other.hidden = true;
  renderMessage(target, message);
  if (focus) target.focus();
}

export function clearSection(section) {
  for (const id of [`${section}-alert`, `${section}-status`]) if ($(id)) $(id).hidden = true;
}

/** 401/403 on any read: the whole console is closed to this sign-in, said once at the top. */
export function denyConsole(answer) {
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
  for (const [tbody, columns] of /** @type {[string, number][]} */ ([
    ['price-rows', 6],
    ['client-rows', CLIENT_COLUMNS],
    ['purchase-rows', 8],
    ['statement-rows', 8],
  ])) {
    tableMessage($(tbody), columns, 'Not available with this sign-in.');
  }
  closeOverview('Not available with this sign-in.');
  $('save-prices').disabled = true;
  for (const id of ['more-clients', 'more-purchases', 'more-statements']) $(id).hidden = true;
}

export const isDenied = (answer) => answer.status === 401 || answer.status === 403;

/** The overview's sections when it cannot be shown: each list and the chart say why instead of "Loading". */
export function closeOverview(text) {
  for (const id of ['on-hold', 'near-limit', 'failed']) {
    $(`${id}-count`).textContent = '—';
    $(`${id}-empty`).textContent = text;
  }
  $('cycle-state').textContent = text;
  $('attention').setAttribute('aria-busy', 'false');
}
