// The overview chart's pure part (public/agency/chart.js): exact cents, the axis, where bars and margin points go,
// and the summary the chart's <desc> carries.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { axisLabel, BOX, chartLayout, chartSummary, dayLabel, formatCentsExact, niceCeiling, signedCents } from '../public/agency/chart.js';

const day = (date, purchases, total, totalAtCost, margin) => ({ date, purchases, total, totalAtCost, margin });

test('money strings become exact cents, signed; anything else is null', () => {
  assert.equal(signedCents('300.25'), 30025n);
  assert.equal(signedCents('-1.5'), -150n);
  assert.equal(signedCents('0.00'), 0n);
  assert.equal(signedCents('12'), 1200n);
  for (const bad of ['1.234', '', ' 1.00', '1e3', null, 5, '--1']) assert.equal(signedCents(bad), null, String(bad));
  assert.equal(formatCentsExact(123456789n), '$1,234,567.89');
  assert.equal(formatCentsExact(-5n), '−$0.05');
  // BigInt: no float drift however many cents.
  assert.equal(formatCentsExact(signedCents('900719925474099.99')), '$900,719,925,474,099.99');
});

test('the axis ends on a nice figure at or above the largest value', () => {
  assert.equal(niceCeiling(0), 0);
  assert.equal(niceCeiling(1), 1);
  assert.equal(niceCeiling(4500), 5000);
  assert.equal(niceCeiling(2001), 2500);
  assert.equal(niceCeiling(10000), 10000);
  assert.equal(niceCeiling(10001), 20000);
  assert.equal(axisLabel(250000), '$2,500');
  assert.equal(axisLabel(1250), '$12.50');
  assert.equal(axisLabel(-500), '−$5');
});

test('bars stand on zero with heights in proportion; margin points on the same scale; labels never crowd', () => {
  const days = [day('2026-12-01', 1, '45.00', '30.00', '15.00'), day('2026-12-02', 0, '0.00', '0.00', '0.00'), day('2026-12-03', 2, '90.00', '60.00', '30.00')];
  const layout = chartLayout(days);
  const plotHeight = BOX.height - BOX.top - BOX.bottom;
  assert.equal(layout.max, 10000, 'a $100 axis for a $90 day');
  assert.equal(layout.min, 0);
  assert.deepEqual(layout.ticks.map((t) => t.label), ['$0', '$25', '$50', '$75', '$100']);
  const [first, empty, third] = layout.bars;
  assert.equal(layout.zeroY, BOX.top + plotHeight);
  for (const bar of layout.bars) assert.ok(Math.abs(bar.y + bar.height - layout.zeroY) < 1e-9, 'every bar stands on the zero line');
  assert.ok(Math.abs(third.height - 2 * first.height) < 1e-9, 'twice the total, twice the height');
  assert.ok(Math.abs(third.height - 0.9 * plotHeight) < 1e-9);
  assert.equal(empty.height, 0);
  assert.ok(Math.abs(layout.zeroY - first.marginY - 0.15 * plotHeight) < 1e-9, '$15 margin at 15% of a $100 axis');
  assert.ok(first.x + first.width < empty.x && empty.x + empty.width < third.x, 'bars in date order, not overlapping');
  assert.ok(third.x + third.width <= BOX.width - BOX.right);
  assert.deepEqual(layout.bars.map((b) => b.labelled), [true, true, true]);

  const month = Array.from({ length: 31 }, (_, i) => day(`2026-12-${String(i + 1).padStart(2, '0')}`, 0, '0.00', '0.00', '0.00'));
  const labelled = chartLayout(month).bars.filter((b) => b.labelled).map((b) => b.label);
  assert.deepEqual(labelled, ['1', '5', '10', '15', '20', '25', '30'], 'seven labels fit at 375 px');
  assert.deepEqual(chartLayout(month).ticks.map((t) => t.label), ['$0', '$0.25', '$0.50', '$0.75', '$1'], 'nothing bought: a $1 axis');
});

test('a negative margin goes below the zero line', () => {
  const layout = chartLayout([day('2026-12-01', 1, '10.00', '12.00', '-2.00')]);
  assert.equal(layout.min, -200);
  assert.ok(layout.bars[0].marginY > layout.zeroY);
  assert.equal(layout.ticks[0].label, '−$2');
});

test('the summary says what the chart shows, in exact money', () => {
  const cycle = {
    start: '2026-12-01',
    days: [day('2026-12-01', 1, '45.00', '30.00', '15.00'), day('2026-12-02', 0, '0.00', '0.00', '0.00'), day('2026-12-03', 2, '90.10', '60.00', '30.10')],
    totals: { purchases: 3, total: '135.10', totalAtCost: '90.00', margin: '45.10' },
  };
  const { title, desc } = chartSummary(cycle);
  assert.equal(title, 'Purchases at price and margin per day, Dec 2026');
  assert.equal(desc, 'From Dec 1 to Dec 3: 3 purchases on 2 days, $135.10 at price with a margin of $45.10. Highest day: Dec 3, $90.10 at price (margin $30.10).');
  assert.equal(chartSummary({ ...cycle, totals: { purchases: 0, total: '0.00', totalAtCost: '0.00', margin: '0.00' }, days: cycle.days.slice(1, 2) }).desc, 'No purchases from Dec 2 to Dec 2.');
  assert.equal(chartSummary({ ...cycle, days: [] }).desc, 'No day of this cycle has begun yet.');
  assert.equal(dayLabel('2026-12-03'), 'Dec 3');
});

test('drawn as narrow as a phone (343 units), a month of bars still fits inside the box, in order', () => {
  const box = { ...BOX, width: 343 };
  const month = Array.from({ length: 31 }, (_, i) => day(`2026-12-${String(i + 1).padStart(2, '0')}`, 1, `${i + 1}.00`, '0.50', `${i + 0.5}`));
  const { bars } = chartLayout(month, box);
  assert.equal(bars.length, 31);
  assert.ok(bars[0].x >= box.left && bars[30].x + bars[30].width <= box.width - box.right);
  for (let i = 1; i < bars.length; i++) assert.ok(bars[i - 1].x + bars[i - 1].width < bars[i].x, `bar ${i} after bar ${i - 1}`);
  assert.ok(bars[0].width >= 2, 'a bar stays visible');
});
