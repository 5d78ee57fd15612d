// @ts-check
// The panel's "Recent credit movements": the newest entries of GET /ledger, each balance change with its signed
// quantities, reason and the balances right after it. Read again with the balances (app.js refreshAccount).
import { CREDIT_TYPES } from '../api.js';
import { $, el } from '../ui.js';

/** How many of the newest ledger entries are shown under the balances. */
const LEDGER_ROWS = 5;

/** Every entry type of GET /ledger, as the client reads it. */
const ENTRY_LABELS = {
  purchase: 'Purchase',
  consumption: 'Used',
  release: 'Returned',
  void: 'Voided',
  adjustment: 'Adjustment',
};

/** A purchase its auto top-up rule made (`"trigger": "auto_topup"`), as the movements name it. */
export const AUTO_TOPUP_LABEL = 'Auto top-up';

/** A map of credit type → whole number, known types only; null when anything else is in it. */
function readCounts(value) {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return null;
  const counts = {};
  for (const [type, count] of Object.entries(value)) {
    // An integer beyond 2^53 would arrive rounded: say it cannot be read rather than show a wrong count.
    if (!CREDIT_TYPES.some(({ id }) => id === type) || !Number.isSafeInteger(count)) return null;
    counts[type] = count;
  }
  return counts;
}

/**
 * The entries of a GET /ledger body, or null when anything in it is off (then none is shown).
 * @param {import('../../types/openapi').components['schemas']['LedgerPage']} body
 */
function readLedger(body) {
  if (!body || !Array.isArray(body.entries)) return null;
  const text = (value) => (typeof value === 'string' && value !== '' ? value : null);
  const entries = [];
  for (const entry of body.entries.slice(0, LEDGER_ROWS)) {
    const quantities = readCounts(entry?.quantities);
    const balancesAfter = readCounts(entry?.balancesAfter);
    if (!Object.hasOwn(ENTRY_LABELS, entry?.type) || !quantities || !balancesAfter || !text(entry.createdAt)) return null;
    entries.push({
      entryId: text(entry.entryId) ?? '',
      type: entry.type,
      createdAt: entry.createdAt,
      quantities,
      balancesAfter,
      reason: text(entry.reason),
      reference: text(entry.reference),
      // What made a purchase: the client, or its auto top-up rule inside a consumption (absent: the client's).
      trigger: entry.type === 'purchase' && entry.trigger === 'auto_topup' ? 'auto_topup' : 'client',
    });
  }
  return entries;
}

/** "+10" or "−3" (a true minus sign, which screen readers say as "minus"), grouped like the balances. */
function signed(count) {
  const digits = Math.abs(count).toLocaleString('en-US');
  return count > 0 ? `+${digits}` : count < 0 ? `\u2212${digits}` : digits;
}

function whenText(createdAt) {
  const date = new Date(createdAt);
  if (Number.isNaN(date.getTime())) return createdAt;
  return date.toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' });
}

/** @param {import('../../types/openapi').components['schemas']['LedgerEntry']} entry */
function ledgerRow(entry) {
  const tr = document.createElement('tr');
  tr.dataset.type = entry.type;
  tr.dataset.entryId = entry.entryId;
  const auto = entry.type === 'purchase' && entry.trigger === 'auto_topup';
  if (auto) tr.dataset.trigger = 'auto_topup';
  const moved = CREDIT_TYPES.filter(({ id }) => entry.quantities[id] !== undefined && entry.quantities[id] !== 0);

  const when = document.createElement('th');
  when.scope = 'row';
  when.className = 'when';
  const time = document.createElement('time');
  time.dateTime = entry.createdAt;
  time.textContent = whenText(entry.createdAt);
  when.append(time);

  const cell = (className, label, content) => {
    const td = document.createElement('td');
    td.className = className;
    td.dataset.label = label;
    td.append(...content);
    return td;
  };
  const type = cell('type', 'Type', [auto ? el('span', { className: 'auto-topup', textContent: AUTO_TOPUP_LABEL }) : ENTRY_LABELS[entry.type]]);
  const change = cell(
    'change',
    'Change',
    moved.flatMap(({ id, label }, i) => {
      const span = document.createElement('span');
      span.className = entry.quantities[id] > 0 ? 'up' : 'down';
      span.textContent = `${signed(entry.quantities[id])} ${label}`;
      return i === 0 ? [span] : [', ', span];
    }),
  );
  const said = [entry.reason, entry.reference && `ref. ${entry.reference}`].filter(Boolean).join(' · ');
  const bought = auto ? 'Bought by your auto top-up rule, on Pay Later' : 'Bought on Pay Later';
  const reason = cell('reason', 'Reason', [said || (entry.type === 'purchase' ? bought : '—')]);
  const after = cell('after', 'Balance after', [
    moved.map(({ id, label }) => `${label} ${(entry.balancesAfter[id] ?? 0).toLocaleString('en-US')}`).join(', '),
  ]);
  tr.append(when, type, change, reason, after);
  return tr;
}

function renderLedger(entries) {
  $('ledger-rows').replaceChildren(...entries.map(ledgerRow));
  $('ledger-table').hidden = entries.length === 0;
  $('ledger-note').textContent = `Your last ${LEDGER_ROWS} movements at most, newest first; the balance after each is shown for the credit types it moved.`;
  $('ledger-note').hidden = entries.length === 0;
  $('ledger-state').textContent = 'No credit movements yet.';
  $('ledger-state').hidden = entries.length > 0;
}

/** Counts reads of GET /ledger: only the newest answer is shown, as for the balances. */
let ledgerReads = 0;
/** Whether a ledger read succeeded once: a failed refresh then leaves what is shown. */
let ledgerShown = false;

/** Reads the newest ledger entries (refreshed with the balances). */
/**
 * @param {(path: string) => Promise<import('../api.js').Answer>} callApi the panel's account-scoped API call
 * @param {(answer: import('../api.js').Answer, doing: string) => string} explain the panel's explanation of a refusal
 */
export async function loadLedger(callApi, explain) {
  const read = ++ledgerReads;
  let failure;
  try {
    const answer = await callApi(`/ledger?limit=${LEDGER_ROWS}`);
    if (read !== ledgerReads) return;
    const entries = answer.status === 200 ? readLedger(answer.body) : null;
    if (entries) {
      renderLedger(entries);
      ledgerShown = true;
      return;
    }
    failure =
      answer.status === 200
        ? 'Credit movements are unavailable: the answer could not be read.'
        : `Credit movements are unavailable: ${explain(answer, 'loading your credit movements')}`;
  } catch {
    if (read !== ledgerReads) return;
    failure = 'Credit movements are unavailable: the service could not be reached.';
  }
  if (!ledgerShown) {
    $('ledger-state').textContent = failure;
    $('ledger-state').hidden = false;
  }
}
