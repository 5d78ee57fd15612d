//! The billing run: one statement per client (at price) and one per agency (at cost) for each billing cycle.
//!
//! The run reads pages of unbilled purchases from storage, lets the domain's `StepPlanner` group them into
//! steps, and sends the steps as transactions, up to [`BillingRun::concurrency`] at a time but never two of the
//! same statement at once. Every rule it applies is in `domain::billing`; everything that speaks DynamoDB is
//! in `storage::billing`. Safe to run again, concurrently or after a crash at any point: see
//! `storage::billing`.
//!
//! A run bills the whole cycle (both sides, then makes the statements payable), or one slice of it for the
//! state machine that fans a cycle out: one side, optionally only the owners in one [`Part`] of it. Slices of
//! one side never write the same statement or purchase item, so they run side by side without conflicts; a
//! final whole-cycle run finds nothing left and makes the statements payable.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};

use lambda_http::lambda_runtime::Diagnostic;

use crate::domain::billing::{CycleEnd, DEFAULT_PAYMENT_DUE_DAYS, Part, StatementKind};
use crate::storage::billing::MAX_PURCHASES_PER_STEP;
use crate::storage::{PageKey, StoreError};

mod event;
mod pool;
mod run;

pub use event::*;
use pool::*;
pub use run::*;

/// Unbilled purchases held in memory (about 1 KB each) before they are written out even if their batches are
/// not full: large enough that most statements are built in full steps, small enough for a 256 MB function.
pub const DEFAULT_MAX_BUFFERED_PURCHASES: usize = 20_000;

/// A run stops starting transactions this long (or a tenth of its time, if less) before the Lambda deadline,
/// so it can log and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// Building statements per page when a cycle finishes: one Query page and as many updates (~1 KB each, so
/// well under the 1 MB page), then the deadline is checked again.
pub const DEFAULT_FINISH_PAGE_SIZE: usize = 500;

/// The first pause before the building set is read again (doubling up to [`MAX_FINISH_PAUSE`]): the state
/// index usually catches up within a second.
pub(super) const FIRST_FINISH_PAUSE: Duration = Duration::from_millis(50);
pub(super) const MAX_FINISH_PAUSE: Duration = Duration::from_secs(2);

/// Deadlines earlier than this after the epoch (2001-09-09) come from a local emulator, not from Lambda.
pub(crate) const NO_REAL_DEADLINE_BEFORE: Duration = Duration::from_secs(1_000_000_000);

/// Billing steps (transactions) in flight at once within one side of a run, unless `BILLING_CONCURRENCY` says
/// otherwise. With DynamoDB's latency a 97-purchase step takes ~55 ms, so one step at a time is bounded by
/// round trips; 8 in flight keep the writes (2 write units per transactional KB) under the 40,000 units/s a
/// table gets by default with room for the purchases still coming in, where 16 would be throttled. Measured on
/// the embedded engine (README "Billing at scale"): 200 purchases/s at 1, 534 at 8, the engine's serial writes
/// being the bound at 8.
pub const DEFAULT_BILLING_CONCURRENCY: usize = 8;

/// The most steps a run keeps in flight, whatever `BILLING_CONCURRENCY` says.
pub const MAX_BILLING_CONCURRENCY: usize = 64;

/// The most days `PAYMENT_DUE_DAYS` accepts.
pub const MAX_PAYMENT_DUE_DAYS: u64 = 365;

/// `billing-run`'s settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingSettings {
    /// `BILLING_CONCURRENCY` (1..=[`MAX_BILLING_CONCURRENCY`]), default [`DEFAULT_BILLING_CONCURRENCY`].
    pub concurrency: usize,
    /// `PAYMENT_DUE_DAYS` (0..=[`MAX_PAYMENT_DUE_DAYS`]), default [`DEFAULT_PAYMENT_DUE_DAYS`].
    pub payment_due_days: u64,
}

impl Default for BillingSettings {
    fn default() -> BillingSettings {
        BillingSettings { concurrency: DEFAULT_BILLING_CONCURRENCY, payment_due_days: DEFAULT_PAYMENT_DUE_DAYS }
    }
}

impl BillingSettings {
    pub fn from_vars(var: crate::settings::Lookup) -> Result<BillingSettings, crate::settings::SettingsError> {
        let vars = crate::settings::Vars(var);
        Ok(BillingSettings {
            concurrency: vars.number(
                "BILLING_CONCURRENCY",
                DEFAULT_BILLING_CONCURRENCY,
                1..=MAX_BILLING_CONCURRENCY,
            )?,
            payment_due_days: vars.number("PAYMENT_DUE_DAYS", DEFAULT_PAYMENT_DUE_DAYS, 0..=MAX_PAYMENT_DUE_DAYS)?,
        })
    }
}

/// How one billing run goes.
#[derive(Debug, Clone)]
pub struct BillingRun {
    pub cycle_end: CycleEnd,
    /// Purchases per transaction, 1..=[`MAX_PURCHASES_PER_STEP`]; tests lower it to get many steps.
    pub purchases_per_transaction: usize,
    /// Partial batches are written out once this many unbilled purchases are held in memory.
    pub max_buffered_purchases: usize,
    /// No transaction starts after this; the run then fails with [`BillingError::OutOfTime`].
    pub deadline: Option<Instant>,
    /// Client statements fall overdue at the end of the this-many-th day after they became payable
    /// ([`crate::domain::billing::due_at`]).
    pub payment_due_days: u64,
    /// Steps in flight at once within a side (1 = one after another), each of a different statement.
    pub concurrency: usize,
    /// When the deadline stops a run that committed something, answer `complete: false` with the event that
    /// continues it (a hand-over) instead of failing with [`BillingError::OutOfTime`].
    pub hand_over: bool,
    /// `None`: the whole cycle, then its statements are made payable. Some slice: only that, and the
    /// statements stay `building` (other runs may still be billing the rest of the cycle).
    pub slice: Option<BillingSlice>,
    /// Building statements read (and made payable) per page when the cycle finishes; tests lower it.
    pub finish_page_size: usize,
    /// A slice run resumed after a hand-over: where its side's reading starts (the event's `resumeAt`).
    pub resume: Option<ResumeAt>,
    /// Unbilled purchases per index page (else up to DynamoDB's 1 MB); tests lower it.
    pub read_page_size: Option<usize>,
}

/// Where a slice run's reading of its side's unbilled index starts again: shards before `shard` are done, and
/// in `shard` everything up to and including the item with key `after` (from the start without one). Every
/// purchase of the slice read before this position is settled (billed, billed by another run, or left for
/// the next cycle), so a resumed run skips nothing it should bill; what lies before it is only purchases of
/// other parts and purchases already billed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeAt {
    pub shard: u32,
    pub after: Option<PageKey>,
}

impl ResumeAt {
    /// The start of the index: no position.
    pub const START: ResumeAt = ResumeAt { shard: 0, after: None };

    pub(super) fn to_json(&self) -> Value {
        match &self.after {
            None => json!({"shard": self.shard}),
            Some(after) => json!({"shard": self.shard, "after": after.to_json()}),
        }
    }
}

/// The part of a cycle one run of a fan-out bills: one side, and of it only the statements of the owners
/// (accounts on the client side, agencies on the agency side) in `part`, or all of them without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingSlice {
    pub side: StatementKind,
    pub part: Option<Part>,
}

impl BillingSlice {
    /// Whether this slice bills the statements of `owner` on `kind`'s side.
    pub(super) fn bills(&self, kind: StatementKind, owner: &str) -> bool {
        self.side == kind && self.part.is_none_or(|part| part.holds(owner))
    }
}

impl BillingRun {
    pub fn new(cycle_end: CycleEnd) -> BillingRun {
        BillingRun {
            cycle_end,
            purchases_per_transaction: MAX_PURCHASES_PER_STEP,
            max_buffered_purchases: DEFAULT_MAX_BUFFERED_PURCHASES,
            deadline: None,
            payment_due_days: DEFAULT_PAYMENT_DUE_DAYS,
            concurrency: DEFAULT_BILLING_CONCURRENCY,
            hand_over: false,
            slice: None,
            finish_page_size: DEFAULT_FINISH_PAGE_SIZE,
            resume: None,
            read_page_size: None,
        }
    }
}

/// What a run did; logged and returned as the function's response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub cycle_end: String,
    /// The side and part a slice run billed (absent for a whole-cycle run), so a state machine's history says
    /// which slice a result is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<StatementKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
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
    /// With a part: purchases read from the index but left to the other parts (of `items_read`). Every part
    /// reads the side's whole index; that costs reads, cheap next to the transactional writes they save from
    /// conflicting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchases_in_other_parts: Option<u64>,
    pub transactions: u64,
    /// Purchases another run billed between our read and our write; they were dropped from our batch.
    pub purchases_already_billed: u64,
    /// Purchases whose statement for this cycle was no longer `building`; left for the next cycle.
    pub purchases_left_for_next_cycle: u64,
    /// Statements of the cycle made payable (`building` → `pending_payment`) once both sides finished.
    pub statements_made_payable: u64,
    pub duration_ms: u64,
    /// Of `duration_ms`, the time spent making the statements payable (one write per statement).
    pub finish_ms: u64,
    /// Every purchase of the cycle is billed on both sides and the statements are payable; for a slice run,
    /// every purchase of its slice is billed (the statements stay `building`). `false` only for a hand-over
    /// (`"handOver": true` in the event): the deadline stopped the run after it made progress.
    pub complete: bool,
    /// When not complete: the event that continues the run, its slice included (invoke `billing-run` with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continue_with: Option<Value>,
    /// When handed over: what stopped the run (`OutOfTime`, or `StorageUnavailable` for a table that stayed
    /// throttled or unavailable), as `BillingError::error_type` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_over_on: Option<&'static str>,
}

/// Why a run did not finish. Every variant leaves the table consistent: run again to finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BillingError {
    /// The event is not one the function accepts; nothing was read or written.
    #[error("invalid billing event: {0}")]
    InvalidEvent(String),
    /// The Lambda deadline came close; an asynchronous retry of the same event continues the same cycle.
    #[error("billing run out of time; invoke it again with the same cycleEnd to finish")]
    OutOfTime,
    #[error("billing run failed: {0}")]
    Storage(#[from] StoreError),
}

impl BillingError {
    /// The `errorType` Lambda reports for this failure (what alarms and retries can tell apart).
    pub fn error_type(&self) -> &'static str {
        match self {
            BillingError::InvalidEvent(_) => "InvalidBillingEvent",
            BillingError::OutOfTime => "OutOfTime",
            BillingError::Storage(StoreError::Unavailable(_)) => "StorageUnavailable",
            BillingError::Storage(StoreError::Internal(_)) => "StorageError",
        }
    }
}

/// What the Lambda runtime reports for a failed invocation: `errorType` is [`BillingError::error_type`],
/// `errorMessage` the error's text.
impl From<BillingError> for Diagnostic {
    fn from(error: BillingError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;
    use crate::settings::tests::{assert_refused, vars};

    #[test]
    fn billing_settings_default_and_refuse_values_out_of_range() {
        let read = |pairs: &[(&str, &str)]| BillingSettings::from_vars(&vars(pairs));
        assert_eq!(read(&[]), Ok(BillingSettings { concurrency: 8, payment_due_days: 30 }));
        assert_eq!(
            read(&[("BILLING_CONCURRENCY", "16"), ("PAYMENT_DUE_DAYS", "0")]),
            Ok(BillingSettings { concurrency: 16, payment_due_days: 0 })
        );
        for bad in ["0", "65", "eight", "-1", "1.5"] {
            assert_refused(read(&[("BILLING_CONCURRENCY", bad)]), "BILLING_CONCURRENCY", "from 1 to 64");
        }
        for bad in ["366", "thirty", "-1"] {
            assert_refused(read(&[("PAYMENT_DUE_DAYS", bad)]), "PAYMENT_DUE_DAYS", "from 0 to 365");
        }
    }
}
