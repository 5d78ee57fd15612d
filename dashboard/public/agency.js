// @ts-check
// The agency console: plain ES modules, no framework, no build step (like the client panel, app.js). One module per
// section under agency/ (prices, clients, purchases, statements; agency/common.js is what they share).
//
// Configuration (see dashboard/README.md): `agency-config.json` next to agency.html, else
// `/dev/agency-config.json` (served by the dev gateway only, with an agency administrator's dev token).
// Every figure comes from the agency API as a decimal string and is shown exactly: no floating point for money.

import { loadConfig } from './api.js';
import { $, renderMessage, tableMessage } from './ui.js';
import { loadClients } from './agency/clients.js';
import { AGENCY_CLAIM, CLIENT_COLUMNS, closeOverview, state } from './agency/common.js';
import { loadPricing, savePrices } from './agency/prices.js';
import { loadPurchases, voidPurchase } from './agency/purchases.js';
import { loadStatements } from './agency/statements.js';
import { loadOverview } from './agency/overview.js';

async function start() {
  $('prices-form').addEventListener('submit', (event) => {
    event.preventDefault();
    savePrices();
  });
  $('more-clients').addEventListener('click', () => loadClients({ more: true }));
  $('more-purchases').addEventListener('click', () => loadPurchases({ more: true }));
  $('purchase-client').addEventListener('change', () => loadPurchases());
  $('more-statements').addEventListener('click', () => loadStatements({ more: true }));
  $('void-dialog').addEventListener('close', () => {
    const dialog = $('void-dialog');
    const purchaseId = dialog.dataset.purchase;
    if (dialog.returnValue === 'confirm' && purchaseId) voidPurchase(purchaseId, $('void-reason').value.trim());
    else $(`purchase-${purchaseId}`)?.querySelector('.void-button')?.focus();
  });

  try {
    const config = await loadConfig({
      file: 'agency-config.json',
      devFile: '/dev/agency-config.json',
      field: 'agencyId',
      claim: AGENCY_CLAIM,
      noId: 'No agency: set agencyId in agency-config.json or sign in as an agency administrator.',
    });
    state.api = { ...config, agencyId: config.id };
  } catch (err) {
    state.denied = true;
    renderMessage($('alert'), { tone: 'error', title: 'This console is not set up', lines: [err.message] });
    for (const [tbody, columns] of /** @type {[string, number][]} */ ([['price-rows', 6], ['client-rows', CLIENT_COLUMNS], ['purchase-rows', 8], ['statement-rows', 8]])) {
      tableMessage($(tbody), columns, 'Not available: this console is not configured.');
    }
    closeOverview('Not available: this console is not configured.');
    return;
  }
  $('agency-id').textContent = state.api.agencyId;
  $('agency').hidden = false;
  $('dev-nav').hidden = !state.api.dev;
  // Clients first: the purchases show their names (and the overview's lists link to their rows).
  await Promise.all([loadOverview(), loadPricing(), loadClients(), loadStatements()]);
  if (!state.denied) await loadPurchases();
  document.body.dataset.ready = 'true';
}

start();
