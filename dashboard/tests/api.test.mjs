// The shared API module: the retry of one write with the same Idempotency-Key (the panel's purchase and the
// console's void both use it), and the sentences for refused answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { explainAnswer, RETRY_DELAYS_MS, sendWithRetry } from '../public/api.js';

const answer = (status, headers = {}) => ({ status, headers: new Headers(headers), body: null });

/** A send that plays `outcomes` in order (an Error is a network failure) and records each call. */
function scripted(outcomes) {
  const calls = [];
  return {
    calls,
    send: async () => {
      const next = outcomes[calls.length];
      calls.push(next);
      if (next instanceof Error) throw next;
      return next;
    },
  };
}

test('a 503 with Retry-After waits what the server asked (capped at 3 s), then the planned delays', async () => {
  const waits = [];
  const { send, calls } = scripted([answer(503, { 'retry-after': '2' }), answer(503, { 'retry-after': '60' }), answer(201)]);
  const result = await sendWithRetry(send, { wait: async (ms) => waits.push(ms) });
  assert.equal(result.status, 201);
  assert.equal(calls.length, 3);
  assert.deepEqual(waits, [2000, 3000]);
});

test('network failures and 503s without Retry-After follow the planned delays; a malformed Retry-After is ignored', async () => {
  const waits = [];
  const { send } = scripted([new TypeError('fetch failed'), answer(503, { 'retry-after': 'soon' }), answer(200)]);
  const result = await sendWithRetry(send, { wait: async (ms) => waits.push(ms) });
  assert.equal(result.status, 200);
  assert.deepEqual(waits, RETRY_DELAYS_MS);
});

test('retries stop after the planned delays: the last 503 is the answer, no answer at all is null', async () => {
  const waits = [];
  let r = await sendWithRetry(scripted([answer(503), answer(503), answer(503), answer(201)]).send, { wait: async (ms) => waits.push(ms) });
  assert.equal(r.status, 503);
  const failing = scripted([new Error('x'), new Error('x'), new Error('x'), answer(201)]);
  r = await sendWithRetry(failing.send, { wait: async () => {} });
  assert.equal(r, null);
  assert.equal(failing.calls.length, RETRY_DELAYS_MS.length + 1);
});

test('a final answer (any status but 503) is returned at once, never retried', async () => {
  for (const status of [201, 400, 402, 409, 500, 502]) {
    const { send, calls } = scripted([answer(status), answer(201)]);
    const r = await sendWithRetry(send, { wait: async () => assert.fail('no wait') });
    assert.equal(r.status, status);
    assert.equal(calls.length, 1);
  }
});

test('refused answers are explained the same on every page; problem+json detail is shown for other 4xx', () => {
  assert.match(explainAnswer(answer(0), 'loading prices'), /could not be reached while loading prices/);
  assert.match(explainAnswer(answer(401), 'x'), /not signed in/);
  assert.match(explainAnswer(answer(503), 'saving'), /temporarily unavailable while saving/);
  assert.match(explainAnswer(answer(500), 'saving'), /on our side while saving/);
  assert.equal(explainAnswer({ status: 422, headers: new Headers(), body: { detail: 'Too many.' } }, 'x'), 'Too many.');
  assert.match(explainAnswer(answer(418), 'x'), /HTTP 418/);
});
