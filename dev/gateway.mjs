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
// The pieces, one concern each: gateway/template.mjs (routes and CORS from the template, read with the `yaml`
// package, dev/package.json), gateway/tokens.mjs (issuer and authorizer), gateway/events.mjs (routing, payload
// 2.0 events), gateway/server.mjs (the HTTP server). This file is the command and re-exports them for the tests.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createGateway } from './gateway/server.mjs';
import { DEFAULT_ACCOUNT, DEFAULT_AGENCY, makeDevAgencyToken, makeDevToken } from './gateway/tokens.mjs';

export { buildEvent, compileRoutes, matchRoute } from './gateway/events.mjs';
export { createGateway, INTEGRATION_FAILED, INTEGRATION_UNAVAILABLE, MAX_BODY_BYTES } from './gateway/server.mjs';
export { parseTemplateYaml, readTemplateApi } from './gateway/template.mjs';
export { authorizeRequest, defaultKeyFile, loadSigningKey, makeDevAgencyToken, makeDevToken } from './gateway/tokens.mjs';

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