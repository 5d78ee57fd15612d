// The gateway's HTTP server: dev sign-in, CORS, static dashboard files, and every template route passed to its
// function through `cargo lambda watch`, answered the way API Gateway answers.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEvent, compileRoutes, matchRoute, newRequestId } from './events.mjs';
import { TEMPLATE_PATH, readTemplateApi } from './template.mjs';
import { DEFAULT_ACCOUNT, DEFAULT_AGENCY, audiencesFromEnv, authorizeRequest, defaultKeyFile, issuerFromEnv, loadSigningKey, makeDevAgencyToken, makeDevToken } from './tokens.mjs';

const DASHBOARD_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'dashboard', 'public');
/**
 * What API Gateway (HTTP API) answers itself when the integration fails: a function that errors, is missing
 * or returns a malformed response gets 500; one that is unreachable or exceeds the timeout gets 503.
 */
export const INTEGRATION_FAILED = { status: 500, body: { message: 'Internal Server Error' } };
export const INTEGRATION_UNAVAILABLE = { status: 503, body: { message: 'Service Unavailable' } };

/** API Gateway's payload limit for HTTP APIs. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

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
  devAgencyId = process.env.DEV_AGENCY_ID || DEFAULT_AGENCY,
  invokeTimeoutMs = Number(process.env.INVOKE_TIMEOUT_MS ?? 30000),
  staticDir = DASHBOARD_DIR,
  templatePath = TEMPLATE_PATH,
  api = readTemplateApi(templatePath),
  keyFile = defaultKeyFile(),
  issuer = issuerFromEnv(),
  audiences = audiencesFromEnv(),
  log = (line) => console.log(line),
} = {}) {
  const { cors: CORS } = api;
  const routes = compileRoutes(api.routes);
  const isApiPath = (rawPath) => routes.some((r) => r.regex.test(rawPath));
  const key = loadSigningKey(keyFile); // at start, so a bad key file stops the gateway now
  const jwks = JSON.stringify({ keys: [key.jwk] });
  const devToken = (accountId) => makeDevToken(accountId, { key, issuer, audience: audiences[0] });
  const devAgencyToken = (agencyId) => makeDevAgencyToken(agencyId, { key, issuer, audience: audiences[0] });
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
    const headers = Object.create(null);
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

    // DNS rebinding: a page on evil.test that rebinds its name to 127.0.0.1 sends Host: evil.test. Only our
    // own loopback names may reach the dev token or the functions.
    const ownPort = server.address()?.port;
    const host = String(req.headers.host ?? '').toLowerCase();
    if (host !== `127.0.0.1:${ownPort}` && host !== `localhost:${ownPort}`) {
      req.resume();
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`Misdirected Request: use http://127.0.0.1:${ownPort}/\n`);
      return done(`refused Host ${JSON.stringify(req.headers.host ?? '')}`);
    }

    if (req.method === 'OPTIONS' && req.headers.origin && req.headers['access-control-request-method']) {
      preflight(req, res);
      return done('preflight');
    }

    const match = matchRoute(routes, req.method, rawPath);
    if (!match) {
      const isRead = req.method === 'GET' || req.method === 'HEAD';
      // The panel asks config.json next to index.html first: answering it too keeps the console free of 404s.
      if (isRead && (rawPath === '/dev/config.json' || rawPath === '/config.json')) {
        const config = { apiBaseUrl: '', accountId: devAccountId, token: devToken(devAccountId), dev: true };
        send(res, req, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(config));
        return done();
      }
      // The agency console's dev sign-in, the same way: an administrator of DEV_AGENCY_ID.
      if (isRead && (rawPath === '/dev/agency-config.json' || rawPath === '/agency-config.json')) {
        const config = { apiBaseUrl: '', agencyId: devAgencyId, token: devAgencyToken(devAgencyId), dev: true };
        send(res, req, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }, JSON.stringify(config));
        return done();
      }
      if (isRead && rawPath === '/.well-known/jwks.json') {
        send(res, req, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }, jwks);
        return done();
      }
      if (isRead && !isApiPath(rawPath) && !rawPath.startsWith('/dev/') && !rawPath.startsWith('/.well-known/')) {
        await serveStatic(req, res, rawPath);
        return done('static');
      }
      req.resume();
      sendJson(res, req, 404, { message: 'Not Found' }, requestId);
      return done();
    }

    // A route with `Authorizer: NONE` reaches its function without a token (whatever Authorization it carries).
    const auth = match.route.noAuthorizer ? null : authorizeRequest(req.headers.authorization, { key, issuer, audiences });
    if (!auth && !match.route.noAuthorizer) {
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
  return { server, port, allowedOrigins, invokeBase, routes, key };
}