//! Purchases and the ledger, as both audiences see them.

use super::*;
use crate::domain::ledger::EntryType;
use crate::domain::purchase::PurchaseTrigger;

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
    /// `client` (the client bought it) or `auto_topup` (a consumption bought it by the client's top-up rule).
    pub trigger: PurchaseTrigger,
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
            trigger: record.trigger,
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
    /// On purchase entries only: what made the purchase (`client` or `auto_topup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<PurchaseTrigger>,
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
            trigger: (entry.entry_type == EntryType::Purchase).then_some(entry.trigger),
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
