// @ts-check
// The console's purchases section: the clients' purchases under this agency, and voiding one (same key on retry).
import { isCreditType, labelOf, sendWithRetry } from '../api.js';
import { $, count, el, money, shortTime, tableMessage } from '../ui.js';
import { callApi, clearSection, denyConsole, explain, isDenied, PAGE_SIZE, PURCHASE_STATUS, read, sectionMessage, state } from './common.js';
import { clientName, loadClients } from './clients.js';

function statusOf(purchase) {
  if (purchase.status && PURCHASE_STATUS[purchase.status]) return purchase.status;
  if (purchase.voidedAt) return 'voided';
  return purchase.billedToClient || purchase.billedToAgency ? 'billed' : 'unbilled';
}

/** @param {import('../../types/openapi').components['schemas']['AgencyPurchase']} purchase */
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
  // Made by the client's auto top-up rule inside a consumption, not by the client: said under its credits.
  if (purchase.trigger === 'auto_topup') credits.append(el('li', { className: 'sub auto-topup', textContent: 'Auto top-up' }));
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

export async function loadPurchases({ more = false } = {}) {
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

/** Sends one void, retrying network failures and 503s with the same key. Null means no answer at all. */
function sendVoid(purchaseId, body, key) {
  return sendWithRetry(() => callApi(`/purchases/${encodeURIComponent(purchaseId)}/void`, { method: 'POST', body, headers: { 'idempotency-key': key } }));
}

export async function voidPurchase(purchaseId, reason) {
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
        (isCreditType(type) ? `: its ${labelOf(type)} balance is ${short ?? 'some credits'} short of what the purchase added.` : '.'),
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
