//! A purchase: the request a client sends, validated ([`request`]); its quote at the agency's prices; the record it
//! becomes.

use std::time::SystemTime;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::pricing::{EffectivePricing, EffectiveRate, round_to_cents};
use super::{CURRENCY, CreditType, time};

pub mod request;

pub use request::{MAX_QUANTITY, PurchaseRequest, Quantities, RequestError, parse_money, parse_purchase_request};

/// One line of a purchase, with its unit rates frozen at the time of purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseLine {
    pub credit_type: CreditType,
    pub quantity: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_cost: Decimal,
    /// quantity × unit price, rounded to cents.
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    /// quantity × unit cost, rounded to cents.
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal_at_cost: Decimal,
}

/// The priced lines of a purchase and their totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub lines: Vec<PurchaseLine>,
    /// Sum of the rounded line subtotals, so the total always equals the lines shown.
    pub total: Decimal,
    pub total_at_cost: Decimal,
}

/// Prices the request's lines. Every line must come to at least a cent at price and at cost: a line that
/// rounded to 0.00 would give credits away (and, on the cost side, cost the agency nothing).
pub fn quote(pricing: &EffectivePricing, quantities: &Quantities) -> Result<Quote, RequestError> {
    let mut lines = Vec::new();
    for (credit_type, quantity) in quantities.non_zero() {
        let rate = pricing.rate(credit_type);
        let minimum_quantity = minimum_quantity(rate);
        if minimum_quantity.is_none_or(|minimum| quantity < minimum) {
            return Err(RequestError::LineBelowMinimum { credit_type, minimum_quantity });
        }
        let q = Decimal::from(quantity);
        lines.push(PurchaseLine {
            credit_type,
            quantity,
            unit_price: rate.price,
            unit_cost: rate.cost,
            subtotal: round_to_cents(q * rate.price),
            subtotal_at_cost: round_to_cents(q * rate.cost),
        });
    }
    let total = round_to_cents(lines.iter().map(|l| l.subtotal).sum());
    let total_at_cost = round_to_cents(lines.iter().map(|l| l.subtotal_at_cost).sum());
    Ok(Quote { lines, total, total_at_cost })
}

/// The smallest quantity of a type whose line comes to at least 0.01 at price and (if the type costs anything)
/// at cost; `None` if no quantity does (a zero price). The cost side can raise the minimum above what the price
/// alone needs, which tells a client no more than that the cost is small.
pub fn minimum_quantity(rate: &EffectiveRate) -> Option<u64> {
    let price_minimum = smallest_quantity_worth_a_cent(rate.price)?;
    let cost_minimum = smallest_quantity_worth_a_cent(rate.cost).unwrap_or(1);
    Some(price_minimum.max(cost_minimum)).filter(|minimum| *minimum <= MAX_QUANTITY)
}

/// The smallest q ≥ 1 with round_to_cents(q × rate) ≥ 0.01, i.e. q × rate ≥ 0.005; `None` for a zero rate.
fn smallest_quantity_worth_a_cent(rate: Decimal) -> Option<u64> {
    if rate <= Decimal::ZERO {
        return None;
    }
    let cent = Decimal::new(1, 2);
    let worth_a_cent = |q: u64| round_to_cents(Decimal::from(q) * rate) >= cent;
    let estimate = (Decimal::new(5, 3) / rate).ceil();
    let mut q = u64::try_from(estimate).unwrap_or(u64::MAX).clamp(1, MAX_QUANTITY + 1);
    // The division is exact for rates of at most four places; these steps only guard its last digit.
    while q > 1 && worth_a_cent(q - 1) {
        q -= 1;
    }
    while !worth_a_cent(q) && q <= MAX_QUANTITY {
        q += 1;
    }
    Some(q)
}

/// A purchase as recorded: its lines at the rates of the moment, and whether each side has been billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseRecord {
    pub purchase_id: String,
    pub account_id: String,
    pub agency_id: String,
    /// [`time::timestamp`]: sorts as text in time order.
    pub created_at: String,
    pub currency: String,
    pub lines: Vec<PurchaseLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_at_cost: Decimal,
    pub billed_to_client: bool,
    pub billed_to_agency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_statement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_statement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Set when the agency voided the purchase (before either side was billed): it is then never billed and
    /// its credits were taken back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<String>,
    /// The agency administrator (the token's `sub`) who voided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_by: Option<String>,
    /// What made it: the client's request, or an auto top-up inside a consumption. Stored only when not the
    /// client's, so every record written before the field reads as the client's.
    #[serde(default, skip_serializing_if = "PurchaseTrigger::is_client")]
    pub trigger: PurchaseTrigger,
    /// Counted in its agency's day sums (the overview's chart) when recorded: every purchase since they exist. A
    /// void takes a purchase back out of them only if so, so one recorded before never drives a day negative.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_day_sums: bool,
}

/// What started a purchase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseTrigger {
    #[default]
    Client,
    AutoTopup,
}

impl PurchaseTrigger {
    pub fn is_client(&self) -> bool {
        *self == PurchaseTrigger::Client
    }
}

impl PurchaseRecord {
    /// The credits the purchase put in, per type (what a void takes back out).
    pub fn credits_per_type(&self) -> crate::domain::ledger::Quantities {
        let mut credits = crate::domain::ledger::Quantities::new();
        for line in &self.lines {
            *credits.entry(line.credit_type).or_default() += line.quantity;
        }
        credits
    }

    /// A new, unbilled purchase priced by `quote`, created at `created_at`.
    pub fn unbilled(
        purchase_id: String,
        account_id: &str,
        agency_id: &str,
        created_at: SystemTime,
        quote: Quote,
        idempotency_key: Option<String>,
    ) -> PurchaseRecord {
        PurchaseRecord {
            purchase_id,
            account_id: account_id.to_owned(),
            agency_id: agency_id.to_owned(),
            created_at: time::timestamp(created_at),
            currency: CURRENCY.to_owned(),
            lines: quote.lines,
            total: quote.total,
            total_at_cost: quote.total_at_cost,
            billed_to_client: false,
            billed_to_agency: false,
            client_statement_id: None,
            agency_statement_id: None,
            idempotency_key,
            voided_at: None,
            voided_by: None,
            trigger: PurchaseTrigger::Client,
            in_day_sums: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::tests::{d, default_pricing};
    use crate::domain::pricing::{Rate, resolve_pricing};

    #[test]
    fn total_is_sum_of_rounded_lines_not_rounded_sum() {
        // 1 × 0.0050 = 0.005 → 0.01 per line; rounding the unrounded sum (0.010) would give the same,
        // so use three lines of 0.005 where sum-then-round gives 0.02 but lines give 0.03.
        let mut default = default_pricing();
        for t in [CreditType::Audience, CreditType::Enrichment, CreditType::Pixel] {
            default.rates.insert(t, Rate { price: d("0.0050"), cost: d("0.0050") });
        }
        let p = resolve_pricing("a", &default, None).unwrap();
        let q =
            Quantities::from_pairs([(CreditType::Audience, 1), (CreditType::Enrichment, 1), (CreditType::Pixel, 1)]);
        let quote = quote(&p, &q).unwrap();
        assert_eq!(quote.lines.len(), 3);
        assert!(quote.lines.iter().all(|l| l.subtotal == d("0.01")));
        assert_eq!(quote.total.to_string(), "0.03");
        assert_eq!(quote.total, quote.lines.iter().map(|l| l.subtotal).sum::<Decimal>());
    }

    #[test]
    fn quote_skips_zero_lines_and_keeps_dashboard_order() {
        let p = resolve_pricing("a", &default_pricing(), None).unwrap();
        let q =
            Quantities::from_pairs([(CreditType::Pixel, 5), (CreditType::Audience, 10), (CreditType::Enrichment, 0)]);
        let quote = quote(&p, &q).unwrap();
        let types: Vec<_> = quote.lines.iter().map(|l| l.credit_type).collect();
        assert_eq!(types, vec![CreditType::Audience, CreditType::Pixel]);
        assert_eq!(quote.total.to_string(), "0.75");
        assert_eq!(quote.total_at_cost.to_string(), "0.45");
    }

    #[test]
    fn max_quantity_at_max_price_is_exact() {
        let mut default = default_pricing();
        default.rates.insert(CreditType::Audience, Rate { price: d("9999.9999"), cost: d("0") });
        let p = resolve_pricing("a", &default, None).unwrap();
        let quote = quote(&p, &Quantities::from_pairs([(CreditType::Audience, MAX_QUANTITY)])).unwrap();
        assert_eq!(quote.total.to_string(), "9999999900.00");
    }

    #[test]
    fn a_line_worth_less_than_a_cent_is_refused_with_the_smallest_allowed_quantity() {
        let rate = |price: &str, cost: &str| EffectiveRate {
            credit_type: CreditType::Enrichment,
            price: d(price),
            cost: d(cost),
            price_source: crate::domain::PriceSource::Default,
        };
        // Price alone: 0.005 rounds up to a cent, 0.0049 does not.
        assert_eq!(minimum_quantity(&rate("0.0050", "0")), Some(1));
        assert_eq!(minimum_quantity(&rate("0.0049", "0")), Some(2));
        assert_eq!(minimum_quantity(&rate("0.0003", "0")), Some(17)); // 17 × 0.0003 = 0.0051
        assert_eq!(minimum_quantity(&rate("0.0025", "0")), Some(2)); // exactly 0.005
        assert_eq!(minimum_quantity(&rate("0.0001", "0")), Some(50));
        assert_eq!(minimum_quantity(&rate("25.00", "16.00")), Some(1));
        // The cost side counts too: 1 × 0.0045 at cost would be 0.00.
        assert_eq!(minimum_quantity(&rate("0.0150", "0.0045")), Some(2));
        assert_eq!(minimum_quantity(&rate("0", "0")), None);
        for (price, cost) in [("0.0049", "0"), ("0.0003", "0.0001"), ("0.0150", "0.0045"), ("0.0001", "0.0001")] {
            let rate = rate(price, cost);
            let minimum = minimum_quantity(&rate).unwrap();
            let cents = |q: u64, r: Decimal| round_to_cents(Decimal::from(q) * r);
            assert!(cents(minimum, rate.price) >= d("0.01"), "{price}");
            assert!(rate.cost.is_zero() || cents(minimum, rate.cost) >= d("0.01"), "{cost}");
            assert!(cents(minimum - 1, rate.price) < d("0.01") || cents(minimum - 1, rate.cost) < d("0.01"));
        }

        let mut default = default_pricing();
        default.rates.insert(CreditType::Enrichment, Rate { price: d("0.0040"), cost: d("0.0010") });
        let p = resolve_pricing("a", &default, None).unwrap();
        let below = quote(&p, &Quantities::from_pairs([(CreditType::Enrichment, 4)])).unwrap_err();
        assert_eq!(
            below,
            RequestError::LineBelowMinimum { credit_type: CreditType::Enrichment, minimum_quantity: Some(5) }
        );
        assert_eq!(below.code(), "line_below_minimum");
        let ok = quote(&p, &Quantities::from_pairs([(CreditType::Enrichment, 5)])).unwrap();
        assert_eq!(ok.total, d("0.02"));
        assert_eq!(ok.total_at_cost, d("0.01"));
    }
}
