// Reading the page's configuration, shared by the client panel (app.js) and the agency console (agency.js).

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
