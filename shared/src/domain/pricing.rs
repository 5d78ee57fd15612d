//! Prices and costs per credit: the platform's defaults, an agency's overrides, and what applies.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::CreditType;

/// Prices and costs are per credit and may be fractions of a cent, up to this many decimal places.
pub const MAX_RATE_SCALE: u32 = 4;

/// What a client pays per credit and what its agency owes the platform per credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
}

/// An agency's overrides: any of price or cost may be left to the platform default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateOverride {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::str_option")]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::str_option")]
    pub cost: Option<Decimal>,
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

/// Checks one rate value: non-negative, at most four decimal places.
pub fn check_rate_value(what: &str, value: Decimal) -> Result<(), PricingDataError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(PricingDataError(format!("{what} is negative: {value}")));
    }
    if value.normalize().scale() > MAX_RATE_SCALE {
        return Err(PricingDataError(format!("{what} has more than {MAX_RATE_SCALE} decimal places: {value}")));
    }
    Ok(())
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
            price,
            cost,
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
pub fn format_rate(rate: Decimal) -> String {
    let mut shown = rate;
    if shown.scale() < 2 {
        shown.rescale(2);
    }
    shown.to_string()
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
