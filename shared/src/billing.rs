//! Billing: one statement per client (at price) and one per agency (at cost) for each billing cycle.
//!
//! This module holds the pure part (cycle ends, statement ids, the sums a batch of purchases adds to a
//! statement, the run's settings, summary and event) and the function's entry point; everything that
//! talks to DynamoDB, including the run's loop over the unbilled indexes, is in `storage::billing`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::domain::CreditType;
use crate::storage::{PurchaseRecord, Store, StoreError};

/// A statement waits in this status for the payment step, which is out of scope here.
pub const STATUS_PENDING_PAYMENT: &str = "pending_payment";

/// DynamoDB allows 100 items per `TransactWriteItems`; each step also writes the statement and one statement
/// part, which leaves 98 purchases.
pub const MAX_PURCHASES_PER_TRANSACTION: usize = 98;

/// Unbilled purchases held in memory (about 1 KB each) before they are written out even if their batches are
/// not full: large enough that most statements are built in full steps, small enough for a 256 MB function.
pub const DEFAULT_MAX_BUFFERED_PURCHASES: usize = 20_000;

/// A run stops starting transactions this long (or a tenth of its time, if less) before the Lambda deadline,
/// so it can log and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// The end of a billing cycle (exclusive), rendered as purchases' `createdAt` are (RFC 3339, UTC,
/// milliseconds) so it compares with them as text, in the index sort key and in statement keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CycleEnd(String);

impl CycleEnd {
    /// Parses an RFC 3339 UTC instant ("2026-12-01T00:00:00Z", fractions up to milliseconds).
    pub fn parse(text: &str) -> Result<CycleEnd, String> {
        let at = humantime::parse_rfc3339(text).map_err(|e| {
            format!("`cycleEnd` must be an RFC 3339 UTC instant like \"2026-12-01T00:00:00Z\": {text:?}: {e}")
        })?;
        let since_epoch = at.duration_since(UNIX_EPOCH).map_err(|_| format!("`cycleEnd` is before 1970: {text:?}"))?;
        // A finer cycle end would be silently truncated in every key; refuse it instead.
        if since_epoch.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("`cycleEnd` has more precision than milliseconds: {text:?}"));
        }
        Ok(CycleEnd::at(at))
    }

    pub fn at(time: SystemTime) -> CycleEnd {
        CycleEnd(humantime::format_rfc3339_millis(time).to_string())
    }

    /// "2026-12-01T00:00:00.000Z"
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "20261201T000000.000Z": the cycle end inside statement ids.
    fn compact(&self) -> String {
        self.0.chars().filter(|c| *c != '-' && *c != ':').collect()
    }
}

impl fmt::Display for CycleEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a statement bills: the client (its account, at price) or the agency (at cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Client,
    Agency,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Client => "client",
            StatementKind::Agency => "agency",
        }
    }

    pub fn parse(text: &str) -> Option<StatementKind> {
        [StatementKind::Client, StatementKind::Agency].into_iter().find(|k| k.as_str() == text)
    }

    /// The account (client statements) or agency (agency statements) a purchase is billed to.
    pub fn owner(self, purchase: &PurchaseRecord) -> &str {
        match self {
            StatementKind::Client => &purchase.account_id,
            StatementKind::Agency => &purchase.agency_id,
        }
    }

    /// Deterministic, so a re-run of the same cycle finds the same statement: "client-20261201T000000.000Z-acct-x".
    /// The owner comes last, so no owner id can make two statements' ids equal.
    pub fn statement_id(self, owner: &str, cycle_end: &CycleEnd) -> String {
        format!("{}-{}-{owner}", self.as_str(), cycle_end.compact())
    }

    /// A line's amount on this kind of statement: the subtotal at price, or at cost.
    pub fn line_amount(self, line: &crate::domain::PurchaseLine) -> Decimal {
        match self {
            StatementKind::Client => line.subtotal,
            StatementKind::Agency => line.subtotal_at_cost,
        }
    }

    pub fn purchase_amount(self, purchase: &PurchaseRecord) -> Decimal {
        match self {
            StatementKind::Client => purchase.total,
            StatementKind::Agency => purchase.total_at_cost,
        }
    }
}

/// Quantity and amount of one credit type, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineSum {
    pub quantity: u64,
    pub amount: Decimal,
}

/// What a batch of purchases adds to its statement. Sums of cent amounts are exact: nothing is rounded here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementDelta {
    pub lines: BTreeMap<CreditType, LineSum>,
    pub total: Decimal,
    pub purchase_count: u64,
}

pub fn statement_delta(kind: StatementKind, purchases: &[PurchaseRecord]) -> StatementDelta {
    let mut delta = StatementDelta::default();
    for purchase in purchases {
        for line in &purchase.lines {
            let sum = delta.lines.entry(line.credit_type).or_default();
            sum.quantity += line.quantity;
            sum.amount += kind.line_amount(line);
        }
        delta.total += kind.purchase_amount(purchase);
        delta.purchase_count += 1;
    }
    delta
}

/// A statement as stored, with the ids of every purchase it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub statement_id: String,
    pub kind: StatementKind,
    /// The account id (client statements) or agency id (agency statements).
    pub owner_id: String,
    pub cycle_end: String,
    pub status: String,
    pub currency: String,
    /// Credit types with a non-zero quantity, in dashboard order.
    pub lines: Vec<StatementLine>,
    pub total: Decimal,
    pub purchase_count: u64,
    /// Sorted.
    pub purchase_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub credit_type: CreditType,
    pub quantity: u64,
    pub amount: Decimal,
}

/// How one billing run goes.
#[derive(Debug, Clone)]
pub struct BillingRun {
    pub cycle_end: CycleEnd,
    /// Purchases per transaction, 1..=[`MAX_PURCHASES_PER_TRANSACTION`]; tests lower it to get many steps.
    pub purchases_per_transaction: usize,
    /// Partial batches are written out once this many unbilled purchases are held in memory.
    pub max_buffered_purchases: usize,
    /// Test hook: fail with [`BillingError::Stopped`] once this many transactions have been committed,
    /// as a run that dies half way would.
    pub stop_after_batches: Option<usize>,
    /// No transaction starts after this; the run then fails with [`BillingError::OutOfTime`].
    pub deadline: Option<Instant>,
}

impl BillingRun {
    pub fn new(cycle_end: CycleEnd) -> BillingRun {
        BillingRun {
            cycle_end,
            purchases_per_transaction: MAX_PURCHASES_PER_TRANSACTION,
            max_buffered_purchases: DEFAULT_MAX_BUFFERED_PURCHASES,
            stop_after_batches: None,
            deadline: None,
        }
    }
}

/// What a run did; logged and returned as the function's response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub cycle_end: String,
    /// Client and agency statements this run added purchases to.
    pub client_statements_written: u64,
    pub agency_statements_written: u64,
    pub purchases_billed_to_client: u64,
    pub purchases_billed_to_agency: u64,
    /// What this run added to client statements (at price) and agency statements (at cost).
    #[serde(with = "rust_decimal::serde::str")]
    pub total_at_price: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_at_cost: Decimal,
    /// Items the index queries returned (`Count`) and evaluated (`ScannedCount`): grows with the unbilled
    /// purchases, not with the table.
    pub items_read: u64,
    pub items_scanned: u64,
    pub queries: u64,
    pub transactions: u64,
    /// Purchases another run billed between our read and our write; they were dropped from our batch.
    pub purchases_already_billed: u64,
    /// Purchases whose statement for this cycle was no longer `pending_payment`; left for the next cycle.
    pub purchases_left_for_next_cycle: u64,
    pub duration_ms: u64,
}

/// Why a run did not finish. Every variant leaves the table consistent: run again to finish.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingError {
    /// The event is not one the function accepts.
    InvalidEvent(String),
    /// The `stop_after_batches` test hook fired.
    Stopped {
        batches: usize,
    },
    /// The Lambda deadline came close; an asynchronous retry of the same event continues the same cycle.
    OutOfTime,
    Storage(StoreError),
}

impl fmt::Display for BillingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BillingError::InvalidEvent(why) => write!(f, "invalid billing event: {why}"),
            BillingError::Stopped { batches } => {
                write!(f, "billing run stopped after {batches} transactions (test hook)")
            }
            BillingError::OutOfTime => {
                f.write_str("billing run out of time; invoke it again with the same cycleEnd to finish")
            }
            BillingError::Storage(e) => write!(f, "billing run failed: {e}"),
        }
    }
}

impl std::error::Error for BillingError {}

impl From<StoreError> for BillingError {
    fn from(err: StoreError) -> BillingError {
        BillingError::Storage(err)
    }
}

/// The cycle end an event asks for:
/// - `{"cycleEnd": "2026-12-01T00:00:00Z"}`: that instant;
/// - an EventBridge scheduled event (`"detail-type": "Scheduled Event"`): its `time`, the scheduled instant, so
///   Lambda's retries of the same event bill the same cycle (now if it has none);
/// - `{}` or `null`: now.
pub fn cycle_end_from_event(event: &Value, now: SystemTime) -> Result<CycleEnd, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let object = match event {
        Value::Null => return Ok(CycleEnd::at(now)),
        Value::Object(object) => object,
        other => return Err(invalid(format!("expected a JSON object, got {other}"))),
    };
    if let Some(detail_type) = object.get("detail-type") {
        if detail_type != "Scheduled Event" {
            return Err(invalid(format!("unsupported EventBridge detail-type {detail_type}")));
        }
        return match object.get("time") {
            None => Ok(CycleEnd::at(now)),
            Some(Value::String(time)) => CycleEnd::parse(time).map_err(invalid),
            Some(other) => Err(invalid(format!("`time` must be a string, got {other}"))),
        };
    }
    if let Some(unknown) = object.keys().find(|k| *k != "cycleEnd") {
        return Err(invalid(format!("unknown field `{unknown}`; allowed: `cycleEnd`")));
    }
    match object.get("cycleEnd") {
        None => Ok(CycleEnd::at(now)),
        Some(Value::String(text)) => CycleEnd::parse(text).map_err(invalid),
        Some(other) => Err(invalid(format!("`cycleEnd` must be a string, got {other}"))),
    }
}

/// The `billing-run` function: reads the cycle end from the event, runs, logs and returns the summary.
/// `deadline` is the Lambda invocation's; the run stops starting transactions shortly before it.
pub async fn run_from_event(
    store: &Store,
    event: &Value,
    deadline: Option<SystemTime>,
) -> Result<RunSummary, BillingError> {
    let now = SystemTime::now();
    let cycle_end =
        cycle_end_from_event(event, now).inspect_err(|e| tracing::error!(error = %e, "billing run refused"))?;
    let mut run = BillingRun::new(cycle_end);
    // A deadline already past when the invocation starts is no real one (`cargo lambda watch` sends 600000 ms
    // after the epoch): ignore it rather than refuse to work.
    let deadline = deadline.filter(|at| {
        let real = *at > now;
        if !real {
            tracing::warn!(deadline = %humantime::format_rfc3339_millis(*at), "ignoring a deadline in the past");
        }
        real
    });
    run.deadline = deadline.map(|at| {
        let left = at.duration_since(now).unwrap_or_default();
        // A tenth of the time left, at most DEADLINE_MARGIN, so a short timeout still gets most of its time.
        let budget = left - (left / 10).min(DEADLINE_MARGIN);
        tracing::info!(
            deadline = %humantime::format_rfc3339_millis(at),
            time_budget_ms = budget.as_millis() as u64,
            "billing run time budget"
        );
        Instant::now() + budget
    });
    store.run_billing(&run).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PurchaseLine;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn cycle_end_is_canonical_milliseconds() {
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00Z").unwrap().as_str(), "2026-12-01T00:00:00.000Z");
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00.250Z").unwrap().as_str(), "2026-12-01T00:00:00.250Z");
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00+00:00").unwrap().as_str(), "2026-12-01T00:00:00.000Z");
        assert!(CycleEnd::parse("2026-12-01T00:00:00.0001Z").is_err());
        assert!(CycleEnd::parse("2026-12-01").is_err());
        assert!(CycleEnd::parse("2026-12-01T00:00:00+02:00").is_err());
        assert!(CycleEnd::parse("tomorrow").is_err());
    }

    #[test]
    fn statement_ids_are_deterministic_and_distinct() {
        let cycle = CycleEnd::parse("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(StatementKind::Client.statement_id("acct-a", &cycle), "client-20261201T000000.000Z-acct-a");
        assert_eq!(StatementKind::Agency.statement_id("agency-a", &cycle), "agency-20261201T000000.000Z-agency-a");
        let later = CycleEnd::parse("2027-01-01T00:00:00Z").unwrap();
        assert_ne!(
            StatementKind::Client.statement_id("acct-a", &cycle),
            StatementKind::Client.statement_id("acct-a", &later)
        );
    }

    #[test]
    fn events_name_the_cycle_end() {
        let now = at("2026-11-25T15:00:00.123Z");
        let parse = |v: Value| cycle_end_from_event(&v, now).map(|c| c.as_str().to_owned());
        assert_eq!(parse(json!({"cycleEnd": "2026-12-01T00:00:00Z"})).unwrap(), "2026-12-01T00:00:00.000Z");
        assert_eq!(parse(json!({})).unwrap(), "2026-11-25T15:00:00.123Z");
        assert_eq!(parse(Value::Null).unwrap(), "2026-11-25T15:00:00.123Z");
        let scheduled = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-12-01T02:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
        });
        assert_eq!(parse(scheduled).unwrap(), "2026-12-01T02:00:00.000Z");
        assert_eq!(parse(json!({"detail-type": "Scheduled Event"})).unwrap(), "2026-11-25T15:00:00.123Z");
        for bad in [
            json!({"cycleEnd": 1}),
            json!({"cycleEnd": "soon"}),
            json!({"cycleend": "2026-12-01T00:00:00Z"}),
            json!({"detail-type": "Object Created"}),
            json!([1]),
            json!("2026-12-01T00:00:00Z"),
        ] {
            assert!(matches!(parse(bad.clone()), Err(BillingError::InvalidEvent(_))), "{bad}");
        }
    }

    #[test]
    fn delta_sums_lines_at_price_or_cost_exactly() {
        let line = |t, q, subtotal: &str, at_cost: &str| PurchaseLine {
            credit_type: t,
            quantity: q,
            unit_price: d("0"),
            unit_cost: d("0"),
            subtotal: d(subtotal),
            subtotal_at_cost: d(at_cost),
        };
        let purchase = |lines: Vec<PurchaseLine>| PurchaseRecord {
            purchase_id: "p".into(),
            account_id: "a".into(),
            agency_id: "g".into(),
            created_at: "2026-11-25T12:00:00.000Z".into(),
            currency: "USD".into(),
            total: lines.iter().map(|l| l.subtotal).sum(),
            total_at_cost: lines.iter().map(|l| l.subtotal_at_cost).sum(),
            lines,
            billed_to_client: false,
            billed_to_agency: false,
            client_statement_id: None,
            agency_statement_id: None,
            idempotency_key: None,
        };
        let purchases = vec![
            purchase(vec![
                line(CreditType::Audience, 2, "55.00", "32.00"),
                line(CreditType::Enrichment, 333, "5.00", "133.20"),
            ]),
            purchase(vec![line(CreditType::Enrichment, 1, "0.02", "0.01")]),
        ];
        let client = statement_delta(StatementKind::Client, &purchases);
        assert_eq!(client.total, d("60.02"));
        assert_eq!(client.purchase_count, 2);
        assert_eq!(client.lines[&CreditType::Enrichment], LineSum { quantity: 334, amount: d("5.02") });
        assert_eq!(client.lines.values().map(|l| l.amount).sum::<Decimal>(), client.total);
        let agency = statement_delta(StatementKind::Agency, &purchases);
        assert_eq!(agency.total, d("165.21"));
        assert_eq!(agency.lines[&CreditType::Audience], LineSum { quantity: 2, amount: d("32.00") });
    }
}
