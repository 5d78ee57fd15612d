//! Prices and costs per credit: the platform's defaults, an agency's overrides, and what applies.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::CreditType;

/// Prices and costs are per credit and may be fractions of a cent, up to this many decimal places.
pub const MAX_RATE_SCALE: u32 = 4;

/// Rates are stored and served with at least this many decimal places ("25.00").
pub const MIN_RATE_SCALE: u32 = 2;

/// The highest price or cost per credit: 1,000,000.00. With [`super::MAX_QUANTITY`] credits of each of the four
/// types, the largest purchase is 4 × 10^6 × 10^6 = 4,000,000,000,000.00, far inside what `Decimal` holds exactly
/// (28 digits) and what a DynamoDB number holds (38 digits), so no total can overflow or be rounded.
pub const MAX_RATE: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2);

/// What a client pays per credit and what its agency owes the platform per credit.
///
/// In JSON and in the table each value is a decimal string read by [`parse_rate`] (so a stored `"-0"` or an
/// out-of-range value is a data error, not a price) and written in its [`canonical_rate`] form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    #[serde(with = "rate_text")]
    pub price: Decimal,
    #[serde(with = "rate_text")]
    pub cost: Decimal,
}

/// An agency's overrides: any of price or cost may be left to the platform default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateOverride {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate_text_option")]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rate_text_option")]
    pub cost: Option<Decimal>,
}

/// A rate as a decimal string: read with [`parse_rate`], written in [`canonical_rate`] form.
mod rate_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::canonical_rate(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_rate("rate", &text).map_err(serde::de::Error::custom)
    }
}

mod rate_text_option {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::rate_text::serialize(v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => super::parse_rate("rate", &text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The platform's default rates: complete for every credit type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPricing {
    /// Bumped on every change; a purchase checks it inside its transaction.
    pub version: u64,
    pub rates: BTreeMap<CreditType, Rate>,
}

/// One agency's overrides of the default rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyPricing {
    pub agency_id: String,
    pub version: u64,
    pub rates: BTreeMap<CreditType, RateOverride>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    Agency,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveRate {
    pub credit_type: CreditType,
    pub price: Decimal,
    pub cost: Decimal,
    pub price_source: PriceSource,
}

/// The rates that apply to one agency's clients, and the versions they were resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePricing {
    pub agency_id: String,
    pub default_version: u64,
    /// `None` when the agency has no pricing item: the purchase then checks that none appeared.
    pub agency_version: Option<u64>,
    pub rates: Vec<EffectiveRate>,
}

impl EffectivePricing {
    pub fn rate(&self, credit_type: CreditType) -> &EffectiveRate {
        self.rates.iter().find(|r| r.credit_type == credit_type).expect("resolve_pricing yields every credit type")
    }
}

/// A pricing document that cannot be used to sell: a data error, never a client mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PricingDataError(pub String);

/// Checks one rate value: not negative (`-0` included: a sign on a rate is always a data error), at most
/// four decimal places once trailing zeros are dropped, at most [`MAX_RATE`].
pub fn check_rate_value(what: &str, value: Decimal) -> Result<(), PricingDataError> {
    if value.is_sign_negative() {
        return Err(PricingDataError(format!("{what} is negative: {value}")));
    }
    if value.normalize().scale() > MAX_RATE_SCALE {
        return Err(PricingDataError(format!("{what} has more than {MAX_RATE_SCALE} decimal places: {value}")));
    }
    if value > MAX_RATE {
        return Err(PricingDataError(format!("{what} is above the maximum of {MAX_RATE} per credit: {value}")));
    }
    Ok(())
}

/// Reads a rate written as a decimal string: plain digits with an optional fraction ("0.0150", "25"), then
/// [`check_rate_value`]. A sign is refused here because `Decimal` has no negative zero: `"-0"` and `"-0.00"`
/// parse to plain zero, so only the text shows them. Exponents, `+`, `_`, spaces and more digits than a
/// `Decimal` holds exactly are refused too.
pub fn parse_rate(what: &str, text: &str) -> Result<Decimal, PricingDataError> {
    if text.starts_with('-') {
        return Err(PricingDataError(format!("{what} is negative: {text:?} (a rate carries no sign, -0 included)")));
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || (text.contains('.') && fraction.is_empty()) || !digits(fraction) {
        return Err(PricingDataError(format!("{what} is not a decimal string of digits such as \"0.0150\": {text:?}")));
    }
    let value = Decimal::from_str_exact(text)
        .map_err(|e| PricingDataError(format!("{what} cannot be held exactly: {text:?}: {e}")))?;
    check_rate_value(what, value)?;
    Ok(value)
}

/// The one written form of a rate that passed [`check_rate_value`]: its places as written, brought into
/// 2..=4 by adding or dropping trailing zeros only ("0.01500" → "0.0150", "0.0150" stays, "25" → "25.00").
/// Numerically equal to `value`; rates are stored, resolved and served in this form.
pub fn canonical_rate(value: Decimal) -> Decimal {
    let mut canonical = value;
    if canonical.scale() > MAX_RATE_SCALE && canonical.normalize().scale() <= MAX_RATE_SCALE {
        canonical.rescale(MAX_RATE_SCALE);
    }
    if canonical.scale() < MIN_RATE_SCALE {
        canonical.rescale(MIN_RATE_SCALE);
    }
    canonical
}

impl Rate {
    /// Both values in their [`canonical_rate`] form.
    pub fn canonical(self) -> Rate {
        Rate { price: canonical_rate(self.price), cost: canonical_rate(self.cost) }
    }
}

impl RateOverride {
    /// The values set, in their [`canonical_rate`] form.
    pub fn canonical(self) -> RateOverride {
        RateOverride { price: self.price.map(canonical_rate), cost: self.cost.map(canonical_rate) }
    }
}

/// Per type: the agency's price if it set one, else the default; the same, independently, for the cost.
pub fn resolve_pricing(
    agency_id: &str,
    default: &DefaultPricing,
    agency: Option<&AgencyPricing>,
) -> Result<EffectivePricing, PricingDataError> {
    let mut rates = Vec::with_capacity(CreditType::ALL.len());
    for credit_type in CreditType::ALL {
        let base = default
            .rates
            .get(&credit_type)
            .ok_or_else(|| PricingDataError(format!("default pricing has no rate for {credit_type}")))?;
        let over = agency.and_then(|a| a.rates.get(&credit_type)).copied().unwrap_or_default();
        let price = over.price.unwrap_or(base.price);
        let cost = over.cost.unwrap_or(base.cost);
        check_rate_value(&format!("{credit_type} price"), price)?;
        check_rate_value(&format!("{credit_type} cost"), cost)?;
        rates.push(EffectiveRate {
            credit_type,
            price: canonical_rate(price),
            cost: canonical_rate(cost),
            price_source: if over.price.is_some() { PriceSource::Agency } else { PriceSource::Default },
        });
    }
    Ok(EffectivePricing {
        agency_id: agency_id.to_owned(),
        default_version: default.version,
        agency_version: agency.map(|a| a.version),
        rates,
    })
}

/// Rounds an amount to cents, half away from zero, and always shows two places ("25.00").
pub fn round_to_cents(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// Renders a per-credit rate with at least two decimal places and its own precision beyond ("0.0150").
/// Any rate is shown in its [`canonical_rate`] form, so even one stored before rates were canonical is served
/// with two to four places.
pub fn format_rate(rate: Decimal) -> String {
    canonical_rate(rate).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Every type at 0.0500 / 0.0300, version 3.
    pub(crate) fn default_pricing() -> DefaultPricing {
        DefaultPricing {
            version: 3,
            rates: CreditType::ALL.into_iter().map(|t| (t, Rate { price: d("0.0500"), cost: d("0.0300") })).collect(),
        }
    }

    #[test]
    fn agency_price_overrides_default_and_cost_falls_back_independently() {
        let agency = AgencyPricing {
            agency_id: "a1".into(),
            version: 7,
            rates: [(CreditType::Pixel, RateOverride { price: Some(d("0.0150")), cost: None })].into(),
        };
        let p = resolve_pricing("a1", &default_pricing(), Some(&agency)).unwrap();
        let pixel = p.rate(CreditType::Pixel);
        assert_eq!(pixel.price, d("0.0150"));
        assert_eq!(pixel.cost, d("0.0300"));
        assert_eq!(pixel.price_source, PriceSource::Agency);
        assert_eq!(p.rate(CreditType::Audience).price_source, PriceSource::Default);
        assert_eq!(p.agency_version, Some(7));
        assert_eq!(p.default_version, 3);
    }

    #[test]
    fn missing_default_rate_is_a_data_error() {
        let mut default = default_pricing();
        default.rates.remove(&CreditType::CustomModel);
        assert!(resolve_pricing("a", &default, None).is_err());
    }

    #[test]
    fn rates_with_more_than_four_places_are_refused() {
        assert!(check_rate_value("x", d("0.00001")).is_err());
        assert!(check_rate_value("x", d("0.00010")).is_ok());
        assert!(check_rate_value("x", d("-1")).is_err());
    }

    #[test]
    fn negative_zero_and_negatives_are_refused_as_rates() {
        // `Decimal` has no negative zero ("-0" parses to 0), so the sign is refused on the text.
        assert!(!d("-0.00").is_sign_negative());
        for text in ["-0", "-0.00", "-0.0000", "-0.01", "-1"] {
            let err = parse_rate("enrichment price", text).expect_err(text);
            assert!(err.0.contains("enrichment price is negative"), "{text}: {err}");
        }
        assert!(check_rate_value("x", d("-0.01")).is_err());
        // So is anything that is not plain digits, or not exact.
        for text in ["", "+1", "1e3", "1_000", " 1", "1 ", ".5", "5.", "0x10", "1.2.3", "NaN", "0.00001", "1000000.01"]
        {
            assert!(parse_rate("x", text).is_err(), "{text:?}");
        }
        assert!(parse_rate("x", "1.0000000000000000000000000000001").is_err(), "not exact");
        for (text, value) in [("0", "0"), ("0.00", "0"), ("0.0150", "0.015"), ("0.01500", "0.015"), ("25", "25")] {
            assert_eq!(parse_rate("x", text).unwrap(), d(value), "{text}");
        }
        // Stored rates are read the same way: a "-0" in a pricing item is a data error, not a free credit.
        for json in [r#"{"price": "-0", "cost": "0.40"}"#, r#"{"price": "1.00", "cost": "-0.00"}"#] {
            assert!(serde_json::from_str::<Rate>(json).is_err(), "{json}");
        }
        assert!(serde_json::from_str::<RateOverride>(r#"{"cost": "-0"}"#).is_err());
        assert!(serde_json::from_str::<RateOverride>(r#"{"price": 1.5}"#).is_err(), "a JSON number is not a rate");
        let o: RateOverride = serde_json::from_str(r#"{"price": "0.01500"}"#).unwrap();
        assert_eq!(o, RateOverride { price: Some(d("0.015")), cost: None });
        // Written in canonical form.
        assert_eq!(serde_json::to_value(o).unwrap(), serde_json::json!({"price": "0.0150"}));
        let r = Rate { price: d("25"), cost: d("0.01500") };
        assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!({"price": "25.00", "cost": "0.0150"}));
    }

    #[test]
    fn rates_are_capped_at_one_million_per_credit() {
        assert_eq!(MAX_RATE, d("1000000.00"));
        assert_eq!(MAX_RATE.to_string(), "1000000.00");
        assert!(check_rate_value("x", d("1000000")).is_ok());
        assert!(check_rate_value("x", d("999999.9999")).is_ok());
        for above in ["1000000.0001", "1000000.01", "1000001", "79228162514264337593543950335"] {
            let err = check_rate_value("audience price", d(above)).expect_err(above);
            assert!(err.0.contains("maximum"), "{above}: {err}");
        }
        let mut default = default_pricing();
        default.rates.insert(CreditType::CustomModel, Rate { price: d("0.10"), cost: d("1000000.01") });
        assert!(resolve_pricing("a", &default, None).is_err());
    }

    #[test]
    fn the_largest_possible_purchase_is_exact() {
        use crate::domain::purchase::{MAX_QUANTITY, Quantities, quote};
        // Every type at the cap, and at the cap's largest fraction below it, at the maximum quantity.
        for (rate, line, total) in [
            ("1000000.00", "1000000000000.00", "4000000000000.00"),
            ("999999.9999", "999999999900.00", "3999999999600.00"),
        ] {
            let default = DefaultPricing {
                version: 1,
                rates: CreditType::ALL.into_iter().map(|t| (t, Rate { price: d(rate), cost: d(rate) })).collect(),
            };
            let p = resolve_pricing("a", &default, None).unwrap();
            let q = quote(&p, &Quantities::from_pairs(CreditType::ALL.map(|t| (t, MAX_QUANTITY)))).unwrap();
            assert_eq!(q.lines.len(), 4);
            for l in &q.lines {
                assert_eq!(l.subtotal.to_string(), line);
                assert_eq!(l.subtotal_at_cost.to_string(), line);
            }
            assert_eq!(q.total.to_string(), total);
            assert_eq!(q.total_at_cost.to_string(), total);
            // Exact: the same as the integer arithmetic, with room to spare in Decimal's 96-bit mantissa.
            let ten_thousandths = |v: Decimal| (v * Decimal::from(10_000)).normalize().mantissa();
            let units = i128::from(MAX_QUANTITY) * ten_thousandths(d(rate)) * 4;
            assert_eq!(ten_thousandths(q.total), units);
            assert!(units < (1i128 << 96) / 1_000_000, "a million times the largest total still fits");
        }
    }

    #[test]
    fn rates_are_canonical_with_two_to_four_places() {
        for (written, canonical) in [
            ("0.01500", "0.0150"),
            ("0.0150", "0.0150"),
            ("0.015", "0.015"),
            ("0.015000000", "0.0150"),
            ("25", "25.00"),
            ("25.0", "25.00"),
            ("25.000000", "25.0000"),
            ("0", "0.00"),
            ("1000000", "1000000.00"),
        ] {
            let value = d(written);
            check_rate_value("x", value).unwrap();
            let c = canonical_rate(value);
            assert_eq!(c.to_string(), canonical, "{written}");
            assert_eq!(c, value, "{written}: canonical form changes only trailing zeros");
            assert_eq!(format_rate(value), canonical, "{written}");
        }
        let agency = AgencyPricing {
            agency_id: "a".into(),
            version: 1,
            rates: [(CreditType::Enrichment, RateOverride { price: Some(d("0.01500")), cost: Some(d("0.010000")) })]
                .into(),
        };
        let mut default = default_pricing();
        default.rates.insert(CreditType::Pixel, Rate { price: d("12"), cost: d("6.250") });
        let p = resolve_pricing("a", &default, Some(&agency)).unwrap();
        assert_eq!(p.rate(CreditType::Enrichment).price.to_string(), "0.0150");
        assert_eq!(p.rate(CreditType::Enrichment).cost.to_string(), "0.0100");
        assert_eq!(p.rate(CreditType::Pixel).price.to_string(), "12.00");
        assert_eq!(p.rate(CreditType::Pixel).cost.to_string(), "6.250");
    }

    #[test]
    fn rounding_is_half_away_from_zero_to_cents() {
        assert_eq!(round_to_cents(d("0.125")).to_string(), "0.13");
        assert_eq!(round_to_cents(d("0.124999")).to_string(), "0.12");
        assert_eq!(round_to_cents(d("2")).to_string(), "2.00");
        assert_eq!(round_to_cents(d("-0.125")).to_string(), "-0.13");
    }

    #[test]
    fn rates_render_with_at_least_two_places() {
        assert_eq!(format_rate(d("25")), "25.00");
        assert_eq!(format_rate(d("0.0150")), "0.0150");
        assert_eq!(format_rate(d("0.5")), "0.50");
    }
}
