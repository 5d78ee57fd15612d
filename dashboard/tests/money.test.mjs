// Unit tests of the panel's money arithmetic: it must agree with the server (shared/src/domain.rs) to the cent.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  centsToDecimal,
  decimalToCents,
  formatCents,
  formatRate,
  lineAfterPurchase,
  minimumQuantityError,
  parseCreditLine,
  parseMinimumQuantity,
  parseQuantity,
  parseRate,
  purchaseBlock,
  quote,
  subtotalCents,
} from '../public/money.js';

test('rates parse exactly into ten-thousandths', () => {
  assert.equal(parseRate('25.00'), 250000n);
  assert.equal(parseRate('0.0150'), 150n);
  assert.equal(parseRate('0.75'), 7500n);
  assert.equal(parseRate('9999.9999'), 99999999n);
  assert.equal(parseRate('3'), 30000n);
  for (const bad of ['0.00001', '-1.00', '1e3', '', ' 1.00', '1.', '.5', '1,000.00', 'NaN', null, 25]) {
    assert.equal(parseRate(bad), null, String(bad));
  }
});

test('quantities are whole numbers from 0 to 1,000,000; empty is 0', () => {
  assert.deepEqual(parseQuantity(''), { value: 0n });
  assert.deepEqual(parseQuantity('  12 '), { value: 12n });
  assert.deepEqual(parseQuantity('1000000'), { value: 1000000n });
  for (const bad of ['1000001', '-1', '1.5', '1e3', 'abc', '0x10', '1 000']) {
    assert.ok(parseQuantity(bad).error, bad);
  }
});

test('subtotals round half away from zero to the cent, like the server', () => {
  assert.equal(subtotalCents(3n, parseRate('0.0150')), 5n); // 0.045 → 0.05
  assert.equal(subtotalCents(1n, parseRate('0.0050')), 1n); // 0.005 → 0.01
  assert.equal(subtotalCents(1n, parseRate('0.0049')), 0n); // 0.0049 → 0.00
  assert.equal(subtotalCents(7n, parseRate('0.75')), 525n);
  assert.equal(subtotalCents(0n, parseRate('25.00')), 0n);
  assert.equal(subtotalCents(1n, parseRate('0.1250')), 13n); // 0.125 → 0.13
  assert.equal(subtotalCents(1n, parseRate('0.1249')), 12n);
});

test('the total is the sum of rounded subtotals, not the rounded sum', () => {
  const rate = parseRate('0.0050');
  const q = quote(['audience', 'enrichment', 'pixel'].map((creditType) => ({ creditType, quantity: 1n, rateUnits: rate })));
  assert.deepEqual(q.lines.map((l) => l.cents), [1n, 1n, 1n]);
  assert.equal(centsToDecimal(q.totalCents), '0.03');
});

test('the largest purchase is exact (no floating point)', () => {
  const q = quote([{ creditType: 'audience', quantity: 1000000n, rateUnits: parseRate('9999.9999') }]);
  assert.equal(centsToDecimal(q.totalCents), '9999999900.00');
  const all = quote(
    ['audience', 'enrichment', 'pixel', 'custom_model'].map((creditType) => ({
      creditType,
      quantity: 999999n,
      rateUnits: parseRate('0.0155'),
    })),
  );
  // 999999 × 0.0155 = 15499.9845 → 15499.98 per line.
  assert.equal(centsToDecimal(all.totalCents), '61999.92');
});

test('seeded Northwind prices give the totals the browser test expects', () => {
  const rates = { audience: '25.00', enrichment: '0.75', pixel: '10.00', custom_model: '120.00' };
  const quantities = { audience: 3n, enrichment: 7n, pixel: 0n, custom_model: 1n };
  const q = quote(Object.entries(quantities).map(([creditType, quantity]) => ({ creditType, quantity, rateUnits: parseRate(rates[creditType]) })));
  assert.equal(centsToDecimal(q.totalCents), '200.25');
});

test('formatting', () => {
  assert.equal(centsToDecimal(0n), '0.00');
  assert.equal(centsToDecimal(5n), '0.05');
  assert.equal(centsToDecimal(30025n), '300.25');
  assert.equal(formatCents(123456789n), '$1,234,567.89');
  assert.equal(formatCents(0n), '$0.00');
  assert.equal(formatRate('0.0150'), '$0.0150');
  assert.equal(formatRate('1200.00'), '$1,200.00');
  assert.equal(decimalToCents('300.25'), 30025n);
  assert.equal(decimalToCents('300'), 30000n);
  assert.equal(decimalToCents('3.5'), 350n);
  assert.equal(decimalToCents('3.555'), null);
  assert.equal(decimalToCents(undefined), null);
});

test('minimum quantity: a missing minimum is 1; a non-zero quantity below the minimum is refused', () => {
  assert.equal(parseMinimumQuantity(undefined), 1n);
  assert.equal(parseMinimumQuantity(1), 1n);
  assert.equal(parseMinimumQuantity(3), 3n);
  for (const bad of [0, -1, 1.5, '2', null, Number.MAX_SAFE_INTEGER + 1, NaN]) assert.equal(parseMinimumQuantity(bad), null, String(bad));

  assert.equal(minimumQuantityError(0n, 2n), null, '0 is always fine: the type is not bought');
  assert.equal(minimumQuantityError(2n, 2n), null);
  assert.equal(minimumQuantityError(1000000n, 2n), null);
  assert.equal(minimumQuantityError(1n, 1n), null);
  assert.match(minimumQuantityError(1n, 2n, 'Enrichment'), /at least 2 Enrichment credits/);
  assert.match(minimumQuantityError(999n, 1000n, 'Pixel'), /at least 1,000 Pixel credits/);
  // The minimum the server computes: the smallest quantity whose subtotal reaches one cent.
  const rate = parseRate('0.0049');
  assert.equal(subtotalCents(1n, rate), 0n);
  assert.equal(subtotalCents(2n, rate), 1n);
});

test('credit line: the balances route\'s decimal strings as exact cents; null is "no line", anything malformed unknown', () => {
  assert.deepEqual(parseCreditLine({ limit: '25000.00', outstanding: '123.00', available: '24877.00' }), {
    limitCents: 2500000n,
    outstandingCents: 12300n,
    availableCents: 2487700n,
  });
  // The largest limit the server accepts (10 trillion) stays exact.
  assert.equal(parseCreditLine({ limit: '10000000000000.00', outstanding: '0.01', available: '9999999999999.99' }).availableCents, 999999999999999n);
  assert.equal(parseCreditLine({ limit: '0.00', outstanding: '0.00', available: '0.00' }).availableCents, 0n);
  assert.equal(parseCreditLine(null), null, 'null: the account cannot buy on pay-later');
  for (const bad of [
    undefined,
    'x',
    [],
    {},
    { limit: '100.00', outstanding: '0.00' },
    { limit: '100.00', outstanding: '0.00', available: 100 },
    { limit: '100.00', outstanding: '0.00', available: '-1.00' },
    { limit: '100.00', outstanding: '0.00', available: '1.005' },
    { limit: '1e5', outstanding: '0.00', available: '1.00' },
  ]) {
    assert.equal(parseCreditLine(bad), undefined, JSON.stringify(bad));
  }
});

test('purchase block: a hold first, then no line, then a total above the available credit (equal is fine)', () => {
  const line = parseCreditLine({ limit: '100.00', outstanding: '40.00', available: '60.00' });
  assert.equal(purchaseBlock({ line, hold: null }, 0n), null);
  assert.equal(purchaseBlock({ line, hold: null }, 6000n), null, 'exactly the available credit');
  assert.deepEqual(purchaseBlock({ line, hold: null }, 6001n), {
    reason: 'over_limit',
    availableCents: 6000n,
    totalCents: 6001n,
    excessCents: 1n,
  });
  assert.deepEqual(purchaseBlock({ line: null, hold: null }, 1n), { reason: 'no_line' });
  assert.deepEqual(purchaseBlock({ line: null, hold: null }, 0n), { reason: 'no_line' });
  const hold = 'client-20261201T000000.000Z-acct-x';
  assert.deepEqual(purchaseBlock({ line, hold }, 100n), { reason: 'hold', statementId: hold });
  assert.deepEqual(purchaseBlock({ line: null, hold }, 100n), { reason: 'hold', statementId: hold });
  assert.equal(purchaseBlock({ line: undefined, hold: null }, 10n ** 15n), null, 'unknown line: the server decides');
  assert.equal(purchaseBlock({ line, hold: '' }, 100n), null, 'an empty id is no hold');
  // The largest purchase (four types of 1,000,000 credits at 1,000,000.00) against a line one cent short.
  const largest = 4n * 1000000n * 100000000n;
  const big = parseCreditLine({ limit: '4000000000000.00', outstanding: '0.01', available: '3999999999999.99' });
  assert.equal(purchaseBlock({ line: big, hold: null }, largest).excessCents, 1n);
});

test('the line after a purchase: available down and outstanding up by the total, to the cent', () => {
  const line = parseCreditLine({ limit: '25000.00', outstanding: '123.00', available: '24877.00' });
  const after = lineAfterPurchase(line, 20025n);
  assert.deepEqual(after, { limitCents: 2500000n, outstandingCents: 32325n, availableCents: 2467675n });
  assert.equal(centsToDecimal(after.availableCents), '24676.75');
  assert.equal(lineAfterPurchase(line, 0n).availableCents, line.availableCents);
  assert.equal(lineAfterPurchase(line, 2487700n).availableCents, 0n);
  assert.equal(lineAfterPurchase(line, 2487701n).availableCents, 0n, 'never below zero (the server would have refused)');
  assert.equal(lineAfterPurchase(null, 100n), null);
  assert.equal(lineAfterPurchase(undefined, 100n), undefined);
});

test('formatMoney shows any decimal string exactly, signed, with at least 2 places', async () => {
  const { formatMoney } = await import('../public/money.js');
  const cases = [
    ['25.00', '$25.00'],
    ['0.4150', '$0.4150'],
    ['20000', '$20,000.00'],
    ['1234567.5', '$1,234,567.50'],
    ['-7.50', '−$7.50'],
    ['-0.00', '$0.00'],
    ['007.25', '$7.25'],
    ['0', '$0.00'],
  ];
  for (const [input, expected] of cases) assert.equal(formatMoney(input), expected, input);
  for (const bad of [null, undefined, 7.5, '', '1e3', '1.', '.5', ' 1.00', '$1.00', '1,000.00', '--1']) assert.equal(formatMoney(bad), null, String(bad));
});
