// The alerts and auto top-up rules as the panel edits them (public/rules.js): what is typed → the PUT body or the
// error by box, an answer → what the boxes show, the cost of one top-up (exact, as the server rounds), today's count.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { alertsChange, alertsShown, fieldKey, parseRuleQuantity, todayText, topupCostText, topupsChange, topupsShown } from '../public/rules.js';

const TYPES = ['audience', 'enrichment', 'pixel', 'custom_model'];

test('a rule box holds nothing, or a whole number from 1 to 1,000,000', () => {
  assert.deepEqual(parseRuleQuantity(''), { value: null });
  assert.deepEqual(parseRuleQuantity('  '), { value: null });
  assert.deepEqual(parseRuleQuantity('1'), { value: 1 });
  assert.deepEqual(parseRuleQuantity('1,000,000'), { value: 1_000_000 });
  for (const bad of ['0', '1000001', '-5', '2.5', '1e3', 'ten']) assert.ok('error' in parseRuleQuantity(bad), bad);
});

test('thresholds: empty boxes are no alert, the rest the whole map; each wrong box is named', () => {
  assert.deepEqual(alertsChange({ audience: '100', enrichment: '', pixel: '5', custom_model: '' }), {
    body: { thresholds: { audience: 100, pixel: 5 } },
    errors: {},
  });
  assert.deepEqual(alertsChange({ audience: '', enrichment: '', pixel: '', custom_model: '' }).body, { thresholds: {} });
  const wrong = alertsChange({ audience: '0', enrichment: 'x', pixel: '', custom_model: '' });
  assert.deepEqual(Object.keys(wrong.errors), ['audience', 'enrichment']);
});

test('top-up rules need both numbers; one alone is an error on the other', () => {
  const typed = {
    audience: { below: '50', buy: '500' },
    enrichment: { below: '', buy: '' },
    pixel: { below: '10', buy: '' },
    custom_model: { below: '', buy: '3' },
  };
  const { body, errors } = topupsChange(typed);
  assert.deepEqual(body, { rules: { audience: { below: 50, buy: 500 } } });
  assert.deepEqual(Object.keys(errors).sort(), ['custom_model.below', 'pixel.buy']);
  assert.deepEqual(topupsChange({ audience: { below: '0', buy: '2.5' } }).errors, {
    'audience.below': 'Enter a number from 1 to 1,000,000.',
    'audience.buy': 'Enter a whole number of credits, from 1 to 1,000,000.',
  });
});

test('answers become box texts; anything else is not shown as saved', () => {
  assert.deepEqual(alertsShown({ accountId: 'a', thresholds: { pixel: 20 } }, TYPES), {
    audience: '',
    enrichment: '',
    pixel: '20',
    custom_model: '',
  });
  for (const body of [null, {}, { thresholds: [] }, { thresholds: { gold: 1 } }, { thresholds: { pixel: 0 } }, { thresholds: { pixel: '2' } }]) {
    assert.equal(alertsShown(body, TYPES), null, JSON.stringify(body));
  }
  const shown = topupsShown({ rules: { audience: { below: 50, buy: 500 } }, dailyCap: 3, topupsToday: 1 }, TYPES);
  assert.deepEqual(shown?.rules.audience, { below: '50', buy: '500' });
  assert.deepEqual(shown?.rules.pixel, { below: '', buy: '' });
  assert.equal(shown?.topupsToday, 1);
  for (const body of [
    { rules: {}, dailyCap: 3 },
    { rules: {}, dailyCap: -1, topupsToday: 0 },
    { rules: { audience: { below: 1 } }, dailyCap: 3, topupsToday: 0 },
    { rules: { gold: { below: 1, buy: 1 } }, dailyCap: 3, topupsToday: 0 },
  ]) {
    assert.equal(topupsShown(body, TYPES), null, JSON.stringify(body));
  }
});

test('one top-up costs buy × price, rounded to the cent as the server rounds a line', () => {
  assert.equal(topupCostText('25.00', '500'), 'At $25.00 per credit, one top-up of 500 credits costs $12,500.00, on Pay Later.');
  // 3 × 0.0150 = 0.045 → 0.05 (half away from zero), exactly.
  assert.equal(topupCostText('0.0150', '3'), 'At $0.0150 per credit, one top-up of 3 credits costs $0.05, on Pay Later.');
  assert.equal(topupCostText('25.00', ''), 'At $25.00 per credit.');
  assert.equal(topupCostText('25.00', 'x'), 'At $25.00 per credit.');
  assert.equal(topupCostText(undefined, '5'), 'The price per credit is not known yet.');
});

test("today's top-ups against the cap; a cap of 0 says auto top-up is off", () => {
  assert.equal(todayText(1, 3), 'Auto top-ups: 1 of 3 today (UTC).');
  assert.equal(todayText(0, 0), 'Auto top-up is turned off for your account (a daily limit of 0).');
});

test('a 400 invalid_field names the box it is about', () => {
  assert.equal(fieldKey('thresholds.pixel'), 'pixel');
  assert.equal(fieldKey('rules.custom_model.buy'), 'custom_model.buy');
  assert.equal(fieldKey('rules.audience'), null);
  assert.equal(fieldKey('extra'), null);
  assert.equal(fieldKey(undefined), null);
});
