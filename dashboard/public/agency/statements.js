// @ts-check
// The console's statements section: the agency's own statements at cost.
import { statusLabel, settlement } from '../settlement.js';
import { $, count, dueDay, el, money, shortTime, tableMessage } from '../ui.js';
import { denyConsole, explain, isDenied, PAGE_SIZE, read, sectionMessage, state } from './common.js';

/**
 * How the platform collects this statement from the agency's card, once collection has a story to tell (the
 * settlement contract's `collection` and `paidAt`; the "Due by" column already says when it is due).
 * @param {import('../settlement.js').Settleable} statement
 */
function collectionText(statement) {
  if (!(statement.collection && typeof statement.collection === 'object') && typeof statement.paidAt !== 'string') return null;
  const settled = settlement(statement);
  return settled ? el('span', { className: `sub settlement tone-${settled.tone}`, dataset: { field: 'collection' }, textContent: settled.text }) : null;
}

/** @param {import('../../types/openapi').components['schemas']['Statement']} statement */
function statementRow(statement) {
  const status = typeof statement.status === 'string' ? statement.status : '';
  return el(
    'tr',
    { id: `statement-${statement.statementId}`, dataset: { statement: statement.statementId, status } },
    el('th', { scope: 'row', className: 'id', dataset: { label: 'Statement' }, textContent: statement.statementId }),
    el('td', { dataset: { label: 'Cycle end' }, textContent: shortTime(statement.cycleEnd) }),
    el(
      'td',
      { dataset: { label: 'Status' } },
      el('span', { className: `badge status-${status}`, dataset: { field: 'status' }, textContent: statusLabel(status) }),
      collectionText(statement),
    ),
    el('td', { className: 'num', dataset: { label: 'Purchases' }, textContent: count(statement.purchaseCount) }),
    el('td', { className: 'num', dataset: { label: 'Total', field: 'total' }, textContent: money(statement.total) }),
    el('td', { className: 'num', dataset: { label: 'Paid', field: 'paid' }, textContent: money(statement.amountPaid) }),
    el('td', { className: 'num', dataset: { label: 'Due', field: 'due' }, textContent: money(statement.amountDue) }),
    el('td', { dataset: { label: 'Due by' }, textContent: statement.dueAt ? dueDay(statement.dueAt) : '—' }),
  );
}

export async function loadStatements({ more = false } = {}) {
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
