#!/usr/bin/env node
// Runs the billing state machine, infra/billing-state-machine.asl.json, locally: the real definition in a real
// Amazon States Language interpreter (npm aws-local-stepfunctions, which validates it with asl-validator first),
// its Task states invoking the functions under `cargo lambda watch`.
//
//   node scripts/billing-state-machine.mjs '{"cycleEnd": "2026-11-01T00:00:00Z"}'   # an execution
//   node scripts/billing-state-machine.mjs --validate                              # only parse and validate
//
// The npm dependency lives in tools/state-machine/ (package-lock.json; `npm ci` there, as
// scripts/billing-state-machine-test.sh does). LAMBDA_INVOKE_URL (default http://[::1]:9000, what
// scripts/local-stack.sh exports) is where `cargo lambda watch` listens.
//
// Prints one JSON object, like `aws stepfunctions describe-execution`: status (SUCCEEDED / FAILED), output or
// error and cause, durationMs, and taskInvocations (each Task invocation: state, event, errorType or the
// summary's complete / purchases billed / statements made payable). Exits 1 unless the execution succeeded.
//
// Task routing: every Task state's Resource is "${BillingRunFunctionArn}" or, for "Collect payments",
// "${CollectPaymentsFunctionArn}" (DefinitionSubstitutions in infra/template.yaml). Here they become
// arn:aws:lambda:<region>:123456789012:function:billing-run (collect-payments), and each Task
// state gets a local handler (overrides.taskResourceLocalHandlers) that POSTs its input to
// `<LAMBDA_INVOKE_URL>/2015-03-31/functions/<function name from the ARN>/invocations`, as `cargo lambda invoke`
// does. The library's own Lambda client is not used: cargo lambda watch answers a function error with HTTP 500
// and the error body but without the X-Amz-Function-Error header the SDK client looks for, and it does not
// route a function ARN. The handler raises what Step Functions raises for a Lambda Task: the function's
// errorType as the Error (what Retry and Catch match), Lambda.TooManyRequestsException on 429,
// Lambda.ResourceNotFoundException on 404, Lambda.ServiceException when the invoke API fails otherwise.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const definitionPath = join(root, "infra/billing-state-machine.asl.json");

// aws-local-stepfunctions 3.x uses Promise.withResolvers (Node 22); Node 20 lacks it.
Promise.withResolvers ??= function withResolvers() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
const require = createRequire(join(root, "tools/state-machine/package.json"));
let StateMachine;
try {
  ({ StateMachine } = await import(require.resolve("aws-local-stepfunctions")));
} catch (err) {
  console.error("billing-state-machine: aws-local-stepfunctions is not installed: npm ci --prefix tools/state-machine");
  throw err;
}

const region = process.env.AWS_REGION || "us-east-1";
const defaultInvokeUrl = process.env.LAMBDA_INVOKE_URL || "http://[::1]:9000";
// What `sam deploy` substitutes (DefinitionSubstitutions in infra/template.yaml), as local stand-ins.
const substitutions = {
  BillingRunFunctionArn: `arn:aws:lambda:${region}:123456789012:function:billing-run`,
  CollectPaymentsFunctionArn: `arn:aws:lambda:${region}:123456789012:function:collect-payments`,
};
// Functions answered by a stub instead of invoked: collect-payments needs a Stripe secret, and the local stack has
// none (scripts/local-stack.sh starts no Stripe), so its Task answers {"stubbed": true, ...} without a call.
// BILLING_SM_INVOKE_COLLECT=1 invokes it too (a stack with STRIPE_SECRET_KEY_ARN and localstripe).
const defaultStubs = process.env.BILLING_SM_INVOKE_COLLECT === "1" ? [] : ["collect-payments"];

/** The definition with its DefinitionSubstitutions applied; any placeholder without a value is an error. */
export function loadDefinition() {
  const text = readFileSync(definitionPath, "utf8").replace(/\$\{([A-Za-z0-9]+)\}/g, (whole, name) => {
    if (!(name in substitutions)) throw new Error(`${definitionPath}: no local value for \${${name}}`);
    return substitutions[name];
  });
  return JSON.parse(text);
}

/** Every Task state, by name (Map iterations' and Parallel branches' included), with its definition. */
function taskStates(machine, found = {}) {
  for (const [name, state] of Object.entries(machine.States)) {
    if (state.Type === "Task") found[name] = state;
    for (const inner of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
      if (inner) taskStates(inner, found);
    }
  }
  return found;
}

/** Every Wait state, by name (Map iterations' included), with its definition. */
function waitStatesOf(machine, found = {}) {
  for (const [name, state] of Object.entries(machine.States)) {
    if (state.Type === "Wait") found[name] = state;
    for (const inner of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
      if (inner) waitStatesOf(inner, found);
    }
  }
  return found;
}

function lambdaError(name, message, cause) {
  const error = new Error(message);
  error.name = name;
  error.cause = cause;
  return error;
}

/** A local handler for one Task state: invokes the function its Resource names under cargo lambda watch. */
function invoker(stateName, resource, log, invokeUrl, stubs) {
  const match = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)$/.exec(resource);
  if (!match) throw new Error(`${stateName}: Resource ${resource} is not a Lambda function ARN`);
  const functionName = match[1];
  return async (input) => {
    const entry = { state: stateName, function: functionName, event: input, startedAt: new Date().toISOString() };
    log.push(entry);
    if (stubs.includes(functionName)) {
      entry.stubbed = true;
      entry.durationMs = 0;
      return { stubbed: true, function: functionName, reason: "not invoked locally (no Stripe in the local stack)" };
    }
    const started = Date.now();
    let response;
    let text;
    try {
      response = await fetch(`${invokeUrl}/2015-03-31/functions/${functionName}/invocations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(input),
      });
      text = await response.text();
    } catch (err) {
      entry.errorType = "Lambda.ServiceException";
      throw lambdaError(entry.errorType, `invoke API at ${invokeUrl} unreachable: ${err.message}`);
    } finally {
      entry.durationMs = Date.now() - started;
    }
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: handled below
    }
    if (response.ok) {
      entry.result = body && {
        complete: body.complete,
        continueWith: body.continueWith,
        purchasesBilledToClient: body.purchasesBilledToClient,
        purchasesBilledToAgency: body.purchasesBilledToAgency,
        statementsMadePayable: body.statementsMadePayable,
        transactions: body.transactions,
      };
      return body;
    }
    if (body && typeof body.errorType === "string") {
      // A function error: its errorType is the Task's Error and the error document its Cause, as Step
      // Functions reports them.
      entry.errorType = body.errorType;
      throw lambdaError(body.errorType, JSON.stringify(body), body);
    }
    entry.errorType =
      response.status === 429
        ? "Lambda.TooManyRequestsException"
        : response.status === 404
          ? "Lambda.ResourceNotFoundException"
          : "Lambda.ServiceException";
    throw lambdaError(entry.errorType, `invoke API answered ${response.status}: ${text.slice(0, 500)}`);
  };
}

/** Validates the definition (asl-validator, inside the library's constructor) and returns the machine. */
export function stateMachine() {
  return new StateMachine(loadDefinition());
}

/**
 * Runs one execution; resolves to the describe-execution-like report (never rejects on a failed execution).
 * Options (for tests): invokeUrl (else LAMBDA_INVOKE_URL), noRetryPause (retry Task states without their pauses),
 * noWait (Wait states end at once; the report's `waits` still lists each with the seconds it would have waited),
 * stubs (function names answered by a stub, default collect-payments: see defaultStubs).
 */
export async function runExecution(
  input,
  { invokeUrl = defaultInvokeUrl, noRetryPause = false, noWait = false, stubs = defaultStubs } = {},
) {
  const definition = loadDefinition();
  const machine = new StateMachine(definition);
  const log = [];
  const url = invokeUrl.replace(/\/$/, "");
  const tasks = Object.entries(taskStates(definition));
  const taskResourceLocalHandlers = Object.fromEntries(
    tasks.map(([name, state]) => [name, invoker(name, state.Resource, log, url, stubs)]),
  );
  const waitStates = waitStatesOf(definition);
  const waitTimeOverrides = noWait ? Object.fromEntries(Object.keys(waitStates).map((name) => [name, 0])) : undefined;
  const waits = [];
  const retryIntervalOverrides = noRetryPause ? Object.fromEntries(tasks.map(([name]) => [name, 0])) : undefined;
  const started = Date.now();
  const report = { status: "RUNNING", input, startDate: new Date(started).toISOString() };
  try {
    const execution = machine.run(input, {
      overrides: { taskResourceLocalHandlers, retryIntervalOverrides, waitTimeOverrides },
      context: { Execution: { Input: input, Name: `local-${started}`, StartTime: report.startDate } },
    });
    // Every Wait state entered, with the seconds its definition asks for (Seconds, or SecondsPath's value).
    const watching = (async () => {
      for await (const event of execution.eventLogs) {
        const state = event.state && waitStates[event.state.name];
        if (event.type === "StateEntered" && state) {
          const path = state.SecondsPath?.replace(/^\$\./, "");
          waits.push({ state: event.state.name, seconds: path ? event.state.input?.[path] : state.Seconds });
        }
      }
    })().catch(() => {});
    report.output = await execution.result;
    await watching;
    report.status = "SUCCEEDED";
  } catch (err) {
    // The library wraps what failed the execution (a Fail state's Error and Cause, or an uncaught error).
    const failure = err.name === "ExecutionError" && err.cause ? err.cause : err;
    report.status = "FAILED";
    report.error = failure.name;
    report.cause = failure.message;
  }
  report.durationMs = Date.now() - started;
  report.waits = waits;
  report.taskInvocationCount = log.length;
  report.taskInvocations = log;
  return report;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args[0] === "--validate") {
    stateMachine();
    console.error(`billing-state-machine: ${definitionPath} is valid (asl-validator)`);
  } else if (args.length === 1) {
    const report = await runExecution(JSON.parse(args[0]));
    console.log(JSON.stringify(report, null, 2));
    process.exitCode = report.status === "SUCCEEDED" ? 0 : 1;
  } else {
    console.error("usage: node scripts/billing-state-machine.mjs '{\"cycleEnd\": \"<RFC3339>\"}' | --validate");
    process.exitCode = 2;
  }
}
