// How API Gateway (HTTP API, payload format 2.0) turns a request into a function's event: route matching and
// the event itself.
import { randomBytes } from 'node:crypto';

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
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "12/Mar/2020:19:03:58 +0000", API Gateway's requestContext.time. */
function apiGatewayTime(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${p(date.getUTCHours())}:${p(
    date.getUTCMinutes(),
  )}:${p(date.getUTCSeconds())} +0000`;
}

export const newRequestId = () => randomBytes(10).toString('base64');

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