// Reading the page's configuration and calling the API, shared by the client panel (app.js) and the agency
// console (agency.js).

/** A JSON document, or null when it is missing, unreadable or not JSON (the caller falls back or explains). */
export async function fetchJson(url) {
  try {
    const response = await fetch(url, { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

/** The claims of a JWT, unverified (for display and defaults only: the API verifies the token). */
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
 * One API call with the signed-in user's token. Resolves with { status, headers, body } for any HTTP answer
 * (`body`: the parsed JSON or problem+json, else null); rejects only on network failure.
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
