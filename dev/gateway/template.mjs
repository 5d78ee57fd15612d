// The API as infra/template.yaml declares it: routes (function, method, path, authorizer) and the HttpApi's CORS.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';

export const TEMPLATE_PATH = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'infra', 'template.yaml');

/**
 * The template as plain data: every scalar a string (the failsafe schema: `MaxAge: 600` stays "600", as the
 * checks below expect), CloudFormation tags kept as `{ '!Ref': 'X' }`. Anchors and aliases throw with their
 * line: SAM resolves them, but a template using them is one this gateway was never checked against.
 */
export function parseTemplateYaml(text, name = 'infra/template.yaml') {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { schema: 'failsafe', lineCounter, uniqueKeys: true });
  const fail = (offset, why) => {
    throw new Error(`${name} line ${offset === undefined ? 'end' : lineCounter.linePos(offset).line}: ${why}`);
  };
  // Warnings are only the CloudFormation tags the failsafe schema does not know: toPlain keeps them.
  if (doc.errors.length) fail(doc.errors[0].pos[0], doc.errors[0].message.split('\n')[0]);
  const toPlain = (node) => {
    if (node == null) return null;
    if (isAlias(node) || node.anchor) fail(node.range?.[0], 'anchors and aliases are not supported');
    let value;
    if (isMap(node)) {
      value = Object.create(null);
      for (const pair of node.items) value[String(isScalar(pair.key) ? pair.key.value : pair.key)] = toPlain(pair.value);
    } else if (isSeq(node)) {
      value = node.items.map(toPlain);
    } else {
      value = node.value == null || node.value === '' ? (node.tag ? '' : null) : String(node.value);
    }
    // A CloudFormation tag (`!Ref`, `!Sub`, ...) wraps its value; YAML's own (`!!str`) does not.
    return node.tag && !node.tag.startsWith('tag:yaml.org') && node.tag.startsWith('!') ? { [node.tag]: value } : value;
  };
  return toPlain(doc.contents);
}
const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'ANY'];

/**
 * The API as the SAM template declares it: every HttpApi event of every AWS::Serverless::Function (the
 * function is the cargo binary named in Metadata.BuildProperties.Binary), and the HttpApi's CorsConfiguration.
 * Throws when something it needs is missing or odd: a gateway serving a guessed API would hide the drift.
 */
export function readTemplateApi(templatePath = TEMPLATE_PATH) {
  const doc = parseTemplateYaml(readFileSync(templatePath, 'utf8'), templatePath);
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
