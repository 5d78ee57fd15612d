//! A client's consumption rules (issue #25): a low-balance alert threshold per credit type, and an auto top-up
//! rule per type (`{"below": T, "buy": N}`), both decided inside the consumption's own transaction.
//!
//! Stored on the account item (`alertThresholds`, `topupRules`, `rulesVersion`; the day's top-up count in
//! `topupDay`/`topupCount`), so the consumption that needs them reads them with the balances it changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CreditType;
use super::ledger::MAX_QUANTITY;

/// The client's changes as sent: each body checked whole, the first thing wrong named by its field.
pub mod request;
pub use request::{parse_alert_thresholds, parse_topup_rules};

/// Auto top-ups an account may make per UTC day unless `AUTO_TOPUP_DAILY_CAP` says otherwise.
pub const DEFAULT_DAILY_TOPUP_CAP: u32 = 3;

/// Buy `buy` credits when a consumption would leave the balance below `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopupRule {
    pub below: u64,
    pub buy: u64,
}

/// Alert thresholds per type: `credits.low` when a consumption takes the balance from at-or-above to below.
pub type AlertThresholds = BTreeMap<CreditType, u64>;

/// Top-up rules per type.
pub type TopupRules = BTreeMap<CreditType, TopupRule>;

/// Everything a consumption decides by, besides the balances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumptionRules {
    pub alert_thresholds: AlertThresholds,
    pub topups: TopupRules,
    /// Up by one on every change of either map (0: never set); a consumption that decided by the rules commits
    /// only while they are still the ones it read.
    pub version: u64,
}

/// Auto top-ups made on one UTC day (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopupsOnDay {
    pub day: String,
    pub count: u32,
}

impl TopupsOnDay {
    /// How many were made on `day` (none if the stored count is another day's).
    pub fn count_on(this: Option<&TopupsOnDay>, day: &str) -> u32 {
        this.filter(|t| t.day == day).map_or(0, |t| t.count)
    }
}

/// Why a rule set is refused, for a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

/// Thresholds must be whole numbers from 1 to [`MAX_QUANTITY`] (0 would never fire: remove the type instead).
pub fn validate_thresholds(thresholds: &AlertThresholds) -> Result<(), RuleError> {
    for (credit_type, threshold) in thresholds {
        if !(1..=MAX_QUANTITY).contains(threshold) {
            return Err(RuleError {
                field: format!("thresholds.{credit_type}"),
                message: format!("must be a whole number from 1 to {MAX_QUANTITY}"),
            });
        }
    }
    Ok(())
}

/// `below` from 1 to [`MAX_QUANTITY`], `buy` from 1 to [`MAX_QUANTITY`] (one purchase line's bound).
pub fn validate_topups(topups: &TopupRules) -> Result<(), RuleError> {
    for (credit_type, rule) in topups {
        for (name, value) in [("below", rule.below), ("buy", rule.buy)] {
            if !(1..=MAX_QUANTITY).contains(&value) {
                return Err(RuleError {
                    field: format!("rules.{credit_type}.{name}"),
                    message: format!("must be a whole number from 1 to {MAX_QUANTITY}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_bounded() {
        assert!(validate_thresholds(&AlertThresholds::from([(CreditType::Audience, 1)])).is_ok());
        let zero = validate_thresholds(&AlertThresholds::from([(CreditType::Pixel, 0)])).unwrap_err();
        assert_eq!(zero.field, "thresholds.pixel");
        let rule = |below, buy| TopupRules::from([(CreditType::Audience, TopupRule { below, buy })]);
        assert!(validate_topups(&rule(10, 100)).is_ok());
        assert_eq!(validate_topups(&rule(10, 0)).unwrap_err().field, "rules.audience.buy");
        assert_eq!(validate_topups(&rule(MAX_QUANTITY + 1, 5)).unwrap_err().field, "rules.audience.below");
    }

    #[test]
    fn a_day_count_belongs_to_its_day() {
        let stored = TopupsOnDay { day: "2026-12-07".into(), count: 2 };
        assert_eq!(TopupsOnDay::count_on(Some(&stored), "2026-12-07"), 2);
        assert_eq!(TopupsOnDay::count_on(Some(&stored), "2026-12-08"), 0);
        assert_eq!(TopupsOnDay::count_on(None, "2026-12-07"), 0);
    }
}
