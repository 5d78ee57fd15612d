// @ts-check
// How a statement was (or will be) settled, in words for the client panel and the agency console: pure functions of
// the statement the API shows (status, dueAt, paidAt, collection), so node:test checks every wording.

/** @typedef {import('../types/openapi').components['schemas']['Statement']} Statement */
/**
 * Stripe collection of a statement (the settlement contract): null when never attempted.
 * @typedef {{ attempt: number, state: 'in_flight' | 'succeeded' | 'failed' | 'exhausted', reason: string | null,
 *   lastAttemptAt: string, nextAttemptAt: string | null }} Collection
 */
/**
 * What the texts read of a statement (a client's, an agency's, or a client row's `lastStatement`).
 * @typedef {Pick<Statement, 'status'> & Partial<Pick<Statement, 'dueAt'>> &
 *   { paidAt?: string | null, collection?: Collection | null }} Settleable
 */
/** @typedef {'ok' | 'pending' | 'warning' | 'error'} Tone */

/** The statement's status for people (a badge). */
export const STATEMENT_STATUS = Object.freeze({
  building: 'Being billed',
  pending_payment: 'Awaiting payment',
  paid: 'Paid',
  payment_failed: 'Payment failed',
  overdue: 'Overdue',
});

/** @param {unknown} status */
export const statusLabel = (status) => STATEMENT_STATUS[/** @type {keyof typeof STATEMENT_STATUS} */ (status)] ?? String(status ?? '—');

/**
 * "Dec 4, 2026": the UTC date of an RFC 3339 time (UTC, as stored: the same day on every screen), or null.
 * @param {unknown} text
 */
export function dayOf(text) {
  const at = typeof text === 'string' ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) return null;
  return new Date(at).toLocaleDateString('en-US', { dateStyle: 'medium', timeZone: 'UTC' });
}

/**
 * The day a statement is due: dueAt is the end of that day anywhere on Earth (12:00 UTC the next day), so the day
 * is the UTC date 12 hours before it (docs/billing-and-payments.md, "Due dates").
 * @param {unknown} dueAt
 */
export function dueDayOf(dueAt) {
  const at = typeof dueAt === 'string' ? Date.parse(dueAt) : NaN;
  if (Number.isNaN(at)) return null;
  return dayOf(new Date(at - 12 * 3600 * 1000 - 1).toISOString());
}

/** Decline codes Stripe stores as the reason, in the client's words (anything else: "it was refused"). */
const REASONS = Object.freeze({
  card_declined: 'your card was declined',
  insufficient_funds: 'your card was declined for insufficient funds',
  expired_card: 'your card has expired',
  incorrect_cvc: 'your card’s security code was refused',
  processing_error: 'your card could not be charged',
});

/** The bank wants the customer present (3-D Secure): an automatic charge can never succeed on its own. */
const NEEDS_CUSTOMER = new Set(['authentication_required', 'requires_action']);

/**
 * The settlement text of a statement and its tone, or null when there is nothing to say beyond its status (a
 * statement still being billed).
 * @param {Settleable} statement
 * @returns {{ text: string, tone: Tone } | null}
 */
export function settlement(statement) {
  const { status, collection } = statement;
  const paidOn = dayOf(statement.paidAt);
  if (status === 'paid') {
    if (collection?.state === 'succeeded' && paidOn) return { text: `Charged to your card on ${paidOn}`, tone: 'ok' };
    return { text: paidOn ? `Paid on ${paidOn}` : 'Paid: nothing is due', tone: 'ok' };
  }
  if (status === 'building') return null;
  if (collection?.state === 'in_flight') return { text: 'Charging your card…', tone: 'pending' };
  if (collection && (collection.state === 'failed' || collection.state === 'exhausted')) return failure(collection);
  const due = dueDayOf(statement.dueAt);
  if (status === 'overdue') return { text: `Overdue since ${due ?? 'its due date'}: pay now to lift the hold`, tone: 'error' };
  if (status === 'payment_failed') return { text: 'Payment failed: pay now to lift the hold', tone: 'error' };
  return { text: due ? `Due ${due}` : 'Awaiting payment', tone: 'pending' };
}

/**
 * @param {Collection} collection a failed or exhausted attempt
 * @returns {{ text: string, tone: Tone }}
 */
function failure(collection) {
  const retryOn = collection.state === 'failed' ? dayOf(collection.nextAttemptAt) : null;
  if (collection.reason && NEEDS_CUSTOMER.has(collection.reason)) {
    // Retrying cannot help: the bank asks the cardholder to approve the charge, which only a payment they make can.
    return {
      text:
        'Payment failed: your bank needs you to approve this charge, which an automatic charge cannot do. ' +
        'To pay it, contact your agency: you will confirm the payment with your bank yourself',
      tone: 'error',
    };
  }
  const why = (collection.reason && REASONS[/** @type {keyof typeof REASONS} */ (collection.reason)]) ?? 'your card was refused';
  return retryOn
    ? { text: `Payment failed: ${why}; we retry on ${retryOn}`, tone: 'error' }
    : { text: `Payment failed: ${why}; no retry is scheduled: pay now to lift the hold`, tone: 'error' };
}
