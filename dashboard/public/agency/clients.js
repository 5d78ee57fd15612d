// @ts-check
// The console's clients section: each client's balances, Pay Later line (its limit set here), unbilled sums, and
// the agency's own line at cost.
import { CREDIT_TYPES } from '../api.js';
import { settlement, statusLabel } from '../settlement.js';
import { $, count, el, money, tableMessage } from '../ui.js';
import { centsToDecimal, decimalToCents } from '../money.js';
import { callApi, CLIENT_COLUMNS, denyConsole, explain, isDenied, PAGE_SIZE, read, sectionMessage, state } from './common.js';

export function clientName(accountId) {
  const client = state.clients.get(accountId);
  return client && typeof client.name === 'string' && client.name ? client.name : accountId;
}

/** @param {import('../../types/openapi').components['schemas']['AgencyClient']['creditLine']} line */
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

/**
 * The client's last statement: its status, what is due and how it is being settled (the settlement contract's
 * `lastStatement`; absent from an API that predates it, null before the client's first bill).
 * @param {import('../settlement.js').Settleable & { statementId?: string, amountDue?: string } | null | undefined} last
 */
function lastStatementCell(last) {
  const cell = el('td', { dataset: { label: 'Last statement', field: 'last-statement' } });
  if (!last || typeof last !== 'object') {
    cell.append(el('span', { className: 'sub', textContent: last === null ? 'None yet' : '—' }));
    return cell;
  }
  const status = typeof last.status === 'string' ? last.status : '';
  const settled = settlement(last);
  cell.dataset.status = status;
  const parts = [
    el('span', { className: `badge status-${status}`, textContent: statusLabel(status) }),
    last.amountDue !== undefined && last.amountDue !== '0.00' && status !== 'paid'
      ? el('span', { className: 'sub', dataset: { field: 'last-due' }, textContent: `${money(last.amountDue)} due` })
      : null,
    settled ? el('span', { className: `sub settlement tone-${settled.tone}`, dataset: { field: 'settlement' }, textContent: settled.text }) : null,
  ];
  cell.append(...parts.filter(Boolean));
  return cell;
}

/** @param {import('../../types/openapi').components['schemas']['AgencyClient'] & { lastStatement?: any }} client */
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
  const unbilled = client.unbilled ?? /** @type {Partial<typeof client.unbilled>} */ ({});
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
    lastStatementCell(client.lastStatement),
    el('td', { className: 'edit', dataset: { label: 'Set the credit limit' } }, form),
  );
}

function setFieldError(input, error, text) {
  input.setAttribute('aria-invalid', text ? 'true' : 'false');
  error.textContent = text ?? '';
  error.hidden = !text;
}

/** @param {import('../../types/openapi').components['schemas']['AgencyCreditLine']} line */
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

export async function loadClients({ more = false } = {}) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE.clients) });
  if (more && state.cursors.clients) query.set('cursor', state.cursors.clients);
  $('more-clients').disabled = true;
  const answer = await read(`/clients?${query}`);
  $('more-clients').disabled = false;
  if (isDenied(answer)) return denyConsole(answer);
  if (answer.status !== 200 || !Array.isArray(answer.body?.clients)) {
    const why = answer.status === 200 ? 'the answer was not valid.' : explain(answer, 'loading your clients');
    if (more) sectionMessage('clients', { tone: 'error', title: 'More clients could not be loaded', lines: [why] });
    else tableMessage($('client-rows'), CLIENT_COLUMNS, `Clients are unavailable: ${why}`);
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
  if (!$('client-rows').children.length) tableMessage($('client-rows'), CLIENT_COLUMNS, 'Your agency has no clients yet.', 'empty');
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
