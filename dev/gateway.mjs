#!/usr/bin/env node
// DEV ONLY: a local stand-in for API Gateway (HTTP API, payload format 2.0, JWT authorizer) in front of
// `cargo lambda watch`. It is never deployed and tokens are NOT verified: never expose it beyond loopback.
//
//   node dev/gateway.mjs                        # serve on 127.0.0.1:${GATEWAY_PORT:-3000}
//   node dev/gateway.mjs --print-token acct-x   # print an unsigned dev token for account acct-x
//
// Environment:
//   GATEWAY_PORT        port to listen on (default 3000; always bound to 127.0.0.1)
//   LAMBDA_INVOKE_URL   where `cargo lambda watch` listens (default http://127.0.0.1:9000)
//   DASHBOARD_ORIGIN    comma-separated origins allowed by CORS (default: this gateway's own origin)
//   DEV_ACCOUNT_ID      account the dashboard's dev token acts for (default acct-northwind-coffee)
//   INVOKE_TIMEOUT_MS   integration timeout (default 30000, API Gateway's maximum)
//
// Zero dependencies: Node 20+ standard library only.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The API: one line per route, exactly as the HTTP API declares them. Add new functions here. */
export const ROUTES = [
  { method: 'GET', path: '/accounts/{accountId}/pricing', fn: 'get-pricing' },
  { method: 'POST', path: '/accounts/{accountId}/credit-purchases', fn: 'purchase-credits' },
  { method: 'GET', path: '/accounts/{accountId}/balances', fn: 'get-balances' },
  { method: 'GET', path: '/accounts/{accountId}/credit-purchases', fn: 'list-purchases' },
  { method: 'GET', path: '/accounts/{accountId}/statements', fn: 'list-statements' },
];

/** CORS as the deployed HttpApi declares it (keep in step with the SAM template's CorsConfiguration). */
export const CORS = {
  allowMethods: ['GET', 'POST', 'OPTIONS'],
  allowHeaders: ['authorization', 'content-type', 'idempotency-key', 'prefer'],
  exposeHeaders: ['location', 'idempotent-replayed', 'preference-applied', 'retry-after'],
  maxAgeSeconds: 600,
};

/**
 * What API Gateway (HTTP API) answers itself when the integration fails: a function that errors, is missing
 * or returns a malformed response gets 500; one that is unreachable or exceeds the timeout gets 503.
 */
export const INTEGRATION_FAILED = { status: 500, body: { message: 'Internal Server Error' } };
export const INTEGRATION_UNAVAILABLE = { status: 503, body: { message: 'Service Unavailable' } };

/** API Gateway's payload limit for HTTP APIs. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Content types API Gateway passes as text; every other body (or none declared) arrives base64-encoded. */
function isTextContentType(contentType) {
  if (!contentType) return false;
  const essence = contentType.split(';')[0].trim().toLowerCase();
  return (
    essence.startsWith('text/') ||
    essence === 'application/json' ||
    essence === 'application/javascript' ||
    essence === 'application/xml' ||
    /^application\/[^/]+\+(json|xml)$/.test(essence)
  );
}

const DEFAULT_ACCOUNT = 'acct-northwind-coffee';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const DASHBOARD_DIR = resolve(HERE, '..', 'dashboard', 'public');

// ---------------------------------------------------------------------------------------------- tokens

const b64url = (value) => Buffer.from(value).toString('base64url');

/** An unsigned (alg "none") JWT for `accountId`: accepted by this gateway only, which never verifies tokens. */
export function makeDevToken(accountId = DEFAULT_ACCOUNT, { ttlSeconds = 24 * 60 * 60 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'none', typ: 'JWT' };
  const claims = {
    sub: `dev-user-${accountId}`,
    'custom:account_id': accountId,
    token_use: 'id',
    iss: 'dev-gateway',
    iat: now,
    exp: now + ttlSeconds,
  };
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}.`;
}

/**
 * The JWT authorizer, minus the signature check: returns the claims as API Gateway hands them to the
 * function (every value a string), or null when the request must get a 401.
 */
export function authorizeRequest(authorization, nowSeconds = Date.now() / 1000) {
  if (typeof authorization !== 'string') return null;
  const match = /^Bearer +([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)$/i.exec(authorization.trim());
  if (!match) return null;
  let header;
  let payload;
  try {
    header = JSON.parse(Buffer.from(match[1], 'base64url').toString('utf8'));
    payload = JSON.parse(Buffer.from(match[2], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(header) || !isObject(payload)) return null;
  // API Gateway rejects expired or not-yet-valid tokens; the signature is the one thing not checked here.
  if (typeof payload.exp === 'number' && payload.exp <= nowSeconds) return null;
  if (typeof payload.nbf === 'number' && payload.nbf > nowSeconds) return null;
  const claims = {};
  for (const [name, value] of Object.entries(payload)) claims[name] = stringifyClaim(value);
  const scope = typeof payload.scope === 'string' ? payload.scope : typeof payload.scp === 'string' ? payload.scp : '';
  const scopes = scope.trim() ? scope.trim().split(/\s+/) : null;
  return { claims, scopes };
}

/** API Gateway passes JWT claims as strings: arrays as "[a b]", objects as JSON. */
function stringifyClaim(value) {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' ')}]`;
  if (value !== null && typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// ---------------------------------------------------------------------------------------------- routing

const compiled = ROUTES.map((route) => {
  const names = [];
  const pattern = route.path
    .split('/')
    .map((segment) => {
      const param = /^\{([A-Za-z0-9_]+)\}$/.exec(segment);
      if (!param) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(param[1]);
      return '([^/]+)';
    })
    .join('/');
  return { ...route, routeKey: `${route.method} ${route.path}`, regex: new RegExp(`^${pattern}$`), names };
});

/** The route for a method and raw path, with its decoded path parameters; null when none matches. */
export function matchRoute(method, rawPath) {
  for (const route of compiled) {
    if (route.method !== method) continue;
    const m = route.regex.exec(rawPath);
    if (!m) continue;
    const pathParameters = {};
    route.names.forEach((name, i) => {
      try {
        pathParameters[name] = decodeURIComponent(m[i + 1]);
      } catch {
        pathParameters[name] = m[i + 1];
      }
    });
    return { route, pathParameters };
  }
  return null;
}

const isApiPath = (rawPath) => compiled.some((r) => r.regex.test(rawPath));

// ---------------------------------------------------------------------------------------------- events

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "12/Mar/2020:19:03:58 +0000", API Gateway's requestContext.time. */
function apiGatewayTime(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${p(date.getUTCHours())}:${p(
    date.getUTCMinutes(),
  )}:${p(date.getUTCSeconds())} +0000`;
}

const newRequestId = () => randomBytes(10).toString('base64');

/** Builds the payload-2.0 event API Gateway would send for this request. */
export function buildEvent({ req, rawPath, rawQueryString, match, body, auth, requestId, now = new Date() }) {
  const headers = {};
  let cookies;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    if (name === 'cookie') {
      cookies = (cookies ?? []).concat(value.split(';').map((c) => c.trim()).filter(Boolean));
      continue;
    }
    headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  const sourceIp = (req.socket.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${headers['x-forwarded-for']}, ${sourceIp}` : sourceIp;
  headers['x-forwarded-port'] = String(req.socket.localPort ?? '');
  headers['x-forwarded-proto'] = 'http';
  headers['x-amzn-trace-id'] = `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;
  if (body.length > 0 || 'content-length' in headers) headers['content-length'] = String(body.length);

  let queryStringParameters;
  if (rawQueryString) {
    queryStringParameters = {};
    for (const [name, value] of new URLSearchParams(rawQueryString)) {
      queryStringParameters[name] = name in queryStringParameters ? `${queryStringParameters[name]},${value}` : value;
    }
  }

  const domainName = headers.host ?? '127.0.0.1';
  const event = {
    version: '2.0',
    routeKey: match.route.routeKey,
    rawPath,
    rawQueryString,
    ...(cookies ? { cookies } : {}),
    headers,
    ...(queryStringParameters ? { queryStringParameters } : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'devgateway',
      authorizer: { jwt: { claims: auth.claims, scopes: auth.scopes } },
      domainName,
      domainPrefix: domainName.split('.')[0].split(':')[0],
      http: {
        method: req.method,
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: match.route.routeKey,
      stage: '$default',
      time: apiGatewayTime(now),
      timeEpoch: now.getTime(),
    },
    ...(Object.keys(match.pathParameters).length ? { pathParameters: match.pathParameters } : {}),
    isBase64Encoded: false,
  };
  if (body.length > 0) {
    if (isTextContentType(headers['content-type'])) {
      event.body = body.toString('utf8');
    } else {
      event.body = body.toString('base64');
      event.isBase64Encoded = true;
    }
  }
  return event;
}

// ---------------------------------------------------------------------------------------------- server

/** Reads the request body, refusing more than `limit` bytes without buffering them. */
function readBody(req, limit) {
  return new Promise((resolvePromise, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(Object.assign(new Error('body too large'), { tooLarge: true }));
      req.resume();
      return;
    }
    const chunks = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(Object.assign(new Error('body too large'), { tooLarge: true }));
        return; // keep draining so the 413 can still be written
      }
      chunks.push(chunk);
    });
    req.on('end', () => failed || resolvePromise(Buffer.concat(chunks, size)));
    req.on('error', (err) => failed || ((failed = true), reject(err)));
  });
}

const STATIC_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

export function createGateway({
  port = Number(process.env.GATEWAY_PORT ?? 3000),
  invokeUrl = process.env.LAMBDA_INVOKE_URL ?? 'http://127.0.0.1:9000',
  dashboardOrigins = process.env.DASHBOARD_ORIGIN,
  devAccountId = process.env.DEV_ACCOUNT_ID || DEFAULT_ACCOUNT,
  invokeTimeoutMs = Number(process.env.INVOKE_TIMEOUT_MS ?? 30000),
  staticDir = DASHBOARD_DIR,
  log = (line) => console.log(line),
} = {}) {
  const ownOrigins = [`http://127.0.0.1:${port}`, `http://localhost:${port}`];
  const allowedOrigins = new Set(
    dashboardOrigins ? dashboardOrigins.split(',').map((o) => o.trim().replace(/\/$/, '')).filter(Boolean) : ownOrigins,
  );
  const invokeBase = invokeUrl.replace(/\/$/, '');

  function corsHeaders(req) {
    const origin = req.headers.origin;
    if (!origin || !allowedOrigins.has(origin)) return {};
    return {
      'access-control-allow-origin': origin,
      'access-control-expose-headers': CORS.exposeHeaders.join(','),
      vary: 'origin',
    };
  }

  function send(res, req, status, headers, body, requestId) {
    const out = { ...headers, ...corsHeaders(req) };
    if (requestId) out['apigw-requestid'] = requestId;
    if (body !== undefined && body !== null) out['content-length'] = String(Buffer.byteLength(body));
    res.writeHead(status, out);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const sendJson = (res, req, status, value, requestId) =>
    send(res, req, status, { 'content-type': 'application/json' }, JSON.stringify(value), requestId);

  /** OPTIONS preflight, answered by the gateway itself as the HttpApi's CORS configuration does. */
  function preflight(req, res) {
    const origin = req.headers.origin;
    const method = String(req.headers['access-control-request-method'] ?? '').toUpperCase();
    const headers = String(req.headers['access-control-request-headers'] ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean);
    const ok =
      origin &&
      allowedOrigins.has(origin) &&
      CORS.allowMethods.includes(method) &&
      headers.every((h) => CORS.allowHeaders.includes(h));
    if (!ok) {
      res.writeHead(204, { vary: 'origin' });
      res.end();
      return;
    }
    res.writeHead(204, {
      'access-control-allow-origin': origin,
      'access-control-allow-methods': CORS.allowMethods.join(','),
      'access-control-allow-headers': CORS.allowHeaders.join(','),
      'access-control-max-age': String(CORS.maxAgeSeconds),
      vary: 'origin',
    });
    res.end();
  }

  async function invoke(fn, event) {
    const response = await fetch(`${invokeBase}/2015-03-31/functions/${encodeURIComponent(fn)}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(invokeTimeoutMs),
    });
    const text = await response.text();
    if (!response.ok) {
      throw Object.assign(new Error(`invoke ${fn}: HTTP ${response.status}: ${text.slice(0, 300)}`), { kind: 'integration' });
    }
    if (response.headers.get('x-amz-function-error')) {
      throw Object.assign(new Error(`${fn} failed: ${text.slice(0, 300)}`), { kind: 'integration' });
    }
    try {
      return JSON.parse(text);
    } catch {
      throw Object.assign(new Error(`${fn} returned non-JSON: ${text.slice(0, 300)}`), { kind: 'integration' });
    }
  }

  /** Writes the function's result back the way API Gateway does (payload 2.0, including its inferred format). */
  function writeLambdaResponse(req, res, result, requestId) {
    const looksLikeResponse = result && typeof result === 'object' && !Array.isArray(result) && 'statusCode' in result;
    if (!looksLikeResponse) {
      send(res, req, 200, { 'content-type': 'application/json' }, JSON.stringify(result), requestId);
      return;
    }
    const status = Number(result.statusCode);
    if (!Number.isInteger(status) || status < 100 || status > 599) throw Object.assign(new Error(`bad statusCode ${result.statusCode}`), { kind: 'integration' });
    const headers = {};
    for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
    for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) {
      if (Array.isArray(values) && values.length) headers[name.toLowerCase()] = values.map(String); // overrides the joined form
    }
    if (Array.isArray(result.cookies) && result.cookies.length) {
      headers['set-cookie'] = [].concat(headers['set-cookie'] ?? [], result.cookies.map(String));
    }
    let body = '';
    if (typeof result.body === 'string') body = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : result.body;
    else if (result.body != null) body = JSON.stringify(result.body);
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    const out = { ...headers, ...corsHeaders(req), 'apigw-requestid': requestId, 'content-length': String(Buffer.byteLength(body)) };
    res.writeHead(status, out);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  async function serveStatic(req, res, rawPath) {
    let path;
    try {
      path = decodeURIComponent(rawPath);
    } catch {
      return sendJson(res, req, 404, { message: 'Not Found' });
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(staticDir, path));
    if (!file.startsWith(staticDir + sep) || path.includes('\0')) return sendJson(res, req, 404, { message: 'Not Found' });
    try {
      const info = await stat(file);
      if (!info.isFile()) return sendJson(res, req, 404, { message: 'Not Found' });
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': STATIC_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'content-length': String(body.length),
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      sendJson(res, req, 404, { message: 'Not Found' });
    }
  }

  async function handle(req, res) {
    const started = Date.now();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawPath = q === -1 ? url : url.slice(0, q);
    const rawQueryString = q === -1 ? '' : url.slice(q + 1);
    const requestId = newRequestId();
    const done = (note) => log(`${req.method} ${rawPath} -> ${res.statusCode} ${Date.now() - started}ms${note ? ` ${note}` : ''}`);

    if (req.method === 'OPTIONS' && req.headers.origin && req.headers['access-control-request-method']) {
      preflight(req, res);
      return done('preflight');
    }

    const match = matchRoute(req.method, rawPath);
    if (!match) {
      if ((req.method === 'GET' || req.method === 'HEAD') && rawPath === '/dev/config.json') {
        const config = { apiBaseUrl: '', accountId: devAccountId, token: makeDevToken(devAccountId) };
        send(res, req, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(config));
        return done();
      }
      if ((req.method === 'GET' || req.method === 'HEAD') && !isApiPath(rawPath) && !rawPath.startsWith('/dev/')) {
        await serveStatic(req, res, rawPath);
        return done('static');
      }
      req.resume();
      sendJson(res, req, 404, { message: 'Not Found' }, requestId);
      return done();
    }

    const auth = authorizeRequest(req.headers.authorization);
    if (!auth) {
      req.resume();
      sendJson(res, req, 401, { message: 'Unauthorized' }, requestId);
      return done('unauthorized');
    }

    let body;
    try {
      body = await readBody(req, MAX_BODY_BYTES);
    } catch (err) {
      if (err.tooLarge) {
        res.setHeader('connection', 'close');
        sendJson(res, req, 413, { message: 'Request Entity Too Large' }, requestId);
        return done('body too large');
      }
      res.destroy();
      return done(`client error: ${err.message}`);
    }

    const event = buildEvent({ req, rawPath, rawQueryString, match, body, auth, requestId });
    try {
      const result = await invoke(match.route.fn, event);
      writeLambdaResponse(req, res, result, requestId);
      return done(match.route.fn);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return done(`${match.route.fn}: ${err.message}`);
      }
      // Function missing, crashed or answered garbage: 500. Unreachable or too slow: 503.
      const { status, body: message } = err.kind === 'integration' ? INTEGRATION_FAILED : INTEGRATION_UNAVAILABLE;
      sendJson(res, req, status, message, requestId);
      return done(`${match.route.fn}: ${err.cause?.code ?? err.name}: ${err.message}`);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      log(`gateway bug: ${err.stack ?? err}`);
      if (!res.headersSent) sendJson(res, req, 500, { message: 'Internal Server Error' });
      else res.destroy();
    });
  });
  server.requestTimeout = invokeTimeoutMs + 30000;
  return { server, port, allowedOrigins, invokeBase };
}

function banner(port, invokeBase, origins) {
  const line = '!'.repeat(72);
  return [
    line,
    '!!  DEV GATEWAY — tokens are NOT verified — never expose',
    '!!  Local stand-in for API Gateway; it is not part of any deployment.',
    `!!  listening  http://127.0.0.1:${port}/  (dashboard at /, dev token at /dev/config.json)`,
    `!!  functions  ${invokeBase}/2015-03-31/functions/<name>/invocations`,
    `!!  CORS       ${[...origins].join(', ')}`,
    line,
  ].join('\n');
}

async function main(argv) {
  const i = argv.indexOf('--print-token');
  if (i !== -1) {
    const account = argv[i + 1] && !argv[i + 1].startsWith('-') ? argv[i + 1] : process.env.DEV_ACCOUNT_ID || DEFAULT_ACCOUNT;
    process.stdout.write(`${makeDevToken(account)}\n`);
    return;
  }
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write('usage: node dev/gateway.mjs [--print-token ACCOUNT_ID]\n');
    return;
  }
  const { server, port, allowedOrigins, invokeBase } = createGateway();
  server.on('error', (err) => {
    console.error(`dev gateway: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => console.log(banner(port, invokeBase, allowedOrigins)));
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main(process.argv.slice(2));
}
