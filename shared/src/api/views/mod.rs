//! The response bodies of every route, as types: each shape lives in one struct, serialised by serde
//! (`camelCase`, money as decimal strings, `null` where the contract says nullable). The agency's views extend
//! the client's with `#[serde(flatten)]` instead of mapping the same record twice.
//!
//! Views borrow what they show; handlers build them from domain and storage values and never by hand.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::domain::agency::{PriceChangeLine, PricingAuditEntry, margin, margin_percent};
use crate::domain::billing::{CollectionAttempt, Statement, StatementLine};
use crate::domain::credit::CreditLine;
use crate::domain::ledger::LedgerEntry;
use crate::domain::{
    self, Account, Balances, CURRENCY, CreditType, DefaultPricing, EffectivePricing, EffectiveRate, PriceSource,
    PurchaseLine, PurchaseRecord, format_rate, round_to_cents,
};
use crate::storage::UnbilledSums;

/// Money as the contract writes it: exactly two places.
pub fn money(amount: Decimal) -> String {
    round_to_cents(amount).to_string()
}

fn source(source: PriceSource) -> &'static str {
    match source {
        PriceSource::Agency => "agency",
        PriceSource::Default => "default",
    }
}

// ---------------------------------------------------------------------------------------------------------
// Balances and lines

/// Credits held, every type named (0 when none).
#[derive(Debug, Clone, Copy)]
pub struct BalancesView<'a>(pub &'a Balances);

impl Serialize for BalancesView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(CreditType::ALL.len()))?;
        for credit_type in CreditType::ALL {
            map.serialize_entry(credit_type.as_str(), &self.0.get(credit_type))?;
        }
        map.end()
    }
}

/// A pay-later line: a line lowered below what is owed has nothing available (0.00), never a negative amount.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditLineView {
    pub limit: String,
    pub outstanding: String,
    pub available: String,
}

impl CreditLineView {
    pub fn of(line: &CreditLine) -> CreditLineView {
        CreditLineView {
            limit: money(line.limit),
            outstanding: money(line.outstanding()),
            available: money(line.available.max(Decimal::ZERO)),
        }
    }
}

/// `GET /accounts/{accountId}/balances`: credits per type, the pay-later line (`null` without one) and the hold.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountBalancesView<'a> {
    pub account_id: &'a str,
    pub balances: BalancesView<'a>,
    pub credit_line: Option<CreditLineView>,
    pub hold_statement_id: Option<&'a str>,
}

impl<'a> AccountBalancesView<'a> {
    pub fn of(account: &'a Account) -> AccountBalancesView<'a> {
        AccountBalancesView {
            account_id: &account.account_id,
            balances: BalancesView(&account.balances),
            credit_line: account.credit_line.as_ref().map(CreditLineView::of),
            hold_statement_id: account.hold_statement_id(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Prices

/// The client's view of its prices: never the agency's cost.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingView<'a> {
    pub account_id: &'a str,
    pub currency: &'static str,
    pub prices: Vec<PriceView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceView {
    pub credit_type: &'static str,
    pub price_per_credit: String,
    pub source: &'static str,
    /// The smallest quantity a line may have; absent when the type cannot be bought (a zero price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_quantity: Option<u64>,
}

impl<'a> PricingView<'a> {
    pub fn of(account_id: &'a str, pricing: &EffectivePricing) -> PricingView<'a> {
        let prices = pricing
            .rates
            .iter()
            .map(|rate| PriceView {
                credit_type: rate.credit_type.as_str(),
                price_per_credit: format_rate(rate.price),
                source: source(rate.price_source),
                minimum_quantity: domain::minimum_quantity(rate),
            })
            .collect();
        PricingView { account_id, currency: CURRENCY, prices }
    }
}

/// `GET/PUT /agencies/{agencyId}/pricing`: per type the price, where it comes from, the default, cost and margin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyPricingView<'a> {
    pub agency_id: &'a str,
    pub currency: &'static str,
    /// 0 before the agency ever set a price.
    pub version: u64,
    pub rates: Vec<AgencyRateView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyRateView {
    pub credit_type: &'static str,
    pub price: String,
    pub price_source: &'static str,
    pub default_price: Option<String>,
    pub cost: String,
    pub margin: String,
    /// `null` at price 0.
    pub margin_percent: Option<String>,
}

impl AgencyRateView {
    pub fn of(rate: &EffectiveRate, default: &DefaultPricing) -> AgencyRateView {
        AgencyRateView {
            credit_type: rate.credit_type.as_str(),
            price: format_rate(rate.price),
            price_source: source(rate.price_source),
            default_price: default.rates.get(&rate.credit_type).map(|r| format_rate(r.price)),
            cost: format_rate(rate.cost),
            margin: format_rate(margin(rate)),
            margin_percent: margin_percent(rate).map(|p| p.to_string()),
        }
    }
}

/// One audited price change, as the price history lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingChangeView<'a> {
    pub changed_at: &'a str,
    pub changed_by: &'a str,
    pub version_before: u64,
    pub version_after: u64,
    pub changes: &'a [PriceChangeLine],
}

impl<'a> PricingChangeView<'a> {
    pub fn of(entry: &'a PricingAuditEntry) -> PricingChangeView<'a> {
        PricingChangeView {
            changed_at: &entry.changed_at,
            changed_by: &entry.changed_by,
            version_before: entry.version_before,
            version_after: entry.version_after,
            changes: &entry.changes,
        }
    }
}

/// `GET /agencies/{agencyId}/pricing/history`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingHistoryPage<'a> {
    pub agency_id: &'a str,
    pub entries: Vec<PricingChangeView<'a>>,
    pub next_cursor: Option<String>,
}

mod overview;
mod purchases;
mod rules;
mod statements;

pub use overview::*;
pub use purchases::*;
pub use rules::*;
pub use statements::*;
