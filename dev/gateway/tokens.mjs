// The dev token issuer and the JWT authorizer: an RS256 key kept outside the repo signs dev tokens, and every
// request is verified as API Gateway's JWT authorizer does (signature, alg, kid, iss, aud/client_id, exp, nbf).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export const DEFAULT_ACCOUNT = 'acct-northwind-coffee';
export const DEFAULT_AGENCY = 'agency-northwind';

const b64url = (value) => Buffer.from(value).toString('base64url');

const DEFAULT_ISSUER = 'dev-gateway';
const DEFAULT_AUDIENCE = 'dashboard';
export const issuerFromEnv = () => process.env.DEV_JWT_ISSUER || DEFAULT_ISSUER;
/** Like the template's JwtAudience: a comma-separated list; dev tokens carry the first. */
export const audiencesFromEnv = () => (process.env.DEV_JWT_AUDIENCE || DEFAULT_AUDIENCE).split(',').map((a) => a.trim()).filter(Boolean);

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