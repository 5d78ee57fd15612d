//! The agency's side of pricing and credit lines, as pure rules: what a price change may ask for, what it
//! changes, the margin of a rate, and the audit entries every change leaves.
//!
//! Nothing here reads or writes: the handler parses and checks a request with these functions before any read,
//! storage writes the resulting [`PricingChange`] and its [`PricingAuditEntry`] in one transaction.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::credit::check_credit_limit;
use super::{CreditType, DefaultPricing, EffectiveRate, RateOverride, canonical_rate, parse_rate};

/// Why an agency voided a purchase, when its administrator said: at most this many characters.
pub const MAX_VOID_REASON_CHARS: usize = 500;

/// A price change as asked for: per type, the new price, or `None` to fall back to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceChangeRequest {
    pub prices: BTreeMap<CreditType, Option<Decimal>>,
}

/// Why a price change request is refused before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceRequestError {
    /// The body's shape is wrong: an unknown field or credit type, a wrong JSON type, nothing to change.
    InvalidField { field: String, detail: String },
    /// A price that can never be sold: not a decimal string, negative, more than four places, above the cap.
    InvalidPrice { credit_type: CreditType, detail: String },
}

/// Reads `{"prices": {"audience": "26.00", "pixel": null}}`: only `prices`, 1 to 4 known types, each a rate
/// string (as the seed files write rates) or `null`.
pub fn parse_price_change(body: &serde_json::Value) -> Result<PriceChangeRequest, PriceRequestError> {
    let field =
        |field: &str, detail: &str| PriceRequestError::InvalidField { field: field.into(), detail: detail.into() };
    let object = body.as_object().ok_or_else(|| field("body", "must be a JSON object with `prices`"))?;
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "prices") {
        return Err(field(unknown, "is not a field of a price change; send only `prices`"));
    }
    let prices = object
        .get("prices")
        .ok_or_else(|| field("prices", "is required"))?
        .as_object()
        .ok_or_else(|| field("prices", "must be an object of credit type to price (or null for the default)"))?;
    if prices.is_empty() {
        return Err(field("prices", "must name at least one credit type"));
    }
    let mut parsed = BTreeMap::new();
    for (name, value) in prices {
        let path = format!("prices.{name}");
        let credit_type = CreditType::parse(name).ok_or_else(|| field(&path, "is not a credit type"))?;
        let price = match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(parse_price(credit_type, text)?),
            _ => return Err(field(&path, "must be a decimal string such as \"25.00\", or null for the default")),
        };
        parsed.insert(credit_type, price);
    }
    Ok(PriceChangeRequest { prices: parsed })
}

/// A price as text: the rules of every stored rate ([`parse_rate`]), refused with what is wrong with it.
fn parse_price(credit_type: CreditType, text: &str) -> Result<Decimal, PriceRequestError> {
    parse_rate("price", text).map(canonical_rate).map_err(|e| PriceRequestError::InvalidPrice {
        credit_type,
        // "price is negative: ..." → "is negative: ...", for "The price of audience is negative: ...".
        detail: e.0.strip_prefix("price ").unwrap_or(&e.0).to_owned(),
    })
}

/// One type's price before and after a change (`None`: the default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceChangeLine {
    pub credit_type: CreditType,
    #[serde(with = "rate_option_text")]
    pub old_price: Option<Decimal>,
    #[serde(with = "rate_option_text")]
    pub new_price: Option<Decimal>,
}

/// Rates in audit entries as canonical text, `null` for the default.
mod rate_option_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => serializer.serialize_str(&super::canonical_rate(*v).to_string()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => super::parse_rate("audited price", &text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// What a change does to the agency's overrides: the new overrides and the lines that really change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingChange {
    pub rates: BTreeMap<CreditType, RateOverride>,
    /// Empty when every price asked for is the one already set: nothing is written.
    pub lines: Vec<PriceChangeLine>,
}

/// Why a change that is well formed cannot be applied to the current prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BelowCost {
    pub credit_type: CreditType,
    pub price: Decimal,
    pub cost: Decimal,
}

/// Applies a request to the agency's current overrides. Costs are the platform's and stay as they are; a
/// type whose new effective price (its own, else the default) would be below its effective cost is refused.
/// Only the types that change are checked, so a type an agency sells below cost by arrangement (a seed's
/// `allowBelowCost`) does not block a change of another.
pub fn apply_price_change(
    default: &DefaultPricing,
    current: &BTreeMap<CreditType, RateOverride>,
    request: &PriceChangeRequest,
) -> Result<PricingChange, BelowCost> {
    let mut rates = current.clone();
    let mut lines = Vec::new();
    for (&credit_type, &new_price) in &request.prices {
        let old = current.get(&credit_type).copied().unwrap_or_default();
        if old.price == new_price {
            continue;
        }
        let base = default.rates.get(&credit_type);
        let price = new_price.or(base.map(|b| b.price));
        let cost = old.cost.or(base.map(|b| b.cost));
        if let (Some(price), Some(cost)) = (price, cost)
            && price < cost
        {
            return Err(BelowCost { credit_type, price: canonical_rate(price), cost: canonical_rate(cost) });
        }
        let next = RateOverride { price: new_price, cost: old.cost };
        if next == RateOverride::default() {
            rates.remove(&credit_type);
        } else {
            rates.insert(credit_type, next);
        }
        lines.push(PriceChangeLine { credit_type, old_price: old.price, new_price });
    }
    Ok(PricingChange { rates, lines })
}

/// One audited price change: who, when, the versions it moved between and each type's old and new price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingAuditEntry {
    pub agency_id: String,
    /// [`super::time::timestamp`]: entries sort by it.
    pub changed_at: String,
    /// The administrator's token `sub`.
    pub changed_by: String,
    pub version_before: u64,
    pub version_after: u64,
    pub changes: Vec<PriceChangeLine>,
}

/// One audited credit limit change of a client (limits at price, whole cents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditLimitAuditEntry {
    pub agency_id: String,
    pub account_id: String,
    pub changed_at: String,
    pub changed_by: String,
    /// `None`: the account had no line before.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub old_limit: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub new_limit: Decimal,
}

/// The agency's margin on one credit: price − cost (negative only for a type sold below cost by arrangement).
pub fn margin(rate: &EffectiveRate) -> Decimal {
    canonical_rate(rate.price - rate.cost)
}

/// The margin as a share of the price, in percent with two places; `None` when the price is zero.
pub fn margin_percent(rate: &EffectiveRate) -> Option<Decimal> {
    if rate.price.is_zero() {
        return None;
    }
    let mut percent = ((rate.price - rate.cost) * Decimal::ONE_HUNDRED / rate.price)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    percent.rescale(2);
    Some(percent)
}

/// Why a credit limit request is refused before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitRequestError {
    InvalidField {
        field: String,
        detail: String,
    },
    /// Not an amount, negative, more than two places, above the maximum.
    InvalidLimit(String),
}

/// Reads `{"creditLimit": "20000.00"}`: a money string of whole cents within [`check_credit_limit`]'s bounds.
pub fn parse_credit_limit(body: &serde_json::Value) -> Result<Decimal, LimitRequestError> {
    let field =
        |field: &str, detail: &str| LimitRequestError::InvalidField { field: field.into(), detail: detail.into() };
    let object = body.as_object().ok_or_else(|| field("body", "must be a JSON object with `creditLimit`"))?;
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "creditLimit") {
        return Err(field(unknown, "is not a field of a credit limit change; send only `creditLimit`"));
    }
    let text = object
        .get("creditLimit")
        .ok_or_else(|| field("creditLimit", "is required"))?
        .as_str()
        .ok_or_else(|| field("creditLimit", "must be a decimal string such as \"20000.00\""))?;
    // Plain digits with an optional fraction, as every amount we read: no sign, exponent or spaces.
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if text.starts_with('-') {
        return Err(LimitRequestError::InvalidLimit(format!("is negative: {text:?}")));
    }
    if whole.is_empty() || !digits(whole) || (text.contains('.') && fraction.is_empty()) || !digits(fraction) {
        return Err(LimitRequestError::InvalidLimit(format!("is not a decimal string such as \"20000.00\": {text:?}")));
    }
    let limit = Decimal::from_str_exact(text)
        .map_err(|_| LimitRequestError::InvalidLimit(format!("cannot be held exactly: {text:?}")))?;
    check_credit_limit("it", limit)
        .map_err(|why| LimitRequestError::InvalidLimit(format!("is out of range: {why}")))?;
    // Shown and stored with two places, as every amount at price ("20000.00").
    let mut limit = limit.normalize();
    limit.rescale(2);
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PriceSource;
    use crate::domain::pricing::tests::{d, default_pricing};
    use serde_json::json;

    fn request(body: serde_json::Value) -> Result<PriceChangeRequest, PriceRequestError> {
        parse_price_change(&body)
    }

    #[test]
    fn a_price_change_names_one_to_four_known_types_with_a_price_or_null() {
        let r = request(json!({"prices": {"audience": "26", "pixel": null}})).unwrap();
        assert_eq!(r.prices[&CreditType::Audience], Some(d("26.00")));
        assert_eq!(r.prices[&CreditType::Audience].unwrap().to_string(), "26.00");
        assert_eq!(r.prices[&CreditType::Pixel], None);
        for (body, field) in [
            (json!({"prices": {}}), "prices"),
            (json!({}), "prices"),
            (json!({"prices": {"audience": "1.00"}, "costs": {}}), "costs"),
            (json!({"prices": {"gold": "1.00"}}), "prices.gold"),
            (json!({"prices": {"audience": 1.5}}), "prices.audience"),
            (json!({"prices": ["audience"]}), "prices"),
            (json!([]), "body"),
        ] {
            match request(body.clone()) {
                Err(PriceRequestError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_price_that_can_never_be_sold_is_refused_with_why() {
        for (text, why) in [
            ("-1.00", "negative"),
            ("-0", "negative"),
            ("1.00001", "more than 4 decimal places"),
            ("1000000.01", "maximum"),
            ("abc", "not a decimal string"),
            ("1e3", "not a decimal string"),
        ] {
            match request(json!({"prices": {"pixel": text}})) {
                Err(PriceRequestError::InvalidPrice { credit_type: CreditType::Pixel, detail }) => {
                    assert!(detail.contains(why), "{text}: {detail}");
                    assert!(detail.starts_with("is ") || detail.starts_with("has "), "{detail}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    fn overrides(pairs: &[(CreditType, Option<&str>, Option<&str>)]) -> BTreeMap<CreditType, RateOverride> {
        pairs.iter().map(|(t, p, c)| (*t, RateOverride { price: p.map(d), cost: c.map(d) })).collect()
    }

    #[test]
    fn a_change_keeps_costs_lists_only_real_changes_and_clears_to_the_default() {
        // Defaults: 0.0500 / 0.0300 for every type.
        let current = overrides(&[
            (CreditType::Audience, Some("0.0600"), Some("0.0400")),
            (CreditType::Pixel, Some("0.0700"), None),
        ]);
        let r = request(json!({"prices": {"audience": "0.0600", "pixel": null, "enrichment": "0.08"}})).unwrap();
        let change = apply_price_change(&default_pricing(), &current, &r).unwrap();
        assert_eq!(
            change.rates,
            overrides(&[
                (CreditType::Audience, Some("0.0600"), Some("0.0400")),
                (CreditType::Enrichment, Some("0.08"), None),
            ])
        );
        assert_eq!(
            change.lines,
            vec![
                PriceChangeLine { credit_type: CreditType::Enrichment, old_price: None, new_price: Some(d("0.08")) },
                PriceChangeLine { credit_type: CreditType::Pixel, old_price: Some(d("0.07")), new_price: None },
            ]
        );
        // Clearing a type whose cost is overridden keeps the cost.
        let r = request(json!({"prices": {"audience": null}})).unwrap();
        let change = apply_price_change(&default_pricing(), &current, &r).unwrap();
        assert_eq!(change.rates[&CreditType::Audience], RateOverride { price: None, cost: Some(d("0.04")) });
        // Asking for what is already there changes nothing.
        let r = request(json!({"prices": {"audience": "0.06", "custom_model": null}})).unwrap();
        assert!(apply_price_change(&default_pricing(), &current, &r).unwrap().lines.is_empty());
    }

    #[test]
    fn the_effective_price_may_not_fall_below_the_effective_cost() {
        let current = overrides(&[(CreditType::Audience, Some("0.0600"), Some("0.0550"))]);
        let below = request(json!({"prices": {"audience": "0.0549"}})).unwrap();
        assert_eq!(
            apply_price_change(&default_pricing(), &current, &below),
            Err(BelowCost { credit_type: CreditType::Audience, price: d("0.0549"), cost: d("0.0550") })
        );
        // Clearing to the default (0.0500) would sell below the agency's own cost (0.0550).
        let clear = request(json!({"prices": {"audience": null}})).unwrap();
        assert!(apply_price_change(&default_pricing(), &current, &clear).is_err());
        // At cost is allowed; so is the default cost for a type without overrides.
        let at_cost = request(json!({"prices": {"audience": "0.055", "pixel": "0.03"}})).unwrap();
        assert!(apply_price_change(&default_pricing(), &current, &at_cost).is_ok());
        let below_default_cost = request(json!({"prices": {"pixel": "0.0299"}})).unwrap();
        assert!(apply_price_change(&default_pricing(), &current, &below_default_cost).is_err());
    }

    #[test]
    fn margins_are_exact_and_percent_is_rounded_to_two_places() {
        let rate = |price: &str, cost: &str| EffectiveRate {
            credit_type: CreditType::Enrichment,
            price: d(price),
            cost: d(cost),
            price_source: PriceSource::Agency,
        };
        assert_eq!(margin(&rate("0.4150", "0.40")).to_string(), "0.0150");
        assert_eq!(margin(&rate("25.00", "17.50")).to_string(), "7.50");
        assert_eq!(margin_percent(&rate("25.00", "17.50")).unwrap().to_string(), "30.00");
        assert_eq!(margin_percent(&rate("0.75", "0.40")).unwrap().to_string(), "46.67");
        assert_eq!(margin_percent(&rate("3.00", "2.00")).unwrap().to_string(), "33.33");
        assert_eq!(margin_percent(&rate("1.00", "1.00")).unwrap().to_string(), "0.00");
        assert_eq!(margin_percent(&rate("0.00", "0.00")), None);
        assert_eq!(margin(&rate("1.00", "1.50")).to_string(), "-0.50");
    }

    #[test]
    fn audit_entries_keep_prices_as_canonical_text() {
        let entry = PricingAuditEntry {
            agency_id: "a".into(),
            changed_at: "2026-11-26T00:00:00.000Z".into(),
            changed_by: "sub-1".into(),
            version_before: 3,
            version_after: 4,
            changes: vec![PriceChangeLine {
                credit_type: CreditType::CustomModel,
                old_price: Some(d("25")),
                new_price: None,
            }],
        };
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["changes"][0], json!({"creditType": "custom_model", "oldPrice": "25.00", "newPrice": null}));
        assert_eq!(serde_json::from_value::<PricingAuditEntry>(value).unwrap(), entry);
    }

    #[test]
    fn credit_limits_are_whole_cents_within_the_bounds() {
        let limit = |text: &str| parse_credit_limit(&json!({"creditLimit": text}));
        assert_eq!(limit("20000").unwrap().to_string(), "20000.00");
        assert_eq!(limit("20000.5").unwrap().to_string(), "20000.50");
        assert_eq!(limit("0").unwrap().to_string(), "0.00");
        for bad in ["-1", "-0", "1.001", "10000000000000.01", "abc", "1e3", "", " 1"] {
            assert!(matches!(limit(bad), Err(LimitRequestError::InvalidLimit(_))), "{bad}");
        }
        for body in [json!({}), json!({"creditLimit": 100}), json!({"creditLimit": "1", "x": 1}), json!("1")] {
            assert!(matches!(parse_credit_limit(&body), Err(LimitRequestError::InvalidField { .. })), "{body}");
        }
    }
}
