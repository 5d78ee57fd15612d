// @ts-check
// The console's first screen (GET /overview): what needs attention (clients on hold, near their limit, failed
// collections; each links to its row in the clients table) and the cycle's purchases and margin per day, drawn as
// a hand-written SVG with the same numbers in a table beside it. The chart's arithmetic is agency/chart.js.
import { statusLabel } from '../settlement.js';
import { $, count, el, money } from '../ui.js';
import { BOX, chartLayout, chartSummary, dayLabel, longDayLabel } from './chart.js';
import { loadClients } from './clients.js';
import { closeOverview, denyConsole, explain, isDenied, read, sectionMessage, state } from './common.js';

/** @typedef {import('../../types/openapi').components['schemas']['AgencyOverview']} Overview */

const SVG = 'http://www.w3.org/2000/svg';

/**
 * An SVG element with attributes and children.
 * @param {string} tag @param {Record<string, string | number>} attributes @param {...(Node | string | null)} children
 */
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(.../** @type {(Node | string)[]} */ (children.filter((c) => c !== null)));
  return node;
}

const nameOf = (entry) => (typeof entry.name === 'string' && entry.name ? entry.name : entry.accountId);

/**
 * Moves to a client's row in the clients table, loading further pages of it while the row is not there yet (at
 * most a few: the overview reads at most 500 clients, the table 25 a page).
 * @param {string} accountId
 */
export async function showClientRow(accountId) {
  for (let page = 0; !$(`client-${accountId}`) && state.cursors.clients && page < 20; page++) {
    await loadClients({ more: true });
  }
  const row = $(`client-${accountId}`);
  if (!row) {
    sectionMessage('attention', { tone: 'warning', title: 'This client is not in the clients table', lines: [`${accountId} may have left your agency: reload the page.`] }, { focus: true });
    return;
  }
  for (const other of document.querySelectorAll('tr.highlight')) other.classList.remove('highlight');
  row.classList.add('highlight');
  row.tabIndex = -1;
  row.scrollIntoView({ block: 'center' });
  row.focus({ preventScroll: true });
}

/**
 * One client of a list: its name linking to its row, then what makes it need attention.
 * @param {{ accountId: string, name?: string | null }} entry @param {string} list @param {...(Node | string | null)} details
 */
function clientItem(entry, list, ...details) {
  const link = el('a', { href: `#client-${entry.accountId}`, className: 'client-link', textContent: nameOf(entry) });
  link.addEventListener('click', (event) => {
    event.preventDefault();
    showClientRow(entry.accountId);
  });
  return el('li', { dataset: { account: entry.accountId, list } }, link, ' ', ...details);
}

/** @param {string} id @param {Node[]} items @param {string} empty */
function renderList(id, items, empty) {
  $(`${id}-count`).textContent = String(items.length);
  $(`${id}-count`).dataset.count = String(items.length);
  $(`${id}-heading`).closest('.attention-list').dataset.state = items.length ? 'listed' : 'empty';
  const list = $(`${id}-list`);
  if (items.length) {
    list.replaceChildren(...items);
    list.hidden = false;
    $(`${id}-empty`).hidden = true;
  } else {
    list.replaceChildren();
    list.hidden = true;
    $(`${id}-empty`).textContent = empty;
    $(`${id}-empty`).hidden = false;
  }
}

/** @param {Overview} body */
function renderAttention(body) {
  renderList(
    'on-hold',
    body.onHold.map((c) =>
      clientItem(
        c,
        'on-hold',
        el('span', { className: 'sub', dataset: { field: 'due' }, textContent: c.amountDue !== null ? `${money(c.amountDue)} due on ${c.heldStatements === 1 ? 'its held statement' : `${count(c.heldStatements)} held statements`}` : 'Amount due not read' }),
        el('span', { className: 'sub id', textContent: `Statement ${c.holdStatementId}${c.statement ? ` (${statusLabel(c.statement.status)})` : ''}` }),
      ),
    ),
    'No client is on hold.',
  );
  renderList(
    'near-limit',
    body.nearLimit.map((c) =>
      clientItem(
        c,
        'near-limit',
        el('span', { className: 'badge used', dataset: { field: 'used' }, textContent: c.usedPercent !== null ? `${c.usedPercent}% used` : 'over a zero limit' }),
        el('span', { className: 'sub', textContent: `${money(c.creditLine.outstanding)} owed of ${money(c.creditLine.limit)}; ${money(c.creditLine.available)} available` }),
      ),
    ),
    'No client owes more than 80% of its limit.',
  );
  renderList(
    'failed',
    body.failedCollections.map((f) => {
      const retry = f.nextAttemptAt ? `next attempt ${longDayLabel(f.nextAttemptAt.slice(0, 10))}` : 'no retry scheduled';
      const why = f.reason ? f.reason.replace(/_/g, ' ') : 'payment failed';
      return clientItem(
        f,
        'failed',
        el('span', { className: 'sub', dataset: { field: 'failure' }, textContent: `${money(f.amountDue)} due: ${why}; ${retry}` }),
        el('span', { className: 'sub id', textContent: `Statement ${f.statementId} (${statusLabel(f.status)})` }),
      );
    }),
    'No collection has failed.',
  );
  const note = $('attention-truncated');
  note.hidden = !body.truncated;
  note.textContent = body.truncated ? `Only your first ${count(body.clientsRead)} clients were checked here; the clients table below has them all.` : '';
}

/** The cycle drawn last, drawn again when the chart's box changes width. @type {Overview['cycle'] | null} */
let drawn = null;
let drawnWidth = 0;
addEventListener('resize', () => {
  const width = chartWidth();
  if (drawn && width !== drawnWidth) renderChart(drawn);
});

/** The chart's width in SVG units: its box's width in CSS pixels (320 to 640), so its text stays at 12 px. */
function chartWidth() {
  const width = Math.round($('chart').getBoundingClientRect().width || BOX.width);
  return Math.min(BOX.width, Math.max(320, width));
}

/** @param {Overview['cycle']} cycle */
function renderChart(cycle) {
  const { title, desc } = chartSummary(cycle);
  $('cycle-body').hidden = false; // measured below: it must be laid out
  drawn = cycle;
  drawnWidth = chartWidth();
  const layout = chartLayout(cycle.days, { ...BOX, width: drawnWidth });
  const { box } = layout;
  const grid = layout.ticks.map((t) =>
    svg('g', { class: 'tick' }, svg('line', { x1: box.left, x2: box.width - box.right, y1: t.y, y2: t.y, class: t.cents === 0 ? 'axis' : 'grid' }), svg('text', { x: box.left - 6, y: t.y + 4, 'text-anchor': 'end', class: 'axis-label' }, t.label)),
  );
  const bars = layout.bars.map((b) =>
    svg('rect', { x: b.x.toFixed(1), y: b.y.toFixed(1), width: b.width.toFixed(1), height: b.height.toFixed(1), class: 'bar', 'data-date': b.date, 'data-total-cents': String(b.totalCents) }),
  );
  const points = layout.bars.map((b) => `${b.cx.toFixed(1)},${b.marginY.toFixed(1)}`).join(' ');
  const marginLine = layout.bars.length > 1 ? svg('polyline', { points, class: 'margin-line' }) : null;
  const dots = layout.bars.map((b) => svg('circle', { cx: b.cx.toFixed(1), cy: b.marginY.toFixed(1), r: 3, class: 'margin-dot', 'data-date': b.date, 'data-margin-cents': String(b.marginCents) }));
  const labels = layout.bars.filter((b) => b.labelled).map((b) => svg('text', { x: b.cx.toFixed(1), y: box.height - box.bottom + 16, 'text-anchor': 'middle', class: 'axis-label' }, b.label));
  const month = cycle.start ? longDayLabel(cycle.start).replace(/ \d+,/, '') : '';
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${box.width} ${box.height}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc', class: 'chart', preserveAspectRatio: 'xMidYMid meet' },
    svg('title', { id: 'chart-title' }, title),
    svg('desc', { id: 'chart-desc' }, desc),
    ...grid,
    ...bars,
    marginLine,
    ...dots,
    ...labels,
    svg('text', { x: box.left + (box.width - box.left - box.right) / 2, y: box.height - 4, 'text-anchor': 'middle', class: 'axis-title' }, `Day of ${month} (UTC)`),
  );
  $('chart').replaceChildren(chart);

  const rows = cycle.days.map((d) =>
    el(
      'tr',
      { dataset: { date: d.date } },
      el('th', { scope: 'row', textContent: dayLabel(d.date) }),
      el('td', { className: 'num', dataset: { field: 'purchases' }, textContent: count(d.purchases) }),
      el('td', { className: 'num', dataset: { field: 'total' }, textContent: money(d.total) }),
      el('td', { className: 'num', dataset: { field: 'at-cost' }, textContent: money(d.totalAtCost) }),
      el('td', { className: 'num', dataset: { field: 'margin' }, textContent: money(d.margin) }),
    ),
  );
  $('cycle-rows').replaceChildren(...rows);
  if (!rows.length) $('cycle-rows').append(el('tr', { className: 'empty' }, el('td', { colSpan: 5, textContent: 'No day of this cycle has begun yet.' })));
  const t = cycle.totals;
  $('cycle-totals').replaceChildren(
    el(
      'tr',
      {},
      el('th', { scope: 'row', textContent: 'Total' }),
      el('td', { className: 'num', dataset: { field: 'purchases' }, textContent: count(t.purchases) }),
      el('td', { className: 'num', dataset: { field: 'total' }, textContent: money(t.total) }),
      el('td', { className: 'num', dataset: { field: 'at-cost' }, textContent: money(t.totalAtCost) }),
      el('td', { className: 'num', dataset: { field: 'margin' }, textContent: money(t.margin) }),
    ),
  );
  $('cycle-caption').textContent = `Purchases per day, ${month}: at price, at cost and margin`;
  $('cycle-headline').textContent = `${money(t.total)} at price, ${money(t.margin)} margin, ${count(t.purchases)} purchase${t.purchases === 1 ? '' : 's'} so far this cycle.`;
  $('cycle-body').hidden = false;
}

export async function loadOverview() {
  const answer = await read('/overview');
  if (isDenied(answer)) return denyConsole(answer);
  const body = /** @type {Overview | null} */ (answer.body);
  if (answer.status !== 200 || !body || !Array.isArray(body.onHold) || !Array.isArray(body.nearLimit) || !Array.isArray(body.failedCollections) || !Array.isArray(body.cycle?.days)) {
    const why = answer.status === 200 ? 'the answer was not valid.' : explain(answer, 'loading the overview');
    closeOverview(`Unavailable: ${why}`);
    sectionMessage('attention', { tone: 'error', title: 'What needs attention could not be loaded', lines: [why] });
    return;
  }
  renderAttention(body);
  renderChart(body.cycle);
  $('cycle-state').hidden = true;
  $('attention').setAttribute('aria-busy', 'false');
}
