//! The client's consumption rules: its alert thresholds, its auto top-up rules with the day's count and cap.

use super::*;
use crate::domain::rules::{AlertThresholds, TopupRule, TopupRules};

/// `GET/PUT /accounts/{accountId}/alerts`: only the types that have a threshold.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertsView<'a> {
    pub account_id: &'a str,
    pub thresholds: BTreeMap<&'static str, u64>,
}

impl<'a> AlertsView<'a> {
    pub fn of(account_id: &'a str, thresholds: &AlertThresholds) -> AlertsView<'a> {
        AlertsView { account_id, thresholds: thresholds.iter().map(|(t, q)| (t.as_str(), *q)).collect() }
    }
}

/// `GET/PUT /accounts/{accountId}/topups`: only the types that have a rule; the cap and today's count (UTC).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopupsView<'a> {
    pub account_id: &'a str,
    pub rules: BTreeMap<&'static str, TopupRule>,
    pub daily_cap: u32,
    pub topups_today: u32,
}

impl<'a> TopupsView<'a> {
    pub fn of(account_id: &'a str, rules: &TopupRules, daily_cap: u32, topups_today: u32) -> TopupsView<'a> {
        TopupsView {
            account_id,
            rules: rules.iter().map(|(t, rule)| (t.as_str(), *rule)).collect(),
            daily_cap,
            topups_today,
        }
    }
}
