// The settlement texts of a statement (public/settlement.js): every state of the settlement contract.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { dayOf, dueDayOf, settlement, statusLabel } from '../public/settlement.js';

const collection = (state, reason = null, nextAttemptAt = null) => ({
  attempt: 1,
  state,
  reason,
  lastAttemptAt: '2026-12-01T09:00:00Z',
  nextAttemptAt,
});

test('dates are UTC days; a due date is the day whose end anywhere on Earth dueAt is', () => {
  assert.equal(dayOf('2026-12-04T23:30:00.000Z'), 'Dec 4, 2026');
  assert.equal(dayOf('nonsense'), null);
  assert.equal(dayOf(null), null);
  assert.equal(dueDayOf('2026-12-31T12:00:00.000Z'), 'Dec 30, 2026');
  assert.equal(dueDayOf('2026-12-31T00:00:00.000Z'), 'Dec 30, 2026');
  assert.equal(statusLabel('payment_failed'), 'Payment failed');
  assert.equal(statusLabel('new_status'), 'new_status');
});

test('paid: by card on the day it was paid, else paid by another way', () => {
  assert.deepEqual(settlement({ status: 'paid', paidAt: '2026-12-02T10:00:00Z', collection: collection('succeeded') }), {
    text: 'Charged to your card on Dec 2, 2026',
    tone: 'ok',
  });
  assert.equal(settlement({ status: 'paid', paidAt: '2026-12-02T10:00:00Z', collection: null }).text, 'Paid on Dec 2, 2026');
  assert.equal(settlement({ status: 'paid', paidAt: null, collection: null }).text, 'Paid: nothing is due');
});

test('declined: the retry day, or no retry and how to lift the hold', () => {
  const retrying = { status: 'payment_failed', dueAt: '2026-12-31T12:00:00Z', collection: collection('failed', 'card_declined', '2026-12-04T09:00:00Z') };
  assert.deepEqual(settlement(retrying), { text: 'Payment failed: your card was declined; we retry on Dec 4, 2026', tone: 'error' });
  const noneScheduled = { ...retrying, collection: collection('failed', 'card_declined', null) };
  assert.equal(settlement(noneScheduled).text, 'Payment failed: your card was declined; no retry is scheduled: pay now to lift the hold');
  // Exhausted: whatever nextAttemptAt says, no retry comes.
  const exhausted = { ...retrying, collection: collection('exhausted', 'card_declined', '2026-12-04T09:00:00Z') };
  assert.equal(settlement(exhausted).text, 'Payment failed: your card was declined; no retry is scheduled: pay now to lift the hold');
  const overdue = { ...exhausted, status: 'overdue' };
  assert.equal(settlement(overdue).text, 'Payment failed: your card was declined; no retry is scheduled: pay now to lift the hold');
  const unknownReason = { ...retrying, collection: collection('failed', 'do_not_honor', '2026-12-04T09:00:00Z') };
  assert.equal(settlement(unknownReason).text, 'Payment failed: your card was refused; we retry on Dec 4, 2026');
});

test('the bank wants the customer present: say how to pay, never promise a retry', () => {
  for (const reason of ['authentication_required', 'requires_action']) {
    const s = settlement({ status: 'payment_failed', dueAt: null, collection: collection('failed', reason, '2026-12-04T09:00:00Z') });
    assert.equal(s.tone, 'error');
    assert.match(s.text, /^Payment failed: your bank needs you to approve this charge/);
    assert.match(s.text, /To pay it, contact your agency/);
    assert.doesNotMatch(s.text, /retry/);
  }
});

test('in flight, due, overdue, failed without collection, building', () => {
  assert.deepEqual(settlement({ status: 'pending_payment', dueAt: '2026-12-31T12:00:00Z', collection: collection('in_flight') }), {
    text: 'Charging your card…',
    tone: 'pending',
  });
  assert.equal(settlement({ status: 'pending_payment', dueAt: '2026-12-31T12:00:00Z', collection: null }).text, 'Due Dec 30, 2026');
  assert.equal(settlement({ status: 'pending_payment', dueAt: '2026-12-31T12:00:00Z' }).text, 'Due Dec 30, 2026');
  assert.equal(settlement({ status: 'overdue', dueAt: '2026-12-31T12:00:00Z', collection: null }).text, 'Overdue since Dec 30, 2026: pay now to lift the hold');
  assert.equal(settlement({ status: 'payment_failed', dueAt: null, collection: null }).text, 'Payment failed: pay now to lift the hold');
  assert.equal(settlement({ status: 'building', dueAt: null, collection: null }), null);
});
