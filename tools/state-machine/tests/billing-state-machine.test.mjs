// The real definition (infra/billing-state-machine.asl.json) in the interpreter, its Tasks invoking a FAKE
// billing-run over the same invoke API as `cargo lambda watch`: hand-overs, retries, failures and the order of
// the sides, which the real function rarely shows on a small local table. Run by
// scripts/billing-state-machine-test.sh (`node --test tools/state-machine/tests/`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";

import { runExecution } from "../../../scripts/billing-state-machine.mjs";

const definition = JSON.parse(readFileSync(new URL("../../../infra/billing-state-machine.asl.json", import.meta.url)));
const PARTS = definition.States.Parts.Parameters.parts.length;
const CYCLE_END = "2026-11-01T00:00:00Z";

/**
 * A fake billing-run: `answer(event, call)` returns {status, body} or a summary-like object (200). Records
 * every call with the events in flight when it started.
 */
async function fakeFunction(answer, { collect = () => ({ collected: 0 }) } = {}) {
  const calls = [];
  const inFlight = new Set();
  let maxInFlight = 0;
  const server = createServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const event = JSON.parse(text);
    const call = { path: req.url, event, concurrent: [...inFlight].map((c) => c.event), index: calls.length };
    calls.push(call);
    inFlight.add(call);
    maxInFlight = Math.max(maxInFlight, inFlight.size);
    await new Promise((r) => setTimeout(r, 5)); // long enough for the parts to overlap
    let reply = isCollect(call) ? await collect(event, call) : await answer(event, call);
    if (!("status" in reply)) reply = { status: 200, body: reply };
    inFlight.delete(call);
    res.writeHead(reply.status, { "content-type": "application/json" });
    res.end(JSON.stringify(reply.body));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    calls,
    get maxInFlight() {
      return maxInFlight;
    },
    invokeUrl: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const summary = (event, extra = {}) => ({
  cycleEnd: event.cycleEnd,
  purchasesBilledToClient: event.side === "client" ? 3 : 0,
  purchasesBilledToAgency: event.side === "agency" ? 3 : 0,
  statementsMadePayable: event.side ? 0 : 7,
  complete: true,
  ...extra,
});
const key = (event) => JSON.stringify(event);
const COLLECT = "/2015-03-31/functions/collect-payments/invocations";
const isCollect = (call) => call.path === COLLECT;
// Against the fake: collect-payments is invoked too (not stubbed), and Wait states (Grace, back-offs) end at once.
const run = (input, options) => runExecution(input, { stubs: [], noWait: true, ...options });


test("every part of each side hands over and goes on with continueWith, the sides never overlap, then the final run", async (t) => {
  const seen = new Map(); // event -> invocations so far
  const fake = await fakeFunction((event) => {
    const n = (seen.get(key(event)) ?? 0) + 1;
    seen.set(key(event), n);
    // Every part hands over twice, the final run once: continueWith is the same event (the contract).
    const handOvers = event.side ? 2 : 1;
    return summary(event, n <= handOvers ? { complete: false, continueWith: event } : {});
  });
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl });
  assert.equal(report.status, "SUCCEEDED", `${report.error}: ${report.cause}`);
  const calls = fake.calls.filter((c) => !isCollect(c));
  assert.equal(calls.length, 2 * PARTS * 3 + 2, "3 invocations per part on both sides, 2 for the final run");
  assert.ok(calls.every((c) => c.path === "/2015-03-31/functions/billing-run/invocations"), "billing-run");
  // Then collect-payments, once, for this cycle only, after everything else.
  const collects = fake.calls.filter(isCollect);
  assert.deepEqual(collects.map((c) => c.event), [{ cycleEnd: CYCLE_END }]);
  assert.equal(collects[0].index, fake.calls.length - 1, "collect-payments comes last");
  assert.deepEqual(report.waits.map((w) => w.state), ["Grace"], "hand-overs on OutOfTime go on at once");
  const sideOf = (c) => c.event.side ?? "final";
  const order = calls.map(sideOf);
  const lastClient = order.lastIndexOf("client");
  const firstAgency = order.indexOf("agency");
  assert.ok(lastClient < firstAgency && order.lastIndexOf("agency") < order.indexOf("final"), `order: ${order}`);
  for (const call of calls) {
    assert.ok(call.concurrent.every((e) => (e.side ?? "final") === sideOf(call)), "a side runs alone");
    const fields = Object.keys(call.event).sort();
    if (call.event.side) {
      assert.deepEqual(fields, ["cycleEnd", "handOver", "offCycle", "part", "side"]);
      assert.equal(call.event.part.of, PARTS);
    } else {
      assert.deepEqual(call.event, { cycleEnd: CYCLE_END, handOver: true, offCycle: false });
    }
  }
  assert.equal(fake.maxInFlight, PARTS, "every part of a side at once, MaxConcurrency of them");
  const parts = (side) => new Set(calls.filter((c) => c.event.side === side).map((c) => c.event.part.index));
  assert.deepEqual([...parts("client")].sort(), [...Array(PARTS).keys()]);
  assert.deepEqual([...parts("agency")].sort(), [...Array(PARTS).keys()]);
  // The output: per part, its invocations and what they billed; the final run's summary.
  const out = report.output;
  assert.equal(out.cycleEnd, CYCLE_END);
  for (const side of ["client", "agency"]) {
    assert.equal(out[side].length, PARTS);
    out[side].forEach((p, k) => {
      assert.deepEqual(p.part, { index: k, of: PARTS });
      assert.equal(p.invocations, 3);
      assert.equal(p.purchasesBilled, 9, "3 invocations × 3 purchases");
    });
  }
  assert.equal(out.finish.invocations, 2);
  assert.equal(out.finish.last.statementsMadePayable, 7);
  assert.equal(report.taskInvocationCount, fake.calls.length);
});

test("transient errors are retried: StorageUnavailable, OutOfTime, a throttle, an unreachable answer", async (t) => {
  const failures = [
    { status: 500, body: { errorType: "StorageUnavailable", errorMessage: "storage unavailable: throttled" } },
    { status: 500, body: { errorType: "OutOfTime", errorMessage: "billing run out of time" } },
    { status: 429, body: { message: "Rate exceeded" } },
    { status: 502, body: "bad gateway" },
  ];
  // The first client part and the final run each go through every failure once, in order.
  const queue = { "client:0": [...failures], final: [...failures] };
  const fake = await fakeFunction((event) => {
    const q = queue[event.side ? `${event.side}:${event.part.index}` : "final"];
    return q?.length ? q.shift() : summary(event);
  });
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noRetryPause: true });
  assert.equal(report.status, "SUCCEEDED", `${report.error}: ${report.cause}`);
  assert.equal(report.taskInvocationCount, 2 * PARTS + 1 + 2 * failures.length + 1);
  const errors = report.taskInvocations.map((i) => i.errorType).filter(Boolean);
  assert.deepEqual(errors.slice().sort(), [
    "Lambda.ServiceException",
    "Lambda.ServiceException",
    "Lambda.TooManyRequestsException",
    "Lambda.TooManyRequestsException",
    "OutOfTime",
    "OutOfTime",
    "StorageUnavailable",
    "StorageUnavailable",
  ]);
});

test("an error that is not transient fails the execution with the part and the errorType", async (t) => {
  const fake = await fakeFunction((event) =>
    event.side === "agency" && event.part.index === 2
      ? { status: 500, body: { errorType: "StorageError", errorMessage: "storage error: unreadable item" } }
      : summary(event),
  );
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noRetryPause: true });
  assert.equal(report.status, "FAILED");
  assert.equal(report.error, "BillingPartFailed");
  assert.match(report.cause, /agency part 2 of 4 \(cycleEnd 2026-11-01T00:00:00Z\).*StorageError.*unreadable item/);
  assert.equal(fake.calls.filter((c) => c.event.side === "agency" && c.event.part.index === 2).length, 1, "not retried");
  assert.ok(!fake.calls.some((c) => !c.event.side), "no final run after a failed part");
});

test("OutOfTime is retried a few times, then fails: a run that never commits cannot loop forever", async (t) => {
  const fake = await fakeFunction((event) =>
    event.side
      ? summary(event)
      : { status: 500, body: { errorType: "OutOfTime", errorMessage: "billing run out of time" } },
  );
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noRetryPause: true });
  assert.equal(report.status, "FAILED");
  assert.equal(report.error, "BillingFinishFailed");
  assert.match(report.cause, /OutOfTime/);
  const retrier = definition.States["Finish cycle"].Retry.find((r) => r.ErrorEquals.includes("OutOfTime"));
  assert.equal(fake.calls.filter((c) => !c.event.side).length, 1 + retrier.MaxAttempts);
});

test("an answer outside the contract (complete: false without continueWith) fails instead of looping", async (t) => {
  const fake = await fakeFunction((event) =>
    event.side === "client" && event.part.index === 1 ? summary(event, { complete: false }) : summary(event),
  );
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl });
  assert.equal(report.status, "FAILED");
  assert.equal(report.error, "BillingRunBadAnswer");
});

test("a part handed over on StorageUnavailable waits before each re-invocation, doubling to 600 s, and resumes where it stopped", async (t) => {
  const handOvers = 7;
  let n = 0;
  const fake = await fakeFunction((event) => {
    if (event.side !== "client" || event.part.index !== 0) return summary(event);
    n += 1;
    if (n > handOvers) return summary(event);
    // Each hand-over says where the part's reading stopped.
    const continueWith = { ...event, resumeAt: { shard: n % 4 } };
    return summary(event, { complete: false, continueWith, handedOverOn: "StorageUnavailable" });
  });
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl });
  assert.equal(report.status, "SUCCEEDED", `${report.error}: ${report.cause}`);
  const waits = report.waits.filter((w) => w.state === "Wait before client part").map((w) => w.seconds);
  assert.deepEqual(waits, [30, 60, 120, 240, 480, 600, 600]);
  // Every re-invocation carries the previous answer's resume key.
  const part0 = fake.calls.filter((c) => c.event.side === "client" && c.event.part.index === 0);
  assert.equal(part0.length, handOvers + 1);
  part0.slice(1).forEach((c, k) => assert.deepEqual(c.event.resumeAt, { shard: (k + 1) % 4 }));
  assert.equal(report.output.client[0].invocations, handOvers + 1);
});

test("a throttled invoke (another execution holds the reserved concurrency) waits and tries again without a ceiling", async (t) => {
  // 40 throttles in a row: more than any fixed MaxAttempts the Retry had (20).
  let throttles = 40;
  const fake = await fakeFunction((event) =>
    !event.side && throttles-- > 0 ? { status: 429, body: { message: "Rate exceeded" } } : summary(event),
  );
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noRetryPause: true });
  assert.equal(report.status, "SUCCEEDED", `${report.error}: ${report.cause}`);
  const waits = report.waits.filter((w) => w.state === "Wait before finishing").map((w) => w.seconds);
  const retrier = definition.States["Finish cycle"].Retry.find((r) => r.ErrorEquals.includes("Lambda.TooManyRequestsException"));
  assert.equal(waits.length, Math.ceil(40 / (1 + retrier.MaxAttempts)), "a wait after each round of quick retries");
  assert.ok(waits.every((s, k) => s === Math.min(30 * 2 ** k, 600)), `${waits}`);
  assert.equal(report.output.finish.last.statementsMadePayable, 7);
});

test("collect-payments runs once the statements are payable; its failure after retries fails the execution", async (t) => {
  const fake = await fakeFunction((event) => summary(event), {
    collect: () => ({ status: 500, body: { errorType: "StorageError", errorMessage: "unreadable statement" } }),
  });
  t.after(fake.close);
  const report = await run({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noRetryPause: true });
  assert.equal(report.status, "FAILED");
  assert.equal(report.error, "CollectionFailed");
  assert.match(report.cause, /payable, but collect-payments failed.*StorageError/);
  assert.equal(fake.calls.filter(isCollect).length, 1, "StorageError is not retried");
  // Locally (the CLI) collect-payments is stubbed by default: no Stripe in the local stack.
  const stubbed = await runExecution({ cycleEnd: CYCLE_END }, { invokeUrl: fake.invokeUrl, noWait: true });
  assert.equal(stubbed.status, "SUCCEEDED", `${stubbed.error}: ${stubbed.cause}`);
  assert.equal(stubbed.output.collection.stubbed, true);
});
