// @ts-check
// Exact money arithmetic for the panel, on BigInt scaled integers (never floating point).
//
// The server's rule (shared/src/domain.rs): a line's subtotal is quantity × unit price rounded to cents,
// half away from zero; the total is the sum of the rounded subtotals. Prices have at most 4 decimals.

/** Decimal places a per-credit price may have. */
export const RATE_SCALE = 4;
/** Largest quantity of one credit type per purchase (the server's MAX_QUANTITY). */
export const MAX_QUANTITY = 1_000_000n;

const RATE_FACTOR = 10n ** BigInt(RATE_SCALE);
const RATE_TO_CENTS = RATE_FACTOR / 100n;

/**
 * Parses a per-credit price as the API sends it ("25.00", "0.0150") into ten-thousandths of a dollar.
 * Returns null for anything that is not a plain non-negative decimal with at most 4 places.
 */
export function parseRate(text) {
  if (typeof text !== 'string') return null;
  const m = /^(\d{1,15})(?:\.(\d{1,4}))?$/.exec(text);
  if (!m) return null;
  return BigInt(m[1]) * RATE_FACTOR + BigInt((m[2] ?? '').padEnd(RATE_SCALE, '0'));
}

/**
 * Parses what the user typed in a quantity box. Empty means 0.
 * Returns { value: BigInt } or { error: string } (for people).
 */
export function parseQuantity(text) {
  const trimmed = String(text ?? '').trim();
  if (trimmed === '') return { value: 0n };
  if (!/^\d+$/.test(trimmed)) return { error: 'Enter a whole number of credits (0 to 1,000,000).' };
  const value = BigInt(trimmed);
  if (value > MAX_QUANTITY) return { error: 'At most 1,000,000 credits of one type per purchase.' };
  return { value };
}

/** Divides a non-negative or negative integer by `divisor`, rounding half away from zero. */
function divideRoundHalfAwayFromZero(amount, divisor) {
  const negative = amount < 0n;
  const magnitude = negative ? -amount : amount;
  const rounded = (magnitude * 2n + divisor) / (divisor * 2n);
  return negative ? -rounded : rounded;
}

/** quantity × rate (in ten-thousandths), rounded to whole cents half away from zero. */
export function subtotalCents(quantity, rateUnits) {
  return divideRoundHalfAwayFromZero(BigInt(quantity) * BigInt(rateUnits), RATE_TO_CENTS);
}

/**
 * Quotes a purchase exactly as the server does.
 * @param {Array<{creditType: string, quantity: bigint, rateUnits: bigint}>} lines
 * @returns {{lines: Array<{creditType: string, cents: bigint}>, totalCents: bigint}}
 */
export function quote(lines) {
  const priced = lines.map((l) => ({ creditType: l.creditType, cents: subtotalCents(l.quantity, l.rateUnits) }));
  return { lines: priced, totalCents: priced.reduce((sum, l) => sum + l.cents, 0n) };
}

/** Cents as the API's plain decimal string: 30025n → "300.25" (what `expectedTotal` carries). */
export function centsToDecimal(cents) {
  const negative = cents < 0n;
  const digits = (negative ? -cents : cents).toString().padStart(3, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -2)}.${digits.slice(-2)}`;
}

const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** Cents for people: 123450n → "$1,234.50". */
export function formatCents(cents) {
  const plain = centsToDecimal(cents);
  const negative = plain.startsWith('-');
  const [whole, fraction] = (negative ? plain.slice(1) : plain).split('.');
  return `${negative ? '−' : ''}$${group(whole)}.${fraction}`;
}

/** A per-credit price string from the API for people, keeping its precision: "0.0150" → "$0.0150". */
export function formatRate(text) {
  const [whole, fraction] = text.split('.');
  return `$${group(whole)}${fraction !== undefined ? `.${fraction}` : ''}`;
}

/** The API's money string ("300.25", at most 2 places) as cents; null when it is not one. */
export function decimalToCents(text) {
  if (typeof text !== 'string') return null;
  const m = /^(\d{1,15})(?:\.(\d{1,2}))?$/.exec(text);
  if (!m) return null;
  return BigInt(m[1]) * 100n + BigInt((m[2] ?? '').padEnd(2, '0'));
}

/**
 * A price entry's `minimumQuantity` (the smallest quantity whose subtotal is at least one cent) as BigInt.
 * Missing means 1 (servers from before the field); anything but a whole number ≥ 1 is null (not usable).
 */
export function parseMinimumQuantity(value) {
  if (value === undefined) return 1n;
  if (!Number.isSafeInteger(value) || value < 1) return null;
  return BigInt(value);
}

/**
 * The server's rule for one line: 0 (not bought) or at least the type's minimum. Returns the sentence for
 * people when `quantity` is refused, else null.
 */
export function minimumQuantityError(quantity, minimum, label = 'these') {
  if (quantity === 0n || quantity >= minimum) return null;
  const min = Number(minimum).toLocaleString('en-US');
  return `Buy at least ${min} ${label} credits (fewer would cost less than a cent), or leave it at 0.`;
}

/**
 * The balances route's `creditLine` (`{"limit", "outstanding", "available"}`, money strings) as cents:
 * `{ limitCents, outstandingCents, availableCents }`. `null` (the account has no pay-later line) stays `null`;
 * anything else that is not such an object, a field missing or a malformed amount gives `undefined` (not known:
 * the server still checks every purchase against the line).
 */
export function parseCreditLine(value) {
  if (value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) return undefined;
  const limitCents = decimalToCents(value.limit);
  const outstandingCents = decimalToCents(value.outstanding);
  const availableCents = decimalToCents(value.available);
  if (limitCents === null || outstandingCents === null || availableCents === null) return undefined;
  return { limitCents, outstandingCents, availableCents };
}

/**
 * Why a purchase totalling `totalCents` cannot be confirmed, or null when nothing in the account's standing
 * stops it. `line` is what parseCreditLine gave (`undefined`: not known, so nothing is blocked here), `hold`
 * the statement id holding the account, or null. A hold comes first: it stops every purchase.
 * @param {{ line: { availableCents: bigint } | null | undefined, hold: string | null }} standing
 * @param {bigint} totalCents
 * @returns {null | {reason: 'hold', statementId: string} | {reason: 'no_line'} |
 *   {reason: 'over_limit', availableCents: bigint, totalCents: bigint, excessCents: bigint}}
 */
export function purchaseBlock({ line, hold }, totalCents) {
  if (typeof hold === 'string' && hold !== '') return { reason: 'hold', statementId: hold };
  if (line === null) return { reason: 'no_line' };
  if (line && totalCents > line.availableCents) {
    return { reason: 'over_limit', availableCents: line.availableCents, totalCents, excessCents: totalCents - line.availableCents };
  }
  return null;
}

/**
 * The line after a purchase of `totalCents` went through (what the server did in the purchase's transaction):
 * available goes down and outstanding up by the total, exactly. Used until the balances route is read again.
 */
export function lineAfterPurchase(line, totalCents) {
  if (!line) return line;
  const availableCents = line.availableCents - totalCents;
  return {
    limitCents: line.limitCents,
    outstandingCents: line.outstandingCents + totalCents,
    availableCents: availableCents < 0n ? 0n : availableCents,
  };
}

/**
 * Any decimal string from the API ("25.00", "0.4150", "-1.5", "20000") for people, exactly as sent (no
 * rounding), with at least 2 places: "-1.5" → "−$1.50", "20000" → "$20,000.00". Null when it is not a plain
 * decimal (the caller shows a dash instead of a made-up figure).
 */
export function formatMoney(text) {
  if (typeof text !== 'string') return null;
  const m = /^(-)?(\d{1,20})(?:\.(\d{1,10}))?$/.exec(text);
  if (!m) return null;
  const fraction = (m[3] ?? '').padEnd(2, '0');
  const negative = m[1] && /[1-9]/.test(m[2] + fraction);
  return `${negative ? '−' : ''}$${group(m[2].replace(/^0+(?=\d)/, ''))}.${fraction}`;
}
