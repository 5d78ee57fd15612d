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

// ---------------------------------------------------------------------------------------------------------
// Purchases

/// One purchase line at price: the mapping both audiences share.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseLineView {
    pub credit_type: &'static str,
    pub quantity: u64,
    pub unit_price: String,
    pub subtotal: String,
}

impl PurchaseLineView {
    pub fn of(line: &PurchaseLine) -> PurchaseLineView {
        PurchaseLineView {
            credit_type: line.credit_type.as_str(),
            quantity: line.quantity,
            unit_price: format_rate(line.unit_price),
            subtotal: money(line.subtotal),
        }
    }
}

/// What both audiences see of a purchase besides its lines.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseHeader<'a> {
    pub purchase_id: &'a str,
    pub account_id: &'a str,
    pub created_at: &'a str,
    pub currency: &'a str,
    pub total: String,
    pub billed_to_client: bool,
    pub billed_to_agency: bool,
}

impl<'a> PurchaseHeader<'a> {
    fn of(record: &'a PurchaseRecord) -> PurchaseHeader<'a> {
        PurchaseHeader {
            purchase_id: &record.purchase_id,
            account_id: &record.account_id,
            created_at: &record.created_at,
            currency: &record.currency,
            total: money(record.total),
            billed_to_client: record.billed_to_client,
            billed_to_agency: record.billed_to_agency,
        }
    }
}

/// The client's view of a purchase: lines at price, no costs. A voided purchase says so and when (never who
/// voided it); the two fields are absent otherwise.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseView<'a> {
    #[serde(flatten)]
    pub header: PurchaseHeader<'a>,
    pub lines: Vec<PurchaseLineView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<&'a str>,
}

impl<'a> PurchaseView<'a> {
    pub fn of(record: &'a PurchaseRecord) -> PurchaseView<'a> {
        PurchaseView {
            header: PurchaseHeader::of(record),
            lines: record.lines.iter().map(PurchaseLineView::of).collect(),
            voided: record.voided_at.as_ref().map(|_| true),
            voided_at: record.voided_at.as_deref(),
        }
    }
}

/// A purchase line as the agency sees it: the client's line plus cost and margin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyPurchaseLineView {
    #[serde(flatten)]
    pub line: PurchaseLineView,
    pub unit_cost: String,
    pub subtotal_at_cost: String,
    pub margin: String,
}

/// The agency's view of a purchase: every line at price and at cost with its margin, the totals, both billed
/// flags, and the status (`voided`, else `billed` on either side, else `unbilled`) with who voided it and when.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyPurchaseView<'a> {
    #[serde(flatten)]
    pub header: PurchaseHeader<'a>,
    pub lines: Vec<AgencyPurchaseLineView>,
    pub total_at_cost: String,
    pub margin: String,
    pub status: &'static str,
    pub voided_at: Option<&'a str>,
    pub voided_by: Option<&'a str>,
}

impl<'a> AgencyPurchaseView<'a> {
    pub fn of(record: &'a PurchaseRecord) -> AgencyPurchaseView<'a> {
        let lines = record
            .lines
            .iter()
            .map(|line| AgencyPurchaseLineView {
                line: PurchaseLineView::of(line),
                unit_cost: format_rate(line.unit_cost),
                subtotal_at_cost: money(line.subtotal_at_cost),
                margin: money(line.subtotal - line.subtotal_at_cost),
            })
            .collect();
        let status = if record.voided_at.is_some() {
            "voided"
        } else if record.billed_to_client || record.billed_to_agency {
            "billed"
        } else {
            "unbilled"
        };
        AgencyPurchaseView {
            header: PurchaseHeader::of(record),
            lines,
            total_at_cost: money(record.total_at_cost),
            margin: money(record.total - record.total_at_cost),
            status,
            voided_at: record.voided_at.as_deref(),
            voided_by: record.voided_by.as_deref(),
        }
    }
}

/// A purchase answer (201 of a purchase, 200 of a void): the purchase, and the balances right after it unless
/// they were not asked for or could not be read in time.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseAnswer<'a, P: Serialize> {
    pub purchase: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balances: Option<BalancesView<'a>>,
}

/// `GET /accounts/{accountId}/credit-purchases`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchasesPage<'a> {
    pub purchases: Vec<PurchaseView<'a>>,
    pub next_cursor: Option<String>,
}

/// `GET /agencies/{agencyId}/purchases`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyPurchasesPage<'a> {
    pub agency_id: &'a str,
    pub purchases: Vec<AgencyPurchaseView<'a>>,
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Ledger

/// One ledger entry: what moved, why, and every type's balance after it. Who made an adjustment is the
/// operator's business and is not shown; the optional fields are absent when they do not apply.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryView<'a> {
    pub entry_id: &'a str,
    #[serde(rename = "type")]
    pub entry_type: &'static str,
    pub created_at: &'a str,
    pub quantities: BTreeMap<&'static str, i64>,
    pub balances_after: BTreeMap<&'static str, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumption_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchase_id: Option<&'a str>,
}

impl<'a> LedgerEntryView<'a> {
    pub fn of(entry: &'a LedgerEntry, balances_after: &BTreeMap<CreditType, i64>) -> LedgerEntryView<'a> {
        LedgerEntryView {
            entry_id: &entry.entry_id,
            entry_type: entry.entry_type.as_str(),
            created_at: &entry.created_at,
            quantities: entry.quantities.iter().map(|(t, q)| (t.as_str(), *q)).collect(),
            balances_after: CreditType::ALL
                .into_iter()
                .map(|t| (t.as_str(), balances_after.get(&t).copied().unwrap_or(0)))
                .collect(),
            reason: entry.reason.as_deref(),
            reference: entry.reference.as_deref(),
            consumption_id: entry.consumption_id.as_deref(),
            purchase_id: entry.purchase_id.as_deref(),
        }
    }
}

/// `GET /accounts/{accountId}/ledger`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerPage<'a> {
    pub entries: Vec<LedgerEntryView<'a>>,
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Statements and their settlement

/// How a statement's latest collection attempt through Stripe stands (never the Stripe ids).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionView<'a> {
    pub attempt: u32,
    /// `in_flight`, `succeeded`, `failed` or `exhausted`.
    pub state: &'a str,
    /// The machine code of a failure as stored (`card_declined`, `authentication_required`, ...), else `null`.
    pub reason: Option<&'a str>,
    pub last_attempt_at: &'a str,
    /// When the next automatic retry may start; `null` when none is scheduled.
    pub next_attempt_at: Option<&'a str>,
}

impl<'a> CollectionView<'a> {
    pub fn of(attempt: &'a CollectionAttempt) -> CollectionView<'a> {
        CollectionView {
            attempt: attempt.number,
            state: &attempt.state,
            reason: attempt.reason.as_deref(),
            last_attempt_at: &attempt.started_at,
            next_attempt_at: attempt.next_at.as_deref(),
        }
    }
}

/// How a statement was (or is being) settled: both fields of every statement the API shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementView<'a> {
    /// The instant of the payment that paid it in full, else `null`.
    pub paid_at: Option<&'a str>,
    /// `null` when collection never attempted it.
    pub collection: Option<CollectionView<'a>>,
}

impl<'a> SettlementView<'a> {
    pub fn of(statement: &'a Statement) -> SettlementView<'a> {
        SettlementView {
            paid_at: statement.paid_at.as_deref(),
            collection: statement.collection.as_ref().map(CollectionView::of),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLineView {
    pub credit_type: &'static str,
    pub quantity: u64,
    pub amount: String,
}

impl StatementLineView {
    fn of(line: &StatementLine) -> StatementLineView {
        StatementLineView {
            credit_type: line.credit_type.as_str(),
            quantity: line.quantity,
            amount: money(line.amount),
        }
    }
}

/// A statement as its owner sees it: a client's at price, an agency's own at cost (that is all each holds), how
/// many purchases it covers (their ids are paged by the statement purchases route) and how it was settled.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementView<'a> {
    pub statement_id: &'a str,
    pub cycle_end: &'a str,
    pub status: &'a str,
    pub currency: &'a str,
    pub lines: Vec<StatementLineView>,
    pub total: String,
    pub amount_paid: String,
    pub amount_due: String,
    /// When it falls overdue if unpaid; `null` while its cycle is still being billed.
    pub due_at: Option<&'a str>,
    pub purchase_count: u64,
    pub created_at: &'a str,
    #[serde(flatten)]
    pub settlement: SettlementView<'a>,
}

impl<'a> StatementView<'a> {
    pub fn of(statement: &'a Statement) -> StatementView<'a> {
        StatementView {
            statement_id: &statement.statement_id,
            cycle_end: &statement.cycle_end,
            status: &statement.status,
            currency: &statement.currency,
            lines: statement.lines.iter().map(StatementLineView::of).collect(),
            total: money(statement.total),
            amount_paid: money(statement.amount_paid),
            amount_due: money(statement.amount_due),
            due_at: statement.due_at.as_deref(),
            purchase_count: statement.purchase_count,
            created_at: &statement.created_at,
            settlement: SettlementView::of(statement),
        }
    }
}

/// `GET /accounts/{accountId}/statements`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementsPage<'a> {
    pub statements: Vec<StatementView<'a>>,
    pub next_cursor: Option<String>,
}

/// `GET /agencies/{agencyId}/statements`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyStatementsPage<'a> {
    pub agency_id: &'a str,
    pub statements: Vec<StatementView<'a>>,
    pub next_cursor: Option<String>,
}

/// `GET /accounts/{accountId}/statements/{statementId}/purchases`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementPurchasesPage<'a> {
    pub statement_id: &'a str,
    pub purchase_ids: &'a [String],
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// The agency's clients

/// What a client owes this cycle under the asking agency, and the agency's margin on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnbilledView {
    pub purchases: u64,
    pub at_price: String,
    pub at_cost: String,
    pub margin: String,
}

impl UnbilledView {
    pub fn of(sums: &UnbilledSums) -> UnbilledView {
        UnbilledView {
            purchases: sums.purchases,
            at_price: money(sums.at_price),
            at_cost: money(sums.at_cost),
            margin: money(sums.at_price - sums.at_cost),
        }
    }
}

/// A client's last statement on the agency's clients page: the agency's own client's, at the client's price.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastStatementView<'a> {
    pub statement_id: &'a str,
    pub cycle_end: &'a str,
    pub status: &'a str,
    pub amount_due: String,
    pub due_at: Option<&'a str>,
    #[serde(flatten)]
    pub settlement: SettlementView<'a>,
}

impl<'a> LastStatementView<'a> {
    pub fn of(statement: &'a Statement) -> LastStatementView<'a> {
        LastStatementView {
            statement_id: &statement.statement_id,
            cycle_end: &statement.cycle_end,
            status: &statement.status,
            amount_due: money(statement.amount_due),
            due_at: statement.due_at.as_deref(),
            settlement: SettlementView::of(statement),
        }
    }
}

/// One row of the agency's clients page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientView<'a> {
    pub account_id: &'a str,
    pub name: Option<&'a str>,
    pub balances: BalancesView<'a>,
    pub credit_line: Option<CreditLineView>,
    pub hold_statement_id: Option<&'a str>,
    pub unbilled: UnbilledView,
    pub last_statement: Option<LastStatementView<'a>>,
}

/// `GET /agencies/{agencyId}/clients`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientsPage<'a> {
    pub agency_id: &'a str,
    pub currency: &'static str,
    /// The agency's own line, at cost.
    pub agency_credit_line: Option<CreditLineView>,
    pub clients: Vec<ClientView<'a>>,
    pub next_cursor: Option<String>,
}

/// `PUT /agencies/{agencyId}/clients/{accountId}/credit-limit`
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditLimitView<'a> {
    pub account_id: &'a str,
    pub credit_line: CreditLineView,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::StatementKind;
    use serde_json::json;

    fn statement(paid_at: Option<&str>, collection: Option<CollectionAttempt>) -> Statement {
        Statement {
            statement_id: "client-20261201T000000.000Z-acct-a".into(),
            kind: StatementKind::Client,
            owner_id: "acct-a".into(),
            cycle_end: "2026-12-01T00:00:00.000Z".into(),
            status: "payment_failed".into(),
            currency: "USD".into(),
            lines: vec![StatementLine { credit_type: CreditType::Audience, quantity: 3, amount: Decimal::new(75, 0) }],
            total: Decimal::new(7500, 2),
            purchase_count: 1,
            amount_paid: Decimal::ZERO,
            amount_due: Decimal::new(75, 0),
            due_at: Some("2026-12-31T00:00:00.000Z".into()),
            purchase_ids: vec!["p".into()],
            created_at: "2026-12-01T00:01:00.000Z".into(),
            updated_at: "2026-12-01T00:02:00.000Z".into(),
            paid_at: paid_at.map(str::to_owned),
            collection,
        }
    }

    #[test]
    fn a_statement_shows_its_settlement_with_nulls_where_nothing_happened() {
        let never = serde_json::to_value(StatementView::of(&statement(None, None))).unwrap();
        assert_eq!(never["paidAt"], json!(null));
        assert_eq!(never["collection"], json!(null));
        assert_eq!(never["amountDue"], json!("75.00"));
        assert_eq!(never["lines"][0], json!({"creditType": "audience", "quantity": 3, "amount": "75.00"}));
        let declined = CollectionAttempt {
            number: 2,
            state: "failed".into(),
            reason: Some("card_declined".into()),
            started_at: "2026-12-04T00:00:00.000Z".into(),
            next_at: Some("2026-12-08T00:00:00.000Z".into()),
        };
        let failed = serde_json::to_value(StatementView::of(&statement(None, Some(declined)))).unwrap();
        assert_eq!(
            failed["collection"],
            json!({"attempt": 2, "state": "failed", "reason": "card_declined",
                   "lastAttemptAt": "2026-12-04T00:00:00.000Z", "nextAttemptAt": "2026-12-08T00:00:00.000Z"})
        );
        // Nothing Stripe-side (customer, intent) and nothing internal (purchase ids, updatedAt) is shown.
        let keys: Vec<&String> = failed.as_object().unwrap().keys().collect();
        for hidden in ["purchaseIds", "updatedAt", "ownerId", "kind"] {
            assert!(!keys.iter().any(|k| *k == hidden), "{hidden} in {keys:?}");
        }
        let last = serde_json::to_value(LastStatementView::of(&statement(Some("2026-12-05T10:00:00Z"), None))).unwrap();
        assert_eq!(
            last,
            json!({"statementId": "client-20261201T000000.000Z-acct-a", "cycleEnd": "2026-12-01T00:00:00.000Z",
                   "status": "payment_failed", "amountDue": "75.00", "dueAt": "2026-12-31T00:00:00.000Z",
                   "paidAt": "2026-12-05T10:00:00Z", "collection": null})
        );
    }
}
