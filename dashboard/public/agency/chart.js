// @ts-check
// The overview chart's pure part: the API's money strings as exact cents, the day series' scale (a "nice" axis),
// where each bar and margin point goes, and the sentences that summarise the chart for people who do not see it.
// No DOM here: node:test checks it (tests/chart.test.mjs); agency/overview.js draws what it computes.

/** @typedef {import('../../types/openapi').components['schemas']['AgencyDay']} Day */
/** @typedef {import('../../types/openapi').components['schemas']['AgencyDayTotals']} DayTotals */

/**
 * A signed money string from the API ("-1.50", "300.00", at most 2 places) as BigInt cents; null when not one.
 * @param {unknown} text
 * @returns {bigint | null}
 */
export function signedCents(text) {
  if (typeof text !== 'string') return null;
  const m = /^(-)?(\d{1,15})(?:\.(\d{1,2}))?$/.exec(text);
  if (!m) return null;
  const cents = BigInt(m[2]) * 100n + BigInt((m[3] ?? '').padEnd(2, '0'));
  return m[1] ? -cents : cents;
}

/**
 * The smallest "nice" amount (1, 2, 2.5 or 5 × 10^n cents) at or above `cents`, so the axis reads in round figures.
 * @param {number} cents at least 0
 */
export function niceCeiling(cents) {
  if (!(cents > 0)) return 0;
  const magnitude = 10 ** Math.floor(Math.log10(cents));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= cents) return step * magnitude;
  }
  return 10 * magnitude;
}

/** "$1,234" / "$12.50" / "−$5": an axis label (whole dollars when the step allows). @param {number} cents */
export function axisLabel(cents) {
  const negative = cents < 0;
  const abs = Math.abs(cents);
  const text = abs % 100 === 0 ? (abs / 100).toLocaleString('en-US') : (abs / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return `${negative ? '−' : ''}$${text}`;
}

/** "2026-12-03" → "Dec 3" (UTC, as the API's day). @param {string} date */
export function dayLabel(date) {
  const at = Date.parse(`${date}T00:00:00Z`);
  if (Number.isNaN(at)) return date;
  return new Date(at).toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

/** "Dec 3, 2026". @param {string} date */
export function longDayLabel(date) {
  const at = Date.parse(`${date}T00:00:00Z`);
  if (Number.isNaN(at)) return date;
  return new Date(at).toLocaleDateString('en-US', { dateStyle: 'medium', timeZone: 'UTC' });
}

/** "$1,234.50" from cents, exactly (BigInt). @param {bigint} cents */
export function formatCentsExact(cents) {
  const negative = cents < 0n;
  const digits = (negative ? -cents : cents).toString().padStart(3, '0');
  const whole = digits.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '−' : ''}$${whole}.${digits.slice(-2)}`;
}

/** @typedef {{ width: number, height: number, left: number, right: number, top: number, bottom: number }} Box */

/**
 * The chart's drawing box (SVG user units; the SVG scales to its container through its viewBox). The page draws it
 * as wide as its container (320 to 640), so one unit is one CSS pixel and its 12-unit text stays 12 px.
 * @type {Readonly<Box>}
 */
export const BOX = Object.freeze({ width: 640, height: 260, left: 64, right: 12, top: 14, bottom: 36 });

/**
 * Where everything goes: the y axis (its range and ticks), one bar per day (purchases at price) and one margin
 * point per day, and which days get an x label (all when few, else every few so they never overlap at 375 px).
 * @param {Day[]} days
 * @param {Box} [box]
 */
export function chartLayout(days, box = BOX) {
  const rows = days.map((day) => ({
    date: day.date,
    totalCents: signedCents(day.total) ?? 0n,
    marginCents: signedCents(day.margin) ?? 0n,
    purchases: day.purchases,
  }));
  const values = rows.flatMap((r) => [Number(r.totalCents), Number(r.marginCents)]);
  const top = niceCeiling(Math.max(0, ...values));
  const bottom = 0 - niceCeiling(Math.max(0, ...values.map((v) => -v))); // 0 - 0 is +0, never -0
  const span = top - bottom || 100; // nothing bought yet: a $0 to $1 axis
  const max = top - bottom ? top : 100;
  const plotWidth = box.width - box.left - box.right;
  const plotHeight = box.height - box.top - box.bottom;
  const y = (cents) => box.top + ((max - cents) / span) * plotHeight;
  const slot = rows.length ? plotWidth / rows.length : plotWidth;
  const barWidth = Math.max(2, slot * 0.6);
  const labelEvery = rows.length <= 10 ? 1 : rows.length <= 16 ? 2 : 5;
  const ticks = [0, 1, 2, 3, 4].map((i) => bottom + ((max - bottom) * i) / 4).map((cents) => ({ cents, y: y(cents), label: axisLabel(cents) }));
  const zeroY = y(0);
  const bars = rows.map((r, i) => {
    const cx = box.left + slot * i + slot / 2;
    const valueY = y(Number(r.totalCents));
    return {
      ...r,
      x: cx - barWidth / 2,
      width: barWidth,
      y: Math.min(valueY, zeroY),
      height: Math.abs(zeroY - valueY),
      cx,
      marginY: y(Number(r.marginCents)),
      // Day 1, then every `labelEvery`-th day of the month (1, 5, 10, ... or 1, 3, 5, ...).
      labelled: i === 0 || Number(r.date.slice(8)) % labelEvery === 0,
      label: String(Number(r.date.slice(8))),
    };
  });
  return { box, ticks, bars, zeroY, max, min: bottom };
}

/**
 * The chart in words: its `<title>` and `<desc>`, the same facts a sighted reader takes from it.
 * @param {{ start: string, days: Day[], totals: DayTotals }} cycle
 */
export function chartSummary(cycle) {
  const days = cycle.days ?? [];
  const month = longDayLabel(cycle.start).replace(/ \d+,/, '');
  const title = `Purchases at price and margin per day, ${month}`;
  if (!days.length) return { title, desc: 'No day of this cycle has begun yet.' };
  const total = signedCents(cycle.totals?.total) ?? 0n;
  const margin = signedCents(cycle.totals?.margin) ?? 0n;
  const purchases = cycle.totals?.purchases ?? 0;
  const span = `${dayLabel(days[0].date)} to ${dayLabel(days[days.length - 1].date)}`;
  if (total === 0n && purchases === 0) return { title, desc: `No purchases from ${span}.` };
  let best = days[0];
  for (const day of days) if ((signedCents(day.total) ?? 0n) > (signedCents(best.total) ?? 0n)) best = day;
  const busy = days.filter((d) => d.purchases > 0).length;
  const desc =
    `From ${span}: ${purchases.toLocaleString('en-US')} purchase${purchases === 1 ? '' : 's'} on ${busy} day${busy === 1 ? '' : 's'}, ` +
    `${formatCentsExact(total)} at price with a margin of ${formatCentsExact(margin)}. ` +
    `Highest day: ${dayLabel(best.date)}, ${formatCentsExact(signedCents(best.total) ?? 0n)} at price ` +
    `(margin ${formatCentsExact(signedCents(best.margin) ?? 0n)}).`;
  return { title, desc };
}
