// Tests of dev/gateway.mjs against a fake Lambda invoke endpoint: no Rust, no database needed.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { authorizeRequest, compileRoutes, createGateway, loadSigningKey, makeDevToken, matchRoute, readTemplateApi } from '../../dev/gateway.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TEMPLATE = join(REPO, 'infra', 'template.yaml');
// The tests' own signing key, never the developer's: set before anything signs or verifies.
const stateDir = mkdtempSync(join(tmpdir(), 'gateway-test-'));
process.env.DEV_JWT_KEY_FILE = join(stateDir, 'key.pem');
delete process.env.DEV_JWT_ISSUER;
delete process.env.DEV_JWT_AUDIENCE;

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
  rmSync(stateDir, { recursive: true, force: true });
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

/** The template's routes found by plain text search, independently of the gateway's YAML reader. */
function routesByTextSearch(text) {
  const found = [];
  for (const resource of text.split(/\n(?=  [A-Za-z0-9]+:\n)/)) {
    const binary = /^\s+Binary: (\S+)/m.exec(resource)?.[1];
    for (const event of resource.matchAll(/Type: HttpApi\n\s+Properties:\n(?:\s+\w+: .*\n)*?\s+Method: (\w+)\n\s+Path: (\S+)/g)) {
      found.push(`${event[1]} ${event[2]} ${binary}`);
    }
  }
  return found;
}

test('routes and CORS are read from infra/template.yaml: every HttpApi event of every function', () => {
  const api = readTemplateApi();
  const text = readFileSync(TEMPLATE, 'utf8');
  const expected = routesByTextSearch(text);
  assert.ok(expected.length >= 5, 'the text search finds the template routes');
  assert.deepEqual(api.routes.map((r) => `${r.method} ${r.path} ${r.fn}`), expected);
  for (const fn of ['get-pricing', 'purchase-credits', 'get-balances', 'list-purchases', 'list-statements']) {
    assert.ok(api.routes.some((r) => r.fn === fn), fn);
  }
  assert.ok(!api.routes.some((r) => r.fn === 'billing-run'), 'a scheduled function is no route');
  const flow = (field) => new RegExp(`^\\s+${field}: \\[(.*)\\]$`, 'm').exec(text)[1].split(',').map((v) => v.trim());
  assert.deepEqual(api.cors.allowMethods, flow('AllowMethods'));
  assert.deepEqual(api.cors.allowHeaders, flow('AllowHeaders'));
  assert.deepEqual(api.cors.exposeHeaders, flow('ExposeHeaders'));
  assert.equal(api.cors.maxAgeSeconds, Number(/^\s+MaxAge: (\d+)$/m.exec(text)[1]));

  const routes = compileRoutes(api.routes);
  assert.equal(matchRoute(routes, 'GET', '/accounts/a%2Db/pricing').pathParameters.accountId, 'a-b');
  assert.equal(matchRoute(routes, 'DELETE', '/accounts/a/pricing'), null);
  assert.equal(matchRoute(routes, 'GET', '/accounts/a/pricing/'), null);
});

/** A copy of the template with `edit` applied, in the test's temp dir. */
function editedTemplate(name, edit) {
  const file = join(stateDir, name);
  writeFileSync(file, edit(readFileSync(TEMPLATE, 'utf8')));
  return file;
}

test('a function with several HttpApi events and a new function are picked up; CORS follows the template', async () => {
  const file = editedTemplate('more-routes.yaml', (text) =>
    text
      .replace(
        /(            Path: \/accounts\/\{accountId\}\/statements\n            PayloadFormatVersion: "2.0"\n)/,
        `$1        Summary:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /accounts/{accountId}/statements/{statementId}/summary # a third route of the same function
            PayloadFormatVersion: "2.0"
`,
      )
      .replace(
        /\nOutputs:/,
        `
  AgencyReportFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: agency-report
    Properties:
      CodeUri: ../
      Events:
        Api:
          Type: HttpApi
          Properties: { ApiId: !Ref Api, Method: get, Path: "/agencies/{agencyId}/report" }

Outputs:`,
      )
      .replace('MaxAge: 600', 'MaxAge: 42')
      .replace('AllowHeaders: [authorization, content-type, idempotency-key, prefer, if-match]', 'AllowHeaders:\n          - authorization\n          - X-Extra'),
  );
  const api = readTemplateApi(file);
  assert.deepEqual(
    api.routes
      .filter((r) => r.fn === 'list-statements' || r.fn === 'agency-report')
      .map((r) => `${r.method} ${r.path} ${r.fn}`)
      .sort(),
    [
      'GET /accounts/{accountId}/statements list-statements',
      'GET /accounts/{accountId}/statements/{statementId}/purchases list-statements',
      'GET /accounts/{accountId}/statements/{statementId}/summary list-statements',
      'GET /agencies/{agencyId}/report agency-report',
    ],
  );
  assert.deepEqual(api.cors.allowHeaders, ['authorization', 'x-extra']);
  assert.equal(api.cors.maxAgeSeconds, 42);

  const gw = createGateway({ port: 0, invokeUrl: fakeUrl, dashboardOrigins: ORIGIN, templatePath: file, log: () => {} }).server;
  const url = `http://127.0.0.1:${await listen(gw)}`;
  try {
    let r = await fetch(`${url}/accounts/acct-test/statements/st-1/summary?limit=5`, { headers: bearer() });
    assert.equal(r.status, 200);
    assert.equal(invocations.at(-1).fn, 'list-statements');
    assert.equal(invocations.at(-1).event.routeKey, 'GET /accounts/{accountId}/statements/{statementId}/summary');
    assert.deepEqual({ ...invocations.at(-1).event.pathParameters }, { accountId: 'acct-test', statementId: 'st-1' });
    r = await fetch(`${url}/agencies/agency-x/report`, { headers: bearer() });
    assert.equal(r.status, 200);
    assert.equal(invocations.at(-1).fn, 'agency-report');
    const pre = await fetch(`${url}/agencies/agency-x/report`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-extra' },
    });
    assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
    assert.equal(pre.headers.get('access-control-max-age'), '42');
  } finally {
    gw.closeAllConnections();
    gw.close();
  }
});

test('a template the gateway cannot read stops it at start-up, loudly', () => {
  const noBinary = editedTemplate('no-binary.yaml', (t) => t.replace('Binary: get-balances', 'Other: get-balances'));
  assert.throws(() => createGateway({ port: 0, templatePath: noBinary, log: () => {} }), /GetBalancesFunction.*Binary/);
  const noCors = editedTemplate('no-cors.yaml', (t) => t.replace(/      CorsConfiguration:\n(?:        .*\n)+/, ''));
  assert.throws(() => readTemplateApi(noCors), /CorsConfiguration is missing/);
  const noExpose = editedTemplate('no-expose.yaml', (t) => t.replace(/        ExposeHeaders: .*\n/, ''));
  assert.throws(() => readTemplateApi(noExpose), /CorsConfiguration\.ExposeHeaders/);
  const twice = editedTemplate('twice.yaml', (t) => t.replace('Path: /accounts/{accountId}/balances', 'Path: /accounts/{accountId}/pricing').replace('Method: POST', 'Method: GET'));
  assert.throws(() => readTemplateApi(twice), /declared twice/);
  const anchors = editedTemplate('anchors.yaml', (t) => t.replace('MaxAge: 600', 'MaxAge: &age 600'));
  assert.throws(() => readTemplateApi(anchors), /line \d+: anchors/);
  const badIndent = editedTemplate('indent.yaml', (t) => t.replace('        AllowMethods:', '         AllowMethods:'));
  assert.throws(() => readTemplateApi(badIndent), /line \d+/);
  assert.throws(() => readTemplateApi(join(stateDir, 'missing.yaml')), /ENOENT/);
});

test('every template route is answered by its function; anything else is 404', async () => {
  for (const route of readTemplateApi().routes) {
    const path = route.path.replace(/\{[^}]+\}/g, 'acct-test');
    const res = await raw(route.method, path, { headers: bearer() });
    assert.equal(res.status, 200, `${route.method} ${path}`);
    assert.equal(invocations.at(-1).fn, route.fn);
    assert.equal(invocations.at(-1).event.routeKey, `${route.method} ${route.path}`);
  }
  const unknown = await raw('GET', '/accounts/acct-test/statements/st-1/nothing', { headers: bearer() });
  assert.equal(unknown.status, 404);
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

// ------------------------------------------------------------------------------------------ tokens

const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A JWT signed RS256 with `privateKey` (default: the gateway's), with any header and claims. */
function signed(claims, { header = {}, privateKey = loadSigningKey().privateKey } = {}) {
  const input = `${part({ alg: 'RS256', typ: 'JWT', kid: loadSigningKey().kid, ...header })}.${part(claims)}`;
  return `${input}.${cryptoSign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);
const goodClaims = (extra = {}) => ({ 'custom:account_id': 'acct-test', iss: 'dev-gateway', aud: 'dashboard', exp: now() + 600, ...extra });

test('signed dev tokens are accepted; claims reach the function as strings, arrays in brackets', async () => {
  const token = makeDevToken('acct-x', {
    claims: { n: 5, b: true, groups: ['a', 'b'], o: { k: 1 }, scope: 'read write', 'custom:agency_id': 'agency-x', 'cognito:groups': ['agency-admin'] },
  });
  const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));
  assert.deepEqual(header, { alg: 'RS256', typ: 'JWT', kid: loadSigningKey().kid });
  assert.equal(payload.iss, 'dev-gateway');
  assert.equal(payload.aud, 'dashboard');
  assert.equal(payload.token_use, 'id');
  const auth = authorizeRequest(`bearer ${token}`);
  assert.equal(auth.claims['custom:account_id'], 'acct-x');
  assert.equal(auth.claims.exp, String(payload.exp));
  assert.equal(auth.claims.iat, String(payload.iat));
  assert.equal(auth.claims.n, '5');
  assert.equal(auth.claims.b, 'true');
  assert.equal(auth.claims.groups, '[a b]');
  assert.equal(auth.claims.o, '{"k":1}');
  assert.equal(auth.claims['cognito:groups'], '[agency-admin]');
  assert.equal(auth.claims['custom:agency_id'], 'agency-x');
  assert.deepEqual(auth.scopes, ['read', 'write']);

  await raw('GET', '/accounts/acct-x/balances', { headers: { authorization: `Bearer ${token}` } });
  assert.equal(invocations.length, 1);
  assert.equal(invocations[0].event.requestContext.authorizer.jwt.claims['cognito:groups'], '[agency-admin]');
  assert.equal(invocations[0].event.requestContext.authorizer.jwt.claims.exp, String(payload.exp));

  // An access token names its client in client_id instead of aud.
  const access = signed({ ...goodClaims({ token_use: 'access' }), aud: undefined, client_id: 'dashboard' });
  assert.equal(authorizeRequest(`Bearer ${access}`).claims.client_id, 'dashboard');
  // Audiences are a list, as the template's JwtAudience.
  assert.ok(authorizeRequest(`Bearer ${signed(goodClaims({ aud: ['other', 'dashboard'] }))}`));
});

test('each kind of bad token: 401 Unauthorized from the gateway, the function never called', async () => {
  const good = signed(goodClaims());
  const [h, p, sig] = good.split('.');
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const publicPem = createPublicKey(loadSigningKey().privateKey).export({ type: 'spki', format: 'pem' });
  const hs256Input = `${part({ alg: 'HS256', typ: 'JWT', kid: loadSigningKey().kid })}.${p}`;
  const bad = {
    'no header': undefined,
    'not a JWT': 'Bearer nope',
    'another scheme': `Token ${good}`,
    'bad signature': `Bearer ${h}.${p}.${sig.slice(0, -4)}${sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`,
    'claims changed after signing': `Bearer ${h}.${part(goodClaims({ 'custom:account_id': 'acct-other' }))}.${sig}`,
    'no signature': `Bearer ${h}.${p}.`,
    'alg none': `Bearer ${part({ alg: 'none', typ: 'JWT' })}.${p}.`,
    'alg none with a kid': `Bearer ${part({ alg: 'none', kid: loadSigningKey().kid })}.${p}.${sig}`,
    'alg HS256 keyed with the public key': `Bearer ${hs256Input}.${createHmac('sha256', publicPem).update(hs256Input).digest('base64url')}`,
    'alg RS512': `Bearer ${signed(goodClaims(), { header: { alg: 'RS512' } })}`,
    'unknown kid': `Bearer ${signed(goodClaims(), { header: { kid: 'some-other-key' } })}`,
    'no kid': `Bearer ${signed(goodClaims(), { header: { kid: undefined } })}`,
    'signed by another key': `Bearer ${signed(goodClaims(), { privateKey: other })}`,
    'another issuer': `Bearer ${signed(goodClaims({ iss: 'https://evil.test' }))}`,
    'no issuer': `Bearer ${signed(goodClaims({ iss: undefined }))}`,
    'another audience': `Bearer ${signed(goodClaims({ aud: 'other-client' }))}`,
    'audience list without ours': `Bearer ${signed(goodClaims({ aud: ['a', 'b'] }))}`,
    'aud wrong, client_id right (aud wins)': `Bearer ${signed(goodClaims({ aud: 'other', client_id: 'dashboard' }))}`,
    'access token for another client': `Bearer ${signed({ ...goodClaims(), aud: undefined, client_id: 'other' })}`,
    'no audience at all': `Bearer ${signed({ ...goodClaims(), aud: undefined })}`,
    expired: `Bearer ${signed(goodClaims({ exp: now() - 1 }))}`,
    'exp a string': `Bearer ${signed(goodClaims({ exp: String(now() + 600) }))}`,
    'no exp': `Bearer ${signed(goodClaims({ exp: undefined }))}`,
    'nbf in the future': `Bearer ${signed(goodClaims({ nbf: now() + 600 }))}`,
    'nbf not a number': `Bearer ${signed(goodClaims({ nbf: 'yesterday' }))}`,
    'dev token expired': `Bearer ${makeDevToken('acct-test', { ttlSeconds: -5 })}`,
  };
  assert.ok(authorizeRequest(`Bearer ${good}`), 'the unaltered token is fine');
  for (const [kind, authorization] of Object.entries(bad)) {
    const res = await raw('GET', '/accounts/acct-test/balances', { headers: authorization === undefined ? {} : { authorization } });
    assert.equal(res.status, 401, kind);
    assert.equal(res.headers['content-type'], 'application/json', kind);
    assert.deepEqual(JSON.parse(res.body), { message: 'Unauthorized' }, kind);
  }
  assert.equal(invocations.length, 0);
});

test('issuer and audience come from DEV_JWT_ISSUER and DEV_JWT_AUDIENCE', async () => {
  process.env.DEV_JWT_ISSUER = 'http://127.0.0.1:4000';
  process.env.DEV_JWT_AUDIENCE = 'client-a, client-b';
  try {
    const gw = createGateway({ port: 0, invokeUrl: fakeUrl, log: () => {} }).server;
    const url = `http://127.0.0.1:${await listen(gw)}`;
    try {
      const config = await (await fetch(`${url}/dev/config.json`)).json();
      const claims = JSON.parse(Buffer.from(config.token.split('.')[1], 'base64url'));
      assert.equal(claims.iss, 'http://127.0.0.1:4000');
      assert.equal(claims.aud, 'client-a');
      const ok = await fetch(`${url}/accounts/acct-test/pricing`, { headers: { authorization: `Bearer ${signed(goodClaims({ iss: 'http://127.0.0.1:4000', aud: 'client-b' }))}` } });
      assert.equal(ok.status, 200);
      const old = await fetch(`${url}/accounts/acct-test/pricing`, { headers: { authorization: `Bearer ${signed(goodClaims())}` } });
      assert.equal(old.status, 401, 'the default issuer and audience are no longer accepted');
    } finally {
      gw.closeAllConnections();
      gw.close();
    }
  } finally {
    delete process.env.DEV_JWT_ISSUER;
    delete process.env.DEV_JWT_AUDIENCE;
  }
});

test('the JWKS is served and verifies the dev tokens', async () => {
  const res = await raw('GET', '/.well-known/jwks.json');
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/json');
  const { keys } = JSON.parse(res.body);
  assert.equal(keys.length, 1);
  assert.equal(keys[0].kty, 'RSA');
  assert.equal(keys[0].alg, 'RS256');
  assert.equal(keys[0].use, 'sig');
  assert.equal(keys[0].d, undefined, 'no private part');
  const token = makeDevToken('acct-test');
  const [h, p, s] = token.split('.');
  assert.equal(JSON.parse(Buffer.from(h, 'base64url')).kid, keys[0].kid);
  const publicKey = createPublicKey({ key: keys[0], format: 'jwk' });
  assert.ok(cryptoVerify('sha256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, 'base64url')));
});

test('the signing key is kept 0600 outside the repo and shared with --print-token in another process', async () => {
  assert.equal(statSync(process.env.DEV_JWT_KEY_FILE).mode & 0o777, 0o600);
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [
    join(REPO, 'dev', 'gateway.mjs'),
    '--print-token',
    'acct-cli',
    '--claims',
    '{"custom:agency_id":"agency-northwind","cognito:groups":["agency-admin"]}',
  ]);
  const res = await raw('GET', '/accounts/acct-cli/pricing', { headers: { authorization: `Bearer ${stdout.trim()}` } });
  assert.equal(res.status, 200);
  const claims = invocations.at(-1).event.requestContext.authorizer.jwt.claims;
  assert.equal(claims['custom:account_id'], 'acct-cli');
  assert.equal(claims['custom:agency_id'], 'agency-northwind');
  assert.equal(claims['cognito:groups'], '[agency-admin]');
  await assert.rejects(run(process.execPath, [join(REPO, 'dev', 'gateway.mjs'), '--print-token', 'acct-cli', '--claims', '[1]']));

  // A fresh key file is created by whichever process comes first, and both then agree on it.
  const fresh = join(stateDir, 'fresh', 'key.pem');
  const printed = (await run(process.execPath, [join(REPO, 'dev', 'gateway.mjs'), '--print-token', 'acct-y'], { env: { ...process.env, DEV_JWT_KEY_FILE: fresh } })).stdout.trim();
  assert.equal(statSync(fresh).mode & 0o777, 0o600);
  assert.ok(authorizeRequest(`Bearer ${printed}`, { key: loadSigningKey(fresh) }));
  assert.equal(authorizeRequest(`Bearer ${printed}`), null, 'another key file, another key');
});

// ------------------------------------------------------------------------------------------ requests

test('a Host other than 127.0.0.1:PORT or localhost:PORT is refused (DNS rebinding)', async () => {
  const port = new URL(base).port;
  for (const host of ['evil.test', `evil.test:${port}`, '127.0.0.1', `127.0.0.1:${Number(port) + 1}`, `127.0.0.1:${port}.evil.test`, `[::1]:${port}`]) {
    for (const path of ['/accounts/acct-test/pricing', '/dev/config.json', '/config.json', '/']) {
      const res = await raw('GET', path, { headers: { host, ...bearer() } });
      assert.equal(res.status, 421, `${host} ${path}`);
      assert.ok(res.body.length > 0 && res.body.length < 200, 'a short body');
      assert.doesNotMatch(res.body.toString(), /eyJ/, 'no token');
    }
  }
  const preflight = await raw('OPTIONS', '/accounts/acct-test/credit-purchases', {
    headers: { host: 'evil.test', origin: ORIGIN, 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.status, 421);
  assert.equal(invocations.length, 0);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
    assert.equal((await raw('GET', '/accounts/acct-test/pricing', { headers: { host, ...bearer() } })).status, 200, host);
  }
});

test('headers and query parameters named __proto__, constructor, hasOwnProperty reach the function as ordinary keys', async () => {
  const query = '__proto__=p&constructor=c1&constructor=c2&hasOwnProperty=h&toString=&a%20b=x%2By';
  const res = await raw('GET', `/accounts/acct-test/pricing?${query}`, {
    headers: ['Host', base.slice('http://'.length), 'Authorization', bearer().authorization, '__proto__', 'hp', 'Constructor', 'one', 'constructor', 'two', 'hasOwnProperty', 'h1', 'toString', 'ts'],
  });
  assert.equal(res.status, 200);
  const { event } = invocations.at(-1);
  assert.equal(event.rawQueryString, query);
  const q = event.queryStringParameters;
  for (const [name, value] of [['__proto__', 'p'], ['constructor', 'c1,c2'], ['hasOwnProperty', 'h'], ['toString', ''], ['a b', 'x+y']]) {
    assert.ok(Object.hasOwn(q, name), `query ${name}`);
    assert.equal(q[name], value, `query ${name}`);
  }
  const hd = event.headers;
  for (const [name, value] of [['__proto__', 'hp'], ['constructor', 'one,two'], ['hasownproperty', 'h1'], ['tostring', 'ts']]) {
    assert.ok(Object.hasOwn(hd, name), `header ${name}`);
    assert.equal(hd[name], value, `header ${name}`);
  }
  // A claim named __proto__ stays a claim too.
  await raw('GET', '/accounts/acct-test/pricing', { headers: { authorization: `Bearer ${signed(JSON.parse(`{"__proto__":"x",${JSON.stringify(goodClaims()).slice(1)}`))}` } });
  const claims = invocations.at(-1).event.requestContext.authorizer.jwt.claims;
  assert.ok(Object.hasOwn(claims, '__proto__'));
  assert.equal(claims.__proto__, 'x');
});

test('/config.json is the same dev config as /dev/config.json, with a token the gateway accepts', async () => {
  for (const path of ['/config.json', '/dev/config.json']) {
    const res = await raw('GET', path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers['cache-control'], 'no-store');
    const config = JSON.parse(res.body);
    assert.equal(config.apiBaseUrl, '');
    assert.equal(config.accountId, 'acct-test');
    assert.equal((await raw('GET', '/accounts/acct-test/balances', { headers: { authorization: `Bearer ${config.token}` } })).status, 200);
  }
});

test("the agency console's dev sign-in: an agency administrator's token, the same way as the panel's", async () => {
  for (const path of ['/agency-config.json', '/dev/agency-config.json']) {
    const res = await raw('GET', path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers['cache-control'], 'no-store');
    const config = JSON.parse(res.body);
    assert.equal(config.apiBaseUrl, '');
    assert.equal(config.agencyId, 'agency-northwind', 'DEV_AGENCY_ID defaults to the seeded agency-northwind');
    const auth = authorizeRequest(`Bearer ${config.token}`);
    assert.ok(auth, 'the gateway accepts its own agency token');
    assert.equal(auth.claims['custom:agency_id'], 'agency-northwind');
    assert.equal(auth.claims['cognito:groups'], '[agency-admin]', 'the admin group, as API Gateway passes arrays');
    assert.equal(auth.claims['custom:account_id'], undefined, 'an administrator is not a client');
    assert.match(auth.claims.sub, /^dev-agency-admin-/);
    const pricing = await raw('GET', '/agencies/agency-northwind/pricing', { headers: { authorization: `Bearer ${config.token}` } });
    assert.equal(pricing.status, 200);
    assert.equal(invocations.at(-1).event.routeKey, 'GET /agencies/{agencyId}/pricing');
    assert.equal(invocations.at(-1).event.requestContext.authorizer.jwt.claims['custom:agency_id'], 'agency-northwind');
  }
  // The client panel's dev config is unchanged: a client token, no agency role.
  const client = JSON.parse((await raw('GET', '/dev/config.json')).body);
  assert.equal(authorizeRequest(`Bearer ${client.token}`).claims['cognito:groups'], undefined);

  const gw = createGateway({ port: 0, invokeUrl: fakeUrl, devAgencyId: 'agency-brightside', log: () => {} }).server;
  const url = `http://127.0.0.1:${await listen(gw)}`;
  try {
    const config = await (await fetch(`${url}/dev/agency-config.json`)).json();
    assert.equal(config.agencyId, 'agency-brightside');
    assert.equal(authorizeRequest(`Bearer ${config.token}`).claims['custom:agency_id'], 'agency-brightside');
  } finally {
    gw.closeAllConnections();
    gw.close();
  }

  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, [join(REPO, 'dev', 'gateway.mjs'), '--print-agency-token', 'agency-plainsail']);
  const printed = authorizeRequest(`Bearer ${stdout.trim()}`);
  assert.equal(printed.claims['custom:agency_id'], 'agency-plainsail');
  assert.equal(printed.claims['cognito:groups'], '[agency-admin]');
  assert.equal(printed.claims['custom:account_id'], undefined);
});

test('the route with "Auth: Authorizer: NONE" (the Stripe webhook) reaches its function without a token, raw body and Stripe-Signature intact', async () => {
  const open = readTemplateApi().routes.filter((r) => r.noAuthorizer);
  assert.deepEqual(open.map((r) => `${r.method} ${r.path} ${r.fn}`), ['POST /webhooks/stripe stripe-webhook']);
  // Exactly as Stripe sends it: the signature is over these bytes, spacing included.
  const body = '{\n  "id": "evt_1",\n  "type": "payment_intent.succeeded",  "data": {"object": {"metadata": {"statementId": "s é"}}}\n}';
  const signature = `t=1700000000,v1=${createHmac('sha256', 'whsec_test').update(`1700000000.${body}`).digest('hex')}`;
  const res = await raw('POST', '/webhooks/stripe', {
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature },
    body: Buffer.from(body, 'utf8'),
  });
  assert.equal(res.status, 200);
  const { fn, event } = invocations.at(-1);
  assert.equal(fn, 'stripe-webhook');
  assert.equal(event.routeKey, 'POST /webhooks/stripe');
  assert.equal(event.headers['stripe-signature'], signature);
  const received = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  assert.equal(received, body);
  assert.equal(event.requestContext.authorizer, undefined, 'no authorizer context on an open route');
  // A token sent anyway is not looked at (a bad one is no 401 here)...
  assert.equal((await raw('POST', '/webhooks/stripe', { headers: { authorization: 'Bearer nope' }, body: '{}' })).status, 200);
  // ...and every other route still needs one.
  const before = invocations.length;
  assert.equal((await raw('POST', '/accounts/acct-test/credit-purchases', { body: '{}' })).status, 401);
  assert.equal((await raw('GET', '/webhooks/stripe')).status, 404);
  assert.equal(invocations.length, before);
});

test('an Auth setting other than "Authorizer: NONE" stops the gateway at start-up', () => {
  const file = editedTemplate('other-auth.yaml', (t) => t.replace('              Authorizer: NONE', '              Authorizer: SomethingElse'));
  assert.throws(() => readTemplateApi(file), /Properties\.Auth: only "Authorizer: NONE" is understood/);
});
