#!/usr/bin/env node
// DEV ONLY: a local stand-in for API Gateway (HTTP API, payload format 2.0, JWT authorizer) in front of
// `cargo lambda watch`. It is never deployed and listens on loopback only. It is its own token issuer: it signs
// dev tokens with an RS256 key kept outside the repo and verifies every token as the JWT authorizer does
// (signature, alg, kid, iss, aud/client_id, exp, nbf). Routes and CORS come from infra/template.yaml.
//
//   node dev/gateway.mjs                        # serve on 127.0.0.1:${GATEWAY_PORT:-3000}
//   node dev/gateway.mjs --print-token acct-x   # print a signed dev token for account acct-x
//   node dev/gateway.mjs --print-token acct-x --claims '{"custom:agency_id":"agency-x","cognito:groups":["agency-admin"]}'
//   node dev/gateway.mjs --print-agency-token agency-x   # an agency administrator's token for agency-x
//
// Environment:
//   GATEWAY_PORT        port to listen on (default 3000; always bound to 127.0.0.1)
//   LAMBDA_INVOKE_URL   where `cargo lambda watch` listens (default http://127.0.0.1:9000)
//   DASHBOARD_ORIGIN    comma-separated origins allowed by CORS (default: this gateway's own origin)
//   DEV_ACCOUNT_ID      account the dashboard's dev token acts for (default acct-northwind-coffee)
//   DEV_AGENCY_ID       agency whose administrator the agency console's dev token is (default agency-northwind)
//   INVOKE_TIMEOUT_MS   integration timeout (default 30000, API Gateway's maximum)
//   DEV_JWT_ISSUER      iss of the dev tokens, the only one accepted (default dev-gateway)
//   DEV_JWT_AUDIENCE    comma-separated accepted aud/client_id; tokens carry the first (default dashboard)
//   DEV_JWT_KEY_FILE    the signing key, created 0600 when missing; shared with --print-token
//                       (default ${XDG_STATE_HOME:-~/.local/state}/overage-credits/dev-gateway-key.pem)
//
// Zero dependencies: Node 20+ standard library only.

import { createServer } from 'node:http';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as cryptoSign,
  verify as cryptoVerify,
} from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------------------------- template

/**
 * Reads the subset of YAML the SAM template uses: block mappings and sequences, flow `[...]`/`{...}` on one
 * line, quoted and plain scalars, CloudFormation tags (`!Ref X` becomes `{ '!Ref': 'X' }`), `>-`/`|` block
 * scalars and comments. Anything else (anchors, multi-line flows, tabs, documents) throws with its line
 * number, so a template this reader misunderstands stops the gateway instead of serving the wrong API.
 */
export function parseTemplateYaml(text) {
  const lines = text.split(/\r?\n/).map((raw, i) => ({ raw, no: i + 1 }));
  const fail = (line, why) => {
    throw new Error(`infra/template.yaml line ${line?.no ?? 'end'}: ${why}`);
  };
  let at = 0;
  // Content lines only; `text` has its comment removed.
  const peek = () => {
    while (at < lines.length) {
      const line = lines[at];
      if (line.text === undefined) {
        if (/^\s*\t/.test(line.raw)) fail(line, 'tab indentation');
        const body = stripComment(line.raw);
        if (body.trim() === '' ) {
          at++;
          continue;
        }
        if (/^(---|\.\.\.|%)/.test(body)) fail(line, 'multiple documents or directives are not supported');
        line.indent = body.length - body.trimStart().length;
        line.text = body.trim();
      }
      return line;
    }
    return null;
  };
  const isSeqItem = (t) => t === '-' || t.startsWith('- ');
  // A plain key may hold a colon not followed by a space (IAM condition keys: `ForAllValues:StringLike:`).
  const keyOf = (t) => /^([^\s'"\[\]{}#&*!|>%@`,-](?:[^:#]|:(?=\S))*?|"[^"]*"|'[^']*')\s*:(?:\s+(.*))?$/.exec(t);

  function block(indent) {
    const line = peek();
    if (!line || line.indent < indent) return null;
    return isSeqItem(line.text) ? sequence(line.indent) : mapping(line.indent);
  }

  function valueAfterKey(line, rest, indent) {
    // A tag alone ("DashboardBody: !Sub") is followed by its block, read as if untagged.
    if (rest === undefined || rest === '' || /^![A-Za-z:]+$/.test(rest)) {
      const next = peek();
      if (next && (next.indent > indent || (next.indent === indent && isSeqItem(next.text)))) return block(next.indent);
      return null;
    }
    if (/^[|>][+-]?$/.test(rest)) {
      // Block scalar: every following line indented deeper (or blank) is its text, comments included.
      const parts = [];
      while (at < lines.length) {
        const raw = lines[at].raw;
        if (raw.trim() !== '' && raw.length - raw.trimStart().length <= indent) break;
        parts.push(raw.trim());
        at++;
      }
      return parts.join(rest.startsWith('>') ? ' ' : '\n').trim();
    }
    return inline(rest, line);
  }

  function mapping(indent) {
    const out = Object.create(null);
    for (let line = peek(); line && line.indent === indent && !isSeqItem(line.text); line = peek()) {
      const m = keyOf(line.text);
      if (!m) fail(line, `expected "key: value", got ${JSON.stringify(line.text)}`);
      const key = /^['"]/.test(m[1]) ? m[1].slice(1, -1) : m[1].trim();
      if (Object.hasOwn(out, key)) fail(line, `duplicate key ${key}`);
      at++;
      out[key] = valueAfterKey(line, m[2], indent);
    }
    const next = peek();
    if (next && next.indent > indent) fail(next, 'unexpected indentation');
    return out;
  }

  function sequence(indent) {
    const out = [];
    for (let line = peek(); line && line.indent === indent && isSeqItem(line.text); line = peek()) {
      const rest = line.text.slice(1).trimStart();
      if (rest === '') {
        at++;
        out.push(block(indent + 1));
      } else if (keyOf(rest) && !/^[[{'"!]/.test(rest)) {
        // "- key: value" opens a mapping whose keys line up with "key".
        line.indent += line.text.length - rest.length;
        line.text = rest;
        out.push(mapping(line.indent));
      } else if (/^[|>][+-]?$/.test(rest)) {
        // "- |": a block scalar as a sequence item (the dashboard body in a !Sub list).
        at++;
        out.push(valueAfterKey(line, rest, indent));
      } else {
        at++;
        out.push(inline(rest, line));
      }
    }
    return out;
  }

  function inline(textValue, line) {
    let i = 0;
    const src = textValue.trim();
    const space = () => {
      while (src[i] === ' ') i++;
    };
    function value(inFlow) {
      space();
      const c = src[i];
      if (c === '[' || c === '{') {
        const close = c === '[' ? ']' : '}';
        const out = c === '[' ? [] : Object.create(null);
        i++;
        space();
        if (src[i] === close) return i++, out;
        for (;;) {
          if (c === '[') out.push(value(true));
          else {
            space();
            const keyStart = i;
            while (i < src.length && src[i] !== ':') i++;
            const key = src.slice(keyStart, i).trim();
            if (src[i] !== ':' || !key) fail(line, `bad flow mapping ${JSON.stringify(src)}`);
            i++;
            out[key.replace(/^(['"])(.*)\1$/, '$2')] = value(true);
          }
          space();
          if (src[i] === ',') {
            i++;
            continue;
          }
          if (src[i] === close) return i++, out;
          fail(line, `unterminated flow collection ${JSON.stringify(src)}`);
        }
      }
      if (c === '"' || c === "'") {
        const end = c === '"' ? /^"((?:[^"\\]|\\.)*)"/.exec(src.slice(i)) : /^'((?:[^']|'')*)'/.exec(src.slice(i));
        if (!end) fail(line, `unterminated string ${JSON.stringify(src)}`);
        i += end[0].length;
        return c === '"' ? JSON.parse(end[0]) : end[1].replace(/''/g, "'");
      }
      if (c === '!') {
        const tag = /^!\w+/.exec(src.slice(i))?.[0];
        if (!tag) fail(line, `bad tag ${JSON.stringify(src)}`);
        i += tag.length;
        return { [tag]: value(inFlow) };
      }
      if (c === '&' || c === '*') fail(line, 'anchors and aliases are not supported');
      const start = i;
      while (i < src.length && !(inFlow && /[,\]}]/.test(src[i]))) i++;
      return src.slice(start, i).trim();
    }
    const out = value(false);
    space();
    if (i !== src.length) fail(line, `unexpected ${JSON.stringify(src.slice(i))}`);
    return out;
  }

  const doc = block(0);
  if (peek()) fail(peek(), 'unexpected content');
  return doc;
}

/** The line without its comment: a `#` at the start or after a space, outside quotes. */
function stripComment(raw) {
  let quote = null;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s:\[{,-]/.test(raw[i - 1])) quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(raw[i - 1]))) {
      return raw.slice(0, i).trimEnd();
    }
  }
  return raw.trimEnd();
}

const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'ANY'];

/**
 * The API as the SAM template declares it: every HttpApi event of every AWS::Serverless::Function (the
 * function is the cargo binary named in Metadata.BuildProperties.Binary), and the HttpApi's CorsConfiguration.
 * Throws when something it needs is missing or odd: a gateway serving a guessed API would hide the drift.
 */
export function readTemplateApi(templatePath = TEMPLATE_PATH) {
  const doc = parseTemplateYaml(readFileSync(templatePath, 'utf8'));
  const where = (...path) => `${templatePath}: ${path.join('.')}`;
  const resources = doc?.Resources;
  if (!resources || typeof resources !== 'object') throw new Error(`${where('Resources')} is missing`);
  const routes = [];
  const seen = new Set();
  for (const [name, resource] of Object.entries(resources)) {
    if (resource?.Type !== 'AWS::Serverless::Function') continue;
    for (const [eventName, event] of Object.entries(resource.Properties?.Events ?? {})) {
      if (event?.Type !== 'HttpApi') continue;
      const fn = resource.Metadata?.BuildProperties?.Binary;
      if (typeof fn !== 'string' || !/^[A-Za-z0-9_-]+$/.test(fn)) {
        throw new Error(`${where('Resources', name, 'Metadata.BuildProperties.Binary')}: the cargo binary name is missing`);
      }
      const method = event.Properties?.Method;
      const path = event.Properties?.Path;
      if (typeof method !== 'string' || !HTTP_METHODS.includes(method.toUpperCase())) {
        throw new Error(`${where('Resources', name, 'Properties.Events', eventName, 'Properties.Method')}: ${JSON.stringify(method)}`);
      }
      if (typeof path !== 'string' || !/^\/[A-Za-z0-9._~{}+/-]*$/.test(path)) {
        throw new Error(`${where('Resources', name, 'Properties.Events', eventName, 'Properties.Path')}: ${JSON.stringify(path)}`);
      }
      // `Auth: { Authorizer: NONE }` opts a route out of the API's default JWT authorizer (the Stripe webhook:
      // Stripe cannot send a token, its signature authenticates it). Any other Auth setting is refused here.
      const auth = event.Properties?.Auth;
      if (auth !== undefined && !(auth && Object.keys(auth).length === 1 && auth.Authorizer === 'NONE')) {
        throw new Error(`${where('Resources', name, 'Properties.Events', eventName, 'Properties.Auth')}: only "Authorizer: NONE" is understood`);
      }
      const route = { method: method.toUpperCase(), path, fn, ...(auth ? { noAuthorizer: true } : {}) };
      const routeKey = `${route.method} ${route.path}`;
      if (seen.has(routeKey)) throw new Error(`${templatePath}: route ${routeKey} is declared twice`);
      seen.add(routeKey);
      routes.push(route);
    }
  }
  if (!routes.length) throw new Error(`${templatePath}: no AWS::Serverless::Function has an HttpApi event`);

  const apis = Object.entries(resources).filter(([, r]) => r?.Type === 'AWS::Serverless::HttpApi');
  if (apis.length !== 1) throw new Error(`${templatePath}: expected one AWS::Serverless::HttpApi, found ${apis.length}`);
  const [apiName, api] = apis[0];
  const cors = api.Properties?.CorsConfiguration;
  if (!cors || typeof cors !== 'object') throw new Error(`${where('Resources', apiName, 'Properties.CorsConfiguration')} is missing`);
  const list = (field, normalise) => {
    const value = cors?.[field];
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v)) {
      throw new Error(`${where('Resources', apiName, 'Properties.CorsConfiguration', field)}: expected a list of names`);
    }
    return value.map(normalise);
  };
  const allowMethods = list('AllowMethods', (m) => m.toUpperCase());
  const allowHeaders = list('AllowHeaders', (h) => h.toLowerCase());
  const exposeHeaders = list('ExposeHeaders', (h) => h.toLowerCase());
  const maxAgeSeconds = /^\d+$/.test(cors.MaxAge ?? '') ? Number(cors.MaxAge) : NaN;
  if (!Number.isSafeInteger(maxAgeSeconds)) throw new Error(`${where('Resources', apiName, 'Properties.CorsConfiguration.MaxAge')}: ${cors.MaxAge}`);
  return { routes, cors: { allowMethods, allowHeaders, exposeHeaders, maxAgeSeconds } };
}

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
const DEFAULT_AGENCY = 'agency-northwind';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const DASHBOARD_DIR = resolve(HERE, '..', 'dashboard', 'public');
const TEMPLATE_PATH = resolve(HERE, '..', 'infra', 'template.yaml');

// ---------------------------------------------------------------------------------------------- tokens

const b64url = (value) => Buffer.from(value).toString('base64url');

const DEFAULT_ISSUER = 'dev-gateway';
const DEFAULT_AUDIENCE = 'dashboard';
const issuerFromEnv = () => process.env.DEV_JWT_ISSUER || DEFAULT_ISSUER;
/** Like the template's JwtAudience: a comma-separated list; dev tokens carry the first. */
const audiencesFromEnv = () => (process.env.DEV_JWT_AUDIENCE || DEFAULT_AUDIENCE).split(',').map((a) => a.trim()).filter(Boolean);

/** Outside the repo: `cargo lambda watch` rebuilds on any change in the working tree. */
export function defaultKeyFile() {
  if (process.env.DEV_JWT_KEY_FILE) return resolve(process.env.DEV_JWT_KEY_FILE);
  const state = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(state, 'overage-credits', 'dev-gateway-key.pem');
}

const loadedKeys = new Map();

/**
 * The issuer's RS256 key, created (0600) on first use and shared by the running gateway and `--print-token`
 * through the file. Two processes starting at once both end up with the first key written: the file is
 * created complete under a temporary name and then hard-linked into place, which fails if it exists.
 */
export function loadSigningKey(keyFile = defaultKeyFile()) {
  const cached = loadedKeys.get(keyFile);
  if (cached) return cached;
  let pem;
  try {
    pem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const temporary = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(temporary, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    chmodSync(temporary, 0o600); // whatever the umask
    try {
      linkSync(temporary, keyFile);
    } catch (linkErr) {
      if (linkErr.code !== 'EEXIST') throw linkErr;
    } finally {
      unlinkSync(temporary);
    }
    pem = readFileSync(keyFile, 'utf8');
  }
  if (statSync(keyFile).mode & 0o077) throw new Error(`${keyFile} is readable by others: chmod 600 it (or delete it to get a new key)`);
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'rsa') throw new Error(`${keyFile} is not an RSA private key`);
  const publicKey = createPublicKey(privateKey);
  const { n, e } = publicKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint: the same key always has the same kid, in every process.
  const kid = createHash('sha256').update(JSON.stringify({ e, kty: 'RSA', n })).digest('base64url');
  const key = { privateKey, publicKey, kid, jwk: { kty: 'RSA', use: 'sig', alg: 'RS256', kid, n, e }, keyFile };
  loadedKeys.set(keyFile, key);
  return key;
}

/**
 * A dev ID token for `accountId`, signed RS256 by this gateway's key. `claims` are added last (they may
 * override the defaults), e.g. an agency admin's `{ 'custom:agency_id': 'agency-x', 'cognito:groups': ['agency-admin'] }`.
 */
export function makeDevToken(
  accountId = DEFAULT_ACCOUNT,
  { ttlSeconds = 24 * 60 * 60, claims: extra = {}, key = loadSigningKey(), issuer = issuerFromEnv(), audience = audiencesFromEnv()[0] } = {},
) {
  return signDevToken({ sub: `dev-user-${accountId}`, 'custom:account_id': accountId }, extra, { ttlSeconds, key, issuer, audience });
}

/**
 * A dev ID token for an administrator of `agencyId`, as Cognito would issue it: the agency claim
 * (`custom:agency_id`) and membership of the `agency-admin` group (`cognito:groups`), no account claim.
 */
export function makeDevAgencyToken(
  agencyId = DEFAULT_AGENCY,
  { ttlSeconds = 24 * 60 * 60, claims: extra = {}, key = loadSigningKey(), issuer = issuerFromEnv(), audience = audiencesFromEnv()[0] } = {},
) {
  const identity = { sub: `dev-agency-admin-${agencyId}`, 'custom:agency_id': agencyId, 'cognito:groups': ['agency-admin'] };
  return signDevToken(identity, extra, { ttlSeconds, key, issuer, audience });
}

function signDevToken(identity, extra, { ttlSeconds, key, issuer, audience }) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', typ: 'JWT', kid: key.kid };
  const claims = { ...identity, token_use: 'id', iss: issuer, aud: audience, iat: now, exp: now + ttlSeconds, ...extra };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${signingInput}.${cryptoSign('sha256', Buffer.from(signingInput), key.privateKey).toString('base64url')}`;
}

/**
 * The JWT authorizer: returns the claims as API Gateway hands them to the function (every value a string),
 * or null when the request must get a 401. Like API Gateway it requires an RS256 signature by a key of the
 * JWKS (by `kid`), the configured `iss`, an `aud` among the audiences (or, without `aud`, a `client_id`
 * among them, as access tokens carry), a numeric `exp` in the future and no `nbf` in the future.
 */
export function authorizeRequest(
  authorization,
  { key = loadSigningKey(), issuer = issuerFromEnv(), audiences = audiencesFromEnv(), nowSeconds = Date.now() / 1000 } = {},
) {
  if (typeof authorization !== 'string') return null;
  const match = /^Bearer +([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/i.exec(authorization.trim());
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
  // Never let the token pick the algorithm: RS256 with the key named by kid, or nothing.
  if (header.alg !== 'RS256' || header.kid !== key.kid) return null;
  const signature = Buffer.from(match[3], 'base64url');
  if (!cryptoVerify('sha256', Buffer.from(`${match[1]}.${match[2]}`), key.publicKey, signature)) return null;
  if (payload.iss !== issuer) return null;
  const audienceClaim = payload.aud !== undefined ? payload.aud : payload.client_id;
  const tokenAudiences = Array.isArray(audienceClaim) ? audienceClaim : [audienceClaim];
  if (!tokenAudiences.some((a) => typeof a === 'string' && audiences.includes(a))) return null;
  if (typeof payload.exp !== 'number' || !Number.isFinite(payload.exp) || payload.exp <= nowSeconds) return null;
  if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > nowSeconds)) return null;
  const claims = Object.create(null); // a claim named __proto__ stays a claim
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

/** Each route with its routeKey and a regex for raw paths: `{name}` is one segment, `{name+}` the rest. */
export function compileRoutes(routes) {
  return routes.map((route) => {
    const names = [];
    const pattern = route.path
      .split('/')
      .map((segment) => {
        const param = /^\{([A-Za-z0-9_]+)(\+?)\}$/.exec(segment);
        if (!param) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        names.push(param[1]);
        return param[2] ? '(.+)' : '([^/]+)';
      })
      .join('/');
    return { ...route, routeKey: `${route.method} ${route.path}`, regex: new RegExp(`^${pattern}$`), names };
  });
}

/** The route for a method and raw path, with its decoded path parameters; null when none matches. */
export function matchRoute(compiled, method, rawPath) {
  for (const route of compiled) {
    if (route.method !== method && route.method !== 'ANY') continue;
    const m = route.regex.exec(rawPath);
    if (!m) continue;
    const pathParameters = Object.create(null);
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
  // Null-prototype maps: a header or parameter named __proto__ or constructor is an ordinary key here.
  const headers = Object.create(null);
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
    queryStringParameters = Object.create(null);
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
      // A route without authorizer has none in its context, as API Gateway sends it.
      ...(auth ? { authorizer: { jwt: { claims: auth.claims, scopes: auth.scopes } } } : {}),
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

function banner(port, invokeBase, origins, routes, key) {
  const line = '!'.repeat(72);
  return [
    line,
    '!!  DEV GATEWAY — local issuer of dev tokens — loopback only, never expose',
    '!!  Local stand-in for API Gateway; it is not part of any deployment.',
    `!!  listening  http://127.0.0.1:${port}/  (dashboard at /, dev token at /dev/config.json)`,
    `!!  console    http://127.0.0.1:${port}/agency.html  (agency admin's dev token at /dev/agency-config.json)`,
    `!!  functions  ${invokeBase}/2015-03-31/functions/<name>/invocations`,
    `!!  CORS       ${[...origins].join(', ')}`,
    `!!  JWKS       http://127.0.0.1:${port}/.well-known/jwks.json (key ${key.keyFile})`,
    ...routes.map((r) => `!!  route      ${r.routeKey} -> ${r.fn}${r.noAuthorizer ? ' (no authorizer)' : ''}`),
    line,
  ].join('\n');
}

const USAGE = `usage: node dev/gateway.mjs [--print-token [ACCOUNT_ID] [--claims JSON]]
       node dev/gateway.mjs --print-agency-token [AGENCY_ID] [--claims JSON]
  --print-token         a client's token (custom:account_id)
  --print-agency-token  an agency administrator's token (custom:agency_id, cognito:groups ["agency-admin"])
  --claims              extra claims for the token, e.g. '{"custom:agency_id":"agency-northwind","cognito:groups":["agency-admin"]}'
`;

async function main(argv) {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(USAGE);
    return;
  }
  const asAgency = argv.includes('--print-agency-token');
  const i = argv.indexOf(asAgency ? '--print-agency-token' : '--print-token');
  if (i !== -1) {
    const fallback = asAgency ? process.env.DEV_AGENCY_ID || DEFAULT_AGENCY : process.env.DEV_ACCOUNT_ID || DEFAULT_ACCOUNT;
    const subject = argv[i + 1] && !argv[i + 1].startsWith('-') ? argv[i + 1] : fallback;
    const c = argv.indexOf('--claims');
    let claims = {};
    if (c !== -1) {
      try {
        claims = JSON.parse(argv[c + 1] ?? '');
      } catch {
        claims = null;
      }
      if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
        process.stderr.write(`--claims needs a JSON object\n${USAGE}`);
        process.exitCode = 2;
        return;
      }
    }
    const token = asAgency ? makeDevAgencyToken(subject, { claims }) : makeDevToken(subject, { claims });
    process.stdout.write(`${token}\n`);
    return;
  }
  const { server, port, allowedOrigins, invokeBase, routes, key } = createGateway();
  server.on('error', (err) => {
    console.error(`dev gateway: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => console.log(banner(port, invokeBase, allowedOrigins, routes, key)));
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
