//! `GET /agencies/{agencyId}/overview`: what needs the agency's attention and its cycle's purchases per day.

use super::*;
use crate::domain::overview::{CycleSeries, DaySums};

/// The whole answer. `truncated`: the lists cover only the first `clientsRead` clients (or not every held
/// statement was read): the clients route pages through them all.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverviewView<'a> {
    pub agency_id: &'a str,
    pub currency: &'static str,
    pub clients_read: usize,
    pub truncated: bool,
    pub on_hold: Vec<HeldClientView<'a>>,
    pub near_limit: Vec<NearLimitView<'a>>,
    pub failed_collections: Vec<FailedCollectionView<'a>>,
    pub cycle: CycleView,
}

/// A client on hold: the statement it is shown under and what it owes on all its held statements.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldClientView<'a> {
    pub account_id: &'a str,
    pub name: Option<&'a str>,
    pub hold_statement_id: &'a str,
    pub held_statements: usize,
    /// Due on its held statements together (what lifts the hold); `null` when they were not all read.
    pub amount_due: Option<String>,
    /// The hold statement itself; `null` when it was not read.
    pub statement: Option<LastStatementView<'a>>,
}

/// A client owing more than 80% of its line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearLimitView<'a> {
    pub account_id: &'a str,
    pub name: Option<&'a str>,
    pub credit_line: CreditLineView,
    /// Owed / limit × 100, rounded up to two places; `null` for a zero limit.
    pub used_percent: Option<String>,
}

/// A client statement whose collection failed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedCollectionView<'a> {
    pub account_id: &'a str,
    pub name: Option<&'a str>,
    pub statement_id: &'a str,
    pub cycle_end: &'a str,
    pub status: &'a str,
    pub amount_due: String,
    pub due_at: Option<&'a str>,
    /// The latest attempt's number, failure code and next retry (`null` when none is scheduled); all `null` for
    /// a statement the payment side marked failed without a collection attempt.
    pub attempt: Option<u32>,
    pub reason: Option<&'a str>,
    pub next_attempt_at: Option<&'a str>,
}

impl<'a> FailedCollectionView<'a> {
    pub fn of(account: &'a Account, statement: &'a Statement) -> FailedCollectionView<'a> {
        let collection = statement.collection.as_ref();
        FailedCollectionView {
            account_id: &account.account_id,
            name: account.name.as_deref(),
            statement_id: &statement.statement_id,
            cycle_end: &statement.cycle_end,
            status: &statement.status,
            amount_due: money(statement.amount_due),
            due_at: statement.due_at.as_deref(),
            attempt: collection.map(|c| c.number),
            reason: collection.and_then(|c| c.reason.as_deref()),
            next_attempt_at: collection.and_then(|c| c.next_at.as_deref()),
        }
    }
}

/// The cycle (a calendar month, UTC) and its days so far.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CycleView {
    /// `YYYY-MM`
    pub month: String,
    /// First and last day of the cycle, `YYYY-MM-DD`.
    pub start: String,
    pub end: String,
    pub days: Vec<DayView>,
    /// The sum of `days`.
    pub totals: DayTotalsView,
}

impl CycleView {
    pub fn of(series: &CycleSeries) -> CycleView {
        CycleView {
            month: series.month.to_string(),
            start: series.month.first_date(),
            end: series.month.last_date(),
            days: series
                .days
                .iter()
                .map(|(date, sums)| DayView { date: date.clone(), sums: DayTotalsView::of(sums) })
                .collect(),
            totals: DayTotalsView::of(&series.totals),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayView {
    pub date: String,
    #[serde(flatten)]
    pub sums: DayTotalsView,
}

/// Purchases (not voided) and their totals at price and at cost, and the margin between.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayTotalsView {
    pub purchases: i64,
    pub total: String,
    pub total_at_cost: String,
    pub margin: String,
}

impl DayTotalsView {
    pub fn of(sums: &DaySums) -> DayTotalsView {
        DayTotalsView {
            purchases: sums.purchases,
            total: money(sums.total),
            total_at_cost: money(sums.total_at_cost),
            margin: money(sums.margin()),
        }
    }
}
