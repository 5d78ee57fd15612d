// The local event pipeline's pieces (dev/event-pipeline.mjs): the filter it applies as the template's event source
// mapping does, the stand-in bus's PutEvents answer, and the line it prints.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBus, describeEvent, isOutboxInsert } from '../../dev/event-pipeline.mjs';

test('only outbox inserts pass, as the template filter lets them', () => {
  const record = (eventName, sk) => ({ eventName, dynamodb: { Keys: { pk: { S: 'ACCOUNT#a' }, sk: { S: sk } } } });
  assert.equal(isOutboxInsert(record('INSERT', 'OUTBOX#2026-12-07T00:00:00.000Z#e1')), true);
  assert.equal(isOutboxInsert(record('REMOVE', 'OUTBOX#2026-12-07T00:00:00.000Z#e1')), false, 'TTL deletions');
  assert.equal(isOutboxInsert(record('MODIFY', 'OUTBOX#x')), false);
  assert.equal(isOutboxInsert(record('INSERT', 'LEDGER#x')), false);
  assert.equal(isOutboxInsert({ eventName: 'INSERT' }), false);
});

test('the bus takes PutEvents, hands over each envelope and refuses anything else', async () => {
  const received = [];
  const bus = createBus((envelope) => received.push(envelope));
  await new Promise((resolve) => bus.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${bus.address().port}/`;
  try {
    const envelope = { id: 'e1', type: 'credits.low', detail: { accountId: 'a', creditType: 'audience' } };
    const put = await fetch(url, {
      method: 'POST',
      headers: { 'x-amz-target': 'AWSEvents.PutEvents', 'content-type': 'application/x-amz-json-1.1' },
      body: JSON.stringify({ Entries: [{ Source: 'overage-credits', DetailType: 'credits.low', Detail: JSON.stringify(envelope) }] }),
    });
    assert.equal(put.status, 200);
    const answer = await put.json();
    assert.equal(answer.FailedEntryCount, 0);
    assert.equal(answer.Entries.length, 1);
    assert.deepEqual(received, [envelope]);
    const other = await fetch(url, { method: 'POST', headers: { 'x-amz-target': 'AWSEvents.ListRules' }, body: '{}' });
    assert.equal(other.status, 400);
    assert.equal(received.length, 1);
  } finally {
    bus.close();
  }
});

test('one line per event names its type, its account and its flat facts', () => {
  const line = describeEvent({
    type: 'auto_topup.succeeded',
    detail: { accountId: 'acct-x', agencyId: 'agency-y', creditType: 'audience', quantity: 500, total: '25.00' },
  });
  assert.equal(line, '[event] auto_topup.succeeded acct-x creditType=audience quantity=500 total=25.00');
  assert.equal(describeEvent({ type: 'pricing.changed', detail: { agencyId: 'agency-y', changes: [] } }), '[event] pricing.changed agency-y');
});
