// @ts-check
// The panel's "Your statements" section: the client's statements, newest cycle first, each with its amount, status
// and how it was (or will be) settled; and the settlement of the statement holding the account, for the hold banner.
import { $, el, money } from '../ui.js';
import { dayOf, settlement, statusLabel } from '../settlement.js';

/** @typedef {import('../api.js').Answer} Answer */
/** @typedef {import('../../types/openapi').components['schemas']['Statement'] & import('../settlement.js').Settleable} Statement */

/** Statements per page: the recent ones; older ones on request. */
const PAGE = 6;

/** statementId → statement, of every page shown (the hold banner asks for the held one). */
const known = new Map();
let cursor = /** @type {string | null} */ (null);
let reads = 0;

/**
 * @param {Statement} statement
 */
function statementRow(statement) {
  const status = typeof statement.status === 'string' ? statement.status : '';
  const settled = settlement(statement);
  const cycle = dayOf(statement.cycleEnd);
  return el(
    'tr',
    { id: `statement-${statement.statementId}`, dataset: { statement: statement.statementId, status } },
    el('th', { scope: 'row' }, cycle ? `Cycle ending ${cycle}` : statement.statementId),
    el('td', { className: 'num', dataset: { field: 'amount', label: 'Amount' } }, money(statement.total)),
    el('td', { dataset: { field: 'status', label: 'Status' } }, statusLabel(status)),
    el('td', { className: settled ? `settlement tone-${settled.tone}` : '', dataset: { field: 'settlement', label: 'Settlement' } }, settled?.text ?? '—'),
  );
}

/** @param {unknown} body @returns {Statement[] | null} */
function readPage(body) {
  const statements = /** @type {any} */ (body)?.statements;
  if (!Array.isArray(statements)) return null;
  return statements.filter((s) => s && typeof s.statementId === 'string' && typeof s.status === 'string');
}

/**
 * Reads the newest statements (or, with `more`, the next page) through `call` (the panel's account-scoped API call).
 * Resolves when shown; a failure is said in the section, never thrown.
 * @param {(path: string) => Promise<Answer>} call
 * @param {{ more?: boolean, explain: (answer: Answer, doing: string) => string }} options
 */
export async function loadStatements(call, { more = false, explain }) {
  const read = ++reads;
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (more && cursor) query.set('cursor', cursor);
  $('more-statements').disabled = true;
  /** @type {string} */
  let failure;
  try {
    const answer = await call(`/statements?${query}`);
    if (read !== reads) return;
    const page = answer.status === 200 ? readPage(answer.body) : null;
    if (page) {
      if (!more) {
        known.clear();
        $('statement-rows').replaceChildren();
      }
      for (const statement of page) {
        known.set(statement.statementId, statement);
        $('statement-rows').append(statementRow(statement));
      }
      cursor = typeof answer.body.nextCursor === 'string' && answer.body.nextCursor ? answer.body.nextCursor : null;
      const any = known.size > 0;
      $('statements-table').hidden = !any;
      $('statements-state').hidden = any;
      if (!any) $('statements-state').textContent = 'No statements yet: your agency bills you at the end of each billing cycle.';
      $('more-statements').hidden = !cursor;
      $('more-statements').disabled = false;
      return;
    }
    failure = answer.status === 200 ? 'the answer could not be read.' : explain(answer, 'loading your statements');
  } catch {
    if (read !== reads) return;
    failure = 'the service could not be reached.';
  }
  $('more-statements').disabled = false;
  $('statements-state').textContent = `${more ? 'Older statements' : 'Statements'} are unavailable: ${failure}`;
  $('statements-state').hidden = false;
}

/**
 * How the statement `statementId` is being settled, when it is one of the statements shown, for the hold banner.
 * @param {string} statementId
 */
export function settlementOf(statementId) {
  const statement = known.get(statementId);
  return statement ? settlement(statement) : null;
}
