//! The pure domain: credit types, accounts, pricing, purchases, statements and the billing rules.
//!
//! Nothing here knows about DynamoDB or HTTP, so every rule can be unit-tested directly. The storage adapter
//! and the handlers import from here; this module imports from neither.
//!
//! - [`pricing`]: rates, an agency's overrides, the effective prices and the one rounding rule.
//! - [`purchase`]: validating a purchase request, quoting it, and the purchase record it becomes.
//! - [`billing`]: cycles, statements and what a batch of purchases adds to one.
//! - [`credit`]: pay-later credit lines (limit, available, outstanding).
//! - [`ledger`]: ledger entries (every balance change), consumptions and the balance after each entry.
//! - [`consumption_plan`]: what one consumption does (alerts, auto top-up, refusal) and the balance ranges it
//!   decided by.
//! - [`reconcile`]: the check that every balance equals its ledger entries and none is negative.
//! - [`rules`]: a client's low-balance alert thresholds and auto top-up rules.
//! - [`overview`]: what of an agency needs attention, and its cycle's purchases per day.
//! - [`time`]: the one timestamp format every sortable key uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod agency;
pub mod billing;
pub mod consumption_plan;
pub mod credit;
pub mod events;
pub mod idempotency;
pub mod inputs;
pub mod ledger;
pub mod overview;
pub mod payment;
pub mod pricing;
pub mod purchase;
pub mod reconcile;
pub mod rules;
pub mod time;

pub use pricing::*;
pub use purchase::*;

/// The only currency the platform sells in today; stored on every record so a second one can be added later.
pub const CURRENCY: &str = "USD";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditType {
    Audience,
    Enrichment,
    Pixel,
    CustomModel,
}

impl CreditType {
    /// Every type, in the order the dashboard lists them.
    pub const ALL: [CreditType; 4] =
        [CreditType::Audience, CreditType::Enrichment, CreditType::Pixel, CreditType::CustomModel];

    pub fn as_str(self) -> &'static str {
        match self {
            CreditType::Audience => "audience",
            CreditType::Enrichment => "enrichment",
            CreditType::Pixel => "pixel",
            CreditType::CustomModel => "custom_model",
        }
    }

    pub fn parse(name: &str) -> Option<CreditType> {
        CreditType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for CreditType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credits held per type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances(pub BTreeMap<CreditType, u64>);

impl Balances {
    pub fn get(&self, credit_type: CreditType) -> u64 {
        self.0.get(&credit_type).copied().unwrap_or(0)
    }
}

/// Account ids are opaque to us but bounded, so a path can never smuggle a key separator into a key.
pub fn is_valid_account_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A Stripe customer id as Stripe makes them (`cus_` and letters or digits), bounded so it can key a request.
pub fn is_valid_stripe_customer_id(id: &str) -> bool {
    id.strip_prefix("cus_")
        .is_some_and(|rest| !rest.is_empty() && rest.len() <= 250 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An account: its agency, its balances and its pay-later line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub agency_id: String,
    pub name: Option<String>,
    pub balances: Balances,
    /// `None` for an account no line was ever given to: it cannot buy on pay-later.
    pub credit_line: Option<credit::CreditLine>,
    /// The client statements that are `payment_failed` or `overdue` and not paid in full, oldest cycle first:
    /// purchases are refused while any is left.
    pub held_statement_ids: Vec<String>,
    /// Low-balance alert thresholds and auto top-up rules, decided inside each consumption.
    pub rules: rules::ConsumptionRules,
    /// Auto top-ups made today (the stored day may be an earlier one).
    pub topups: Option<rules::TopupsOnDay>,
}

impl Account {
    /// The statement the account's hold is shown under: the oldest it still owes (ids sort by cycle).
    pub fn hold_statement_id(&self) -> Option<&str> {
        self.held_statement_ids.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_cannot_carry_key_separators() {
        assert!(is_valid_account_id("acct-brightside_01"));
        assert!(!is_valid_account_id("a#b"));
        assert!(!is_valid_account_id(""));
        assert!(!is_valid_account_id(&"a".repeat(65)));
    }
}
