// @ts-check
// Calling the API, shared by the client panel (app.js) and the agency console (agency.js): the page's
// configuration, the token's claims, one call, the retry with the same Idempotency-Key, and the sentence for people
// from any refused answer (problem+json). No DOM here beyond document.baseURI, so node:test can import it.

/** @typedef {import('../types/openapi').components['schemas']} Schemas */
/** @typedef {'audience' | 'enrichment' | 'pixel' | 'custom_model'} CreditType */
/**
 * An HTTP answer: `body` is the parsed JSON or problem+json, else null. Status 0: no answer at all.
 * @typedef {{ status: number, headers: Headers, body: any }} Answer
 */
/** @typedef {{ apiBaseUrl: string, id: string, getToken: () => Promise<string | null>, dev: boolean }} Config */

/** The credit types, in the order the API and the tables list them. */
export const CREDIT_TYPES = /** @type {const} */ ([
  { id: 'audience', label: 'Audience' },
  { id: 'enrichment', label: 'Enrichment' },
  { id: 'pixel', label: 'Pixel' },
  { id: 'custom_model', label: 'Custom Model' },
]);
/** @type {Record<string, string>} */
const LABEL = Object.fromEntries(CREDIT_TYPES.map(({ id, label }) => [id, label]));
/** @param {unknown} type */
export const labelOf = (type) => LABEL[String(type)] ?? String(type);
/** @param {unknown} type */
export const isCreditType = (type) => Object.hasOwn(LABEL, String(type));

/**
 * A JSON document, or null when it is missing, unreadable or not JSON (the caller falls back or explains).
 * @param {string | URL} url
 */
export async function fetchJson(url) {
  try {
    const response = await fetch(url, { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * The claims of a JWT, unverified (for display and defaults only: the API verifies the token).
 * @param {string} token
 * @returns {Record<string, any>}
 */
export function claimsOf(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/**
 * The page's configuration: `file` next to the page, else `devFile` (served by the dev gateway only). The id the
 * page acts for is `config[field]`, else the token's `claim`.
 * @param {{ file: string, devFile: string, field: string, claim: string, noId: string }} where
 * @returns {Promise<Config>}
 */
export async function loadConfig({ file, devFile, field, claim, noId }) {
  const config = (await fetchJson(new URL(file, document.baseURI))) ?? (await fetchJson(devFile));
  if (!config || typeof config !== 'object') throw new Error(`${file} is missing or is not valid JSON.`);
  // A deployment supplies tokens through a module exporting getToken(); a static token is for local use only.
  /** @type {() => Promise<string | null>} */
  let getToken = async () => config.token ?? null;
  if (typeof config.authModule === 'string' && config.authModule) {
    const auth = await import(new URL(config.authModule, document.baseURI).href);
    if (typeof auth.getToken !== 'function') throw new Error(`${config.authModule} does not export getToken().`);
    getToken = async () => auth.getToken();
  }
  let id = typeof config[field] === 'string' && config[field] ? config[field] : null;
  if (!id) {
    const token = await getToken();
    id = token ? claimsOf(token)[claim] ?? null : null;
  }
  if (!id) throw new Error(noId);
  const apiBaseUrl = String(config.apiBaseUrl ?? '').replace(/\/+$/, '');
  return { apiBaseUrl, id, getToken, dev: config.dev === true };
}

/**
 * One API call with the signed-in user's token. Resolves with the answer for any HTTP status; rejects only on
 * network failure.
 * @param {string} url
 * @param {string | null} token
 * @param {{ method?: string, body?: string, headers?: Record<string, string> }} [options]
 * @returns {Promise<Answer>}
 */
export async function callApiAt(url, token, { method = 'GET', body, headers = {} } = {}) {
  const response = await fetch(url, {
    method,
    cache: 'no-store',
    headers: {
      accept: 'application/json, application/problem+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body,
  });
  const text = await response.text();
  let json = null;
  if (/json/i.test(response.headers.get('content-type') ?? '')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  return { status: response.status, headers: response.headers, body: json };
}

/** Automatic retries of one click after a network failure or a 503, always with the same Idempotency-Key. */
export const RETRY_DELAYS_MS = [400, 1200];
/** The longest Retry-After honoured: a person is waiting for the click's answer. */
const MAX_RETRY_AFTER_MS = 3000;
/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends one write until it has an answer other than a 503, at most `delays.length` more times. `send` must reuse
 * the same Idempotency-Key on every call: the server then answers a repeated write with its first outcome instead
 * of doing it twice. A 503's `Retry-After` (seconds) replaces the planned delay, up to 3 s. Null: no answer at all.
 * @param {() => Promise<Answer>} send
 * @param {{ delays?: number[], wait?: (ms: number) => Promise<unknown> }} [options]
 * @returns {Promise<Answer | null>}
 */
export async function sendWithRetry(send, { delays = RETRY_DELAYS_MS, wait = sleep } = {}) {
  for (let attempt = 0; ; attempt++) {
    /** @type {Answer | null} */
    let answer = null;
    try {
      answer = await send();
    } catch {
      answer = null;
    }
    const retryable = answer === null || answer.status === 503;
    if (!retryable || attempt >= delays.length) return answer;
    const retryAfter = Number(answer?.headers.get('retry-after'));
    await wait(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS) : delays[attempt]);
  }
}

/**
 * The sentence for people from a non-success answer that means the same on every page, reading `detail` from
 * problem+json. The pages say their own 403 and 404 first (who may do what differs between them).
 * @param {Answer} answer
 * @param {string} doing what the page was doing, e.g. "loading prices"
 */
export function explainAnswer(answer, doing) {
  const detail = answer.body && typeof answer.body.detail === 'string' ? answer.body.detail : null;
  switch (answer.status) {
    case 0:
      return `The service could not be reached while ${doing}. Check your connection and try again.`;
    case 401:
      return 'You are not signed in, or your session has expired. Please sign in again and reload this page.';
    case 502:
    case 503:
    case 504:
      return `The service is temporarily unavailable while ${doing}. Please try again in a moment.`;
    default:
      if (answer.status >= 500) return `Something went wrong on our side while ${doing}. Please try again.`;
      return detail ?? `The request was refused (HTTP ${answer.status}) while ${doing}.`;
  }
}
