// Tests of dev/gateway.mjs against a fake Lambda invoke endpoint: no Rust, no database needed.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';

import { authorizeRequest, createGateway, makeDevToken, matchRoute, ROUTES } from '../../dev/gateway.mjs';

const ORIGIN = 'http://dashboard.test:8080';
let fake; // the fake `cargo lambda watch`
let fakeUrl;
let gateway;
let base;
let invocations;
let reply; // (fn, event) => { status, headers, body }

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));

before(async () => {
  fake = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const fn = decodeURIComponent(/\/functions\/([^/]+)\/invocations$/.exec(req.url)?.[1] ?? '');
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      invocations.push({ fn, event });
      const out = reply(fn, event);
      res.writeHead(out.status ?? 200, { 'content-type': 'application/json', ...(out.headers ?? {}) });
      res.end(typeof out.body === 'string' ? out.body : JSON.stringify(out.body));
    });
  });
  fakeUrl = `http://127.0.0.1:${await listen(fake)}`;
  const gw = createGateway({ port: 0, invokeUrl: fakeUrl, dashboardOrigins: ORIGIN, devAccountId: 'acct-test', log: () => {} });
  gateway = gw.server;
  base = `http://127.0.0.1:${await listen(gateway)}`;
});

after(() => {
  gateway.closeAllConnections();
  gateway.close();
  fake.closeAllConnections();
  fake.close();
});

beforeEach(() => {
  invocations = [];
  reply = () => ({ body: { statusCode: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}', isBase64Encoded: false } });
});

const bearer = (account = 'acct-test') => ({ authorization: `Bearer ${makeDevToken(account)}` });

/** Raw request, so duplicate headers and odd bodies can be sent. */
function raw(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('every route is one line of the table, the later ones included', () => {
  assert.deepEqual(
    ROUTES.map((r) => `${r.method} ${r.path} ${r.fn}`),
    [
      'GET /accounts/{accountId}/pricing get-pricing',
      'POST /accounts/{accountId}/credit-purchases purchase-credits',
      'GET /accounts/{accountId}/balances get-balances',
      'GET /accounts/{accountId}/credit-purchases list-purchases',
      'GET /accounts/{accountId}/statements list-statements',
    ],
  );
  assert.equal(matchRoute('GET', '/accounts/a%2Db/pricing').pathParameters.accountId, 'a-b');
  assert.equal(matchRoute('DELETE', '/accounts/a/pricing'), null);
  assert.equal(matchRoute('GET', '/accounts/a/pricing/'), null);
});

test('dev tokens decode to string claims; bad, expired or missing tokens do not', () => {
  const auth = authorizeRequest(`Bearer ${makeDevToken('acct-x')}`);
  assert.equal(auth.claims['custom:account_id'], 'acct-x');
  assert.equal(typeof auth.claims.exp, 'string');
  assert.equal(auth.scopes, null);
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const custom = authorizeRequest(`bearer ${part({ alg: 'none' })}.${part({ n: 5, b: true, groups: ['a', 'b'], o: { k: 1 }, scope: 'read write' })}.sig`);
  assert.deepEqual(custom.claims, { n: '5', b: 'true', groups: '[a b]', o: '{"k":1}', scope: 'read write' });
  assert.deepEqual(custom.scopes, ['read', 'write']);
  for (const bad of [undefined, '', 'Bearer', 'Bearer abc', 'Basic dXNlcjpwYXNz', `Bearer ${part({})}.${part([1])}.`, `Bearer ${part({})}.!!!.`]) {
    assert.equal(authorizeRequest(bad), null, String(bad));
  }
  assert.equal(authorizeRequest(`Bearer ${part({ alg: 'none' })}.${part({ exp: 10 })}.`), null);
});

test('a request becomes a payload-2.0 event like API Gateway builds', async () => {
  const res = await raw('GET', '/accounts/acct-test/pricing?b=2&a=1&a=3', {
    // A flat array like rawHeaders, so a header can be repeated.
    headers: [
      'Host', base.slice('http://'.length),
      'Authorization', bearer().authorization,
      'X-Multi', 'one',
      'X-Multi', 'two',
      'Cookie', 'c1=v1; c2=v2',
      'User-Agent', 'unit-test',
    ],
  });
  assert.equal(res.status, 200);
  assert.equal(invocations.length, 1);
  const { fn, event } = invocations[0];
  assert.equal(fn, 'get-pricing');
  assert.equal(event.version, '2.0');
  assert.equal(event.routeKey, 'GET /accounts/{accountId}/pricing');
  assert.equal(event.rawPath, '/accounts/acct-test/pricing');
  assert.equal(event.rawQueryString, 'b=2&a=1&a=3');
  assert.deepEqual(event.queryStringParameters, { b: '2', a: '1,3' });
  assert.deepEqual(event.cookies, ['c1=v1', 'c2=v2']);
  assert.equal(event.headers['x-multi'], 'one,two');
  assert.equal(event.headers.cookie, undefined);
  assert.equal(event.headers['user-agent'], 'unit-test');
  assert.ok(Object.keys(event.headers).every((h) => h === h.toLowerCase()));
  assert.deepEqual(event.pathParameters, { accountId: 'acct-test' });
  assert.equal(event.isBase64Encoded, false);
  assert.equal(event.body, undefined);
  const ctx = event.requestContext;
  assert.equal(ctx.routeKey, event.routeKey);
  assert.equal(ctx.stage, '$default');
  assert.deepEqual(ctx.http, { method: 'GET', path: '/accounts/acct-test/pricing', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'unit-test' });
  for (const field of ['accountId', 'apiId', 'domainName', 'domainPrefix', 'requestId', 'time']) assert.equal(typeof ctx[field], 'string', field);
  assert.match(ctx.time, /^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/);
  assert.equal(typeof ctx.timeEpoch, 'number');
  assert.equal(ctx.authorizer.jwt.claims['custom:account_id'], 'acct-test');
  assert.equal(ctx.authorizer.jwt.scopes, null);
  assert.equal(res.headers['apigw-requestid'], ctx.requestId);
});

test('JSON bodies pass as text, other media types as base64', async () => {
  const json = '{"quantities":{"audience":1}}';
  await raw('POST', '/accounts/acct-test/credit-purchases', {
    headers: { ...bearer(), 'content-type': 'application/json', 'idempotency-key': 'k-1' },
    body: json,
  });
  let event = invocations.at(-1).event;
  assert.equal(invocations.at(-1).fn, 'purchase-credits');
  assert.equal(event.body, json);
  assert.equal(event.isBase64Encoded, false);
  assert.equal(event.headers['idempotency-key'], 'k-1');
  assert.equal(event.headers['content-length'], String(json.length));

  const bytes = Buffer.from([0, 1, 2, 255]);
  await raw('POST', '/accounts/acct-test/credit-purchases', { headers: { ...bearer(), 'content-type': 'application/octet-stream' }, body: bytes });
  event = invocations.at(-1).event;
  assert.equal(event.isBase64Encoded, true);
  assert.deepEqual(Buffer.from(event.body, 'base64'), bytes);

  await raw('POST', '/accounts/acct-test/credit-purchases', { headers: bearer(), body: 'no type' });
  assert.equal(invocations.at(-1).event.isBase64Encoded, true);
});

test('without a usable token: 401 from the gateway, the function is never called', async () => {
  for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Token ${makeDevToken('acct-test')}` }]) {
    const res = await raw('GET', '/accounts/acct-test/balances', { headers });
    assert.equal(res.status, 401);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(res.body), { message: 'Unauthorized' });
  }
  assert.equal(invocations.length, 0);
});

test('unknown routes: 404 Not Found', async () => {
  for (const [method, path] of [['DELETE', '/accounts/acct-test/pricing'], ['POST', '/nowhere'], ['GET', '/accounts/acct-test/pricing/'], ['GET', '/dev/other']]) {
    const res = await raw(method, path, { headers: bearer() });
    assert.equal(res.status, 404, `${method} ${path}`);
    assert.deepEqual(JSON.parse(res.body), { message: 'Not Found' });
  }
  assert.equal(invocations.length, 0);
});

test("the function's response is written back: status, headers, multi-value headers, cookies, base64 body", async () => {
  reply = () => ({
    body: {
      statusCode: 201,
      headers: { 'content-type': 'application/octet-stream', location: '/x/1', 'x-list': 'a,b' },
      multiValueHeaders: { 'x-list': ['a', 'b'] },
      cookies: ['s=1; Path=/', 't=2'],
      body: Buffer.from('héllo').toString('base64'),
      isBase64Encoded: true,
    },
  });
  const res = await raw('GET', '/accounts/acct-test/balances', { headers: bearer() });
  assert.equal(res.status, 201);
  assert.equal(res.headers.location, '/x/1');
  assert.equal(res.headers['x-list'], 'a, b');
  assert.deepEqual(res.headers['set-cookie'], ['s=1; Path=/', 't=2']);
  assert.equal(res.body.toString('utf8'), 'héllo');

  reply = () => ({ body: { hello: 'inferred' } }); // payload 2.0 "inferred format"
  const inferred = await raw('GET', '/accounts/acct-test/balances', { headers: bearer() });
  assert.equal(inferred.status, 200);
  assert.deepEqual(JSON.parse(inferred.body), { hello: 'inferred' });
});

test('a missing or failing function is a 500; an unreachable one a 503', async () => {
  reply = () => ({ status: 404, body: { title: 'Missing function' } }); // what cargo lambda watch says
  let res = await raw('GET', '/accounts/acct-test/statements', { headers: bearer() });
  assert.equal(res.status, 500);
  assert.deepEqual(JSON.parse(res.body), { message: 'Internal Server Error' });
  assert.equal(invocations.at(-1).fn, 'list-statements');

  reply = () => ({ headers: { 'x-amz-function-error': 'Unhandled' }, body: { errorMessage: 'panic', errorType: 'Panic' } });
  res = await raw('GET', '/accounts/acct-test/credit-purchases', { headers: bearer() });
  assert.equal(res.status, 500);
  assert.equal(invocations.at(-1).fn, 'list-purchases');

  reply = () => ({ body: 'not json' });
  res = await raw('GET', '/accounts/acct-test/pricing', { headers: bearer() });
  assert.equal(res.status, 500);

  reply = () => ({ body: { statusCode: 'nope' } });
  res = await raw('GET', '/accounts/acct-test/pricing', { headers: bearer() });
  assert.equal(res.status, 500);

  // Too slow: API Gateway's integration timeout gives 503.
  const slowFake = createServer(() => {}); // never answers
  const slow = createGateway({ port: 0, invokeUrl: `http://127.0.0.1:${await listen(slowFake)}`, invokeTimeoutMs: 200, log: () => {} }).server;
  try {
    const r = await fetch(`http://127.0.0.1:${await listen(slow)}/accounts/acct-test/pricing`, { headers: bearer() });
    assert.equal(r.status, 503);
  } finally {
    for (const s of [slow, slowFake]) {
      s.closeAllConnections();
      s.close();
    }
  }

  const closed = createGateway({ port: 0, invokeUrl: 'http://127.0.0.1:9', dashboardOrigins: ORIGIN, log: () => {} }).server;
  const port = await listen(closed);
  try {
    const r = await fetch(`http://127.0.0.1:${port}/accounts/acct-test/pricing`, { headers: bearer() });
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { message: 'Service Unavailable' });
  } finally {
    closed.closeAllConnections();
    closed.close();
  }
});

test('CORS only for the dashboard origin; preflight answered without the function', async () => {
  const ok = await raw('OPTIONS', '/accounts/acct-test/credit-purchases', {
    headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,idempotency-key' },
  });
  assert.equal(ok.status, 204);
  assert.equal(ok.headers['access-control-allow-origin'], ORIGIN);
  assert.match(ok.headers['access-control-allow-methods'], /POST/);
  assert.match(ok.headers['access-control-allow-headers'], /idempotency-key/);

  const other = await raw('OPTIONS', '/accounts/acct-test/credit-purchases', {
    headers: { origin: 'https://evil.test', 'access-control-request-method': 'POST' },
  });
  assert.equal(other.headers['access-control-allow-origin'], undefined);

  const get = await raw('GET', '/accounts/acct-test/pricing', { headers: { ...bearer(), origin: ORIGIN } });
  assert.equal(get.headers['access-control-allow-origin'], ORIGIN);
  assert.match(get.headers['access-control-expose-headers'], /location/);
  const denied = await raw('GET', '/accounts/acct-test/pricing', { headers: { ...bearer(), origin: 'https://evil.test' } });
  assert.equal(denied.headers['access-control-allow-origin'], undefined);
  const unauthorized = await raw('GET', '/accounts/acct-test/pricing', { headers: { origin: ORIGIN } });
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.headers['access-control-allow-origin'], ORIGIN);
  assert.equal(invocations.length, 2);
});

test('bodies over 10 MB get 413 without reaching the function', async () => {
  const big = Buffer.alloc(10 * 1024 * 1024 + 1, 0x61);
  const declared = await raw('POST', '/accounts/acct-test/credit-purchases', { headers: { ...bearer(), 'content-type': 'application/json' }, body: big });
  assert.equal(declared.status, 413);
  // Streamed (chunked, no Content-Length): counted as it arrives.
  const streamed = await new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/accounts/acct-test/credit-purchases`, { method: 'POST', headers: { ...bearer(), 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    for (let i = 0; i < 11; i++) req.write(Buffer.alloc(1024 * 1024, 0x61));
    req.end();
  });
  assert.equal(streamed, 413);
  assert.equal(invocations.length, 0);
});

test('the dashboard and its dev config are served; nothing outside dashboard/public', async () => {
  const page = await raw('GET', '/');
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /text\/html/);
  assert.match(page.body.toString(), /Buy Additional Credits/);
  const js = await raw('GET', '/money.js');
  assert.match(js.headers['content-type'], /javascript/);
  const config = JSON.parse((await raw('GET', '/dev/config.json')).body);
  assert.equal(config.apiBaseUrl, '');
  assert.equal(config.accountId, 'acct-test');
  assert.equal(authorizeRequest(`Bearer ${config.token}`).claims['custom:account_id'], 'acct-test');
  for (const path of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/../../dev/gateway.mjs']) {
    assert.equal((await raw('GET', path)).status, 404, path);
  }
});
