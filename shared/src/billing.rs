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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};

use lambda_http::lambda_runtime::Diagnostic;

use crate::domain::billing::{CycleEnd, DEFAULT_PAYMENT_DUE_DAYS, Part, StatementKind, Step, StepPlanner};
use crate::domain::{round_to_cents, time};
use crate::storage::billing::MAX_PURCHASES_PER_STEP;
use crate::storage::{PageKey, StepOutcome, Store, StoreError};
use crate::table::UNBILLED_SHARDS;

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
const FIRST_FINISH_PAUSE: Duration = Duration::from_millis(50);
const MAX_FINISH_PAUSE: Duration = Duration::from_secs(2);

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

/// The billing concurrency from `BILLING_CONCURRENCY` (1..=[`MAX_BILLING_CONCURRENCY`]), else the default.
pub fn concurrency_from_env() -> usize {
    std::env::var("BILLING_CONCURRENCY")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|n| (1..=MAX_BILLING_CONCURRENCY).contains(n))
        .unwrap_or(DEFAULT_BILLING_CONCURRENCY)
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

    fn to_json(&self) -> Value {
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
    fn bills(&self, kind: StatementKind, owner: &str) -> bool {
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

/// How long after a cycle end its run may start: longer than any request can take (the 7 s request budget,
/// API Gateway's 30 s integration limit), because a purchase's `createdAt` is stamped before it commits. A run
/// started at the cycle end could miss a purchase stamped just before it that commits a moment later, on one
/// side and not the other. The state machine waits [`BILLING_GRACE`] and more (its `Grace` state) first.
pub const BILLING_GRACE: Duration = Duration::from_secs(60);

/// The fields of a manual or state-machine event.
const EVENT_FIELDS: [&str; 6] = ["cycleEnd", "handOver", "side", "part", "offCycle", "resumeAt"];

/// The cycle end an event asks for. It must be a cycle boundary (00:00:00.000Z on the 1st of a month) unless
/// the event says `"offCycle": true` (a cycle end elsewhere bills part of a month on a statement of its own, so
/// a typo would split a month in two), and at least [`BILLING_GRACE`] before `now`:
/// - `{"cycleEnd": "2026-12-01T00:00:00Z"}`: that instant (what the schedule sends, and what a manual run
///   must name);
/// - an EventBridge scheduled event (`"detail-type": "Scheduled Event"`): its `time`, the scheduled instant, so
///   Lambda's retries of the same event bill the same cycle. One without `time` is refused: every real
///   scheduled event has it, and "now" would bill a different cycle on each retry.
///
/// Anything else is refused, `{}` and `null` included: a run never picks its cycle end from the clock.
pub fn cycle_end_from_event(event: &Value, now: SystemTime) -> Result<CycleEnd, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let object = match event {
        Value::Object(object) => object,
        other => return Err(invalid(format!("expected {{\"cycleEnd\": \"<RFC 3339 UTC>\"}}, got {other}"))),
    };
    let cycle_end = if let Some(detail_type) = object.get("detail-type") {
        if detail_type != "Scheduled Event" {
            return Err(invalid(format!("unsupported EventBridge detail-type {detail_type}")));
        }
        match object.get("time") {
            None => return Err(invalid("a Scheduled Event without `time`".into())),
            Some(Value::String(time)) => CycleEnd::parse(time).map_err(invalid)?,
            Some(other) => return Err(invalid(format!("`time` must be a string, got {other}"))),
        }
    } else {
        if let Some(unknown) = object.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
            let allowed = EVENT_FIELDS.map(|field| format!("`{field}`")).join(", ");
            return Err(invalid(format!("unknown field `{unknown}`; allowed: {allowed}")));
        }
        match object.get("cycleEnd") {
            None => {
                return Err(invalid(
                    "`cycleEnd` is required: name the cycle to bill, e.g. {\"cycleEnd\": \"2026-11-01T00:00:00Z\"}"
                        .into(),
                ));
            }
            Some(Value::String(text)) => CycleEnd::parse(text).map_err(invalid)?,
            Some(other) => return Err(invalid(format!("`cycleEnd` must be a string, got {other}"))),
        }
    };
    let off_cycle = match object.get("offCycle") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if object.get("detail-type").is_none() => true,
        Some(other) => return Err(invalid(format!("`offCycle` must be true or false, got {other}"))),
    };
    if !off_cycle && !cycle_end.is_month_boundary() {
        return Err(invalid(format!(
            "cycle end {cycle_end} is not a cycle boundary (00:00:00.000Z on the 1st of a month); to bill up to \
             another instant on purpose, say \"offCycle\": true"
        )));
    }
    if now < cycle_end.instant() + BILLING_GRACE {
        return Err(invalid(format!(
            "cycle end {cycle_end} is less than {} s before now ({}): purchases stamped before it may still be \
             committing; a cycle is billed once its grace period has passed",
            BILLING_GRACE.as_secs(),
            time::timestamp(now)
        )));
    }
    Ok(cycle_end)
}

/// The slice of the cycle an event asks for, `None` for the whole cycle:
/// - `"side": "client" | "agency"`: bill only that side;
/// - with it, `"part": {"index": k, "of": n}` (1 ≤ n ≤ 64, 0 ≤ k < n): only the statements whose owner is in
///   part k of n ([`Part::holds`]).
///
/// `part` without `side`, other values, fields inside `part` other than `index` and `of`, and a slice in a
/// Scheduled Event (the schedule bills whole cycles) are refused.
pub fn slice_from_event(event: &Value) -> Result<Option<BillingSlice>, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let (side, part) = (event.get("side"), event.get("part"));
    if side.is_none() && part.is_none() {
        return Ok(None);
    }
    if event.get("detail-type").is_some() {
        return Err(invalid(
            "a Scheduled Event bills the whole cycle; `side` and `part` are for fanned-out runs".into(),
        ));
    }
    let side = match side {
        None => {
            return Err(invalid(
                "`part` needs `side`: a part divides the owners of one side, \"client\" or \"agency\"".into(),
            ));
        }
        Some(Value::String(text)) => StatementKind::parse(text)
            .ok_or_else(|| invalid(format!("unknown side {text:?}; allowed: \"client\", \"agency\"")))?,
        Some(other) => return Err(invalid(format!("`side` must be \"client\" or \"agency\", got {other}"))),
    };
    let part = part.map(part_from_value).transpose()?;
    Ok(Some(BillingSlice { side, part }))
}

/// `{"index": k, "of": n}`, both whole numbers, nothing else.
fn part_from_value(value: &Value) -> Result<Part, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let Value::Object(object) = value else {
        return Err(invalid(format!("`part` must be {{\"index\": k, \"of\": n}}, got {value}")));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "index" && *k != "of") {
        return Err(invalid(format!("unknown field `part.{unknown}`; allowed: `index`, `of`")));
    }
    let number = |name: &str| match object.get(name) {
        None => Err(invalid(format!("`part.{name}` is required"))),
        // Out-of-range numbers saturate, so `Part::new` names the range.
        Some(v) => v
            .as_u64()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .ok_or_else(|| invalid(format!("`part.{name}` must be a whole number, got {v}"))),
    };
    Part::new(number("index")?, number("of")?).map_err(invalid)
}

/// Where a resumed slice run starts reading (`"resumeAt": {"shard": s, "after": {<the index key>}}`, as a
/// hand-over's `continueWith` carries it), checked strictly: only with a `side` (a whole-cycle run reads from
/// the start), a shard of the index, and `after` a key of that shard's index partition before the cycle end
/// ([`PageKey::unbilled_position`]). `None` without `resumeAt`.
pub fn resume_from_event(
    event: &Value,
    slice: Option<&BillingSlice>,
    cycle_end: &CycleEnd,
) -> Result<Option<ResumeAt>, BillingError> {
    let invalid = |why: String| BillingError::InvalidEvent(why);
    let Some(value) = event.get("resumeAt") else { return Ok(None) };
    let Some(slice) = slice else {
        return Err(invalid("`resumeAt` needs `side`: only a slice run resumes where it stopped".into()));
    };
    let Value::Object(object) = value else {
        return Err(invalid(format!("`resumeAt` must be {{\"shard\": s, \"after\": {{...}}}}, got {value}")));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "shard" && *k != "after") {
        return Err(invalid(format!("unknown field `resumeAt.{unknown}`; allowed: `shard`, `after`")));
    }
    let shard = match object.get("shard") {
        None => return Err(invalid("`resumeAt.shard` is required".into())),
        Some(v) => v
            .as_u64()
            .filter(|shard| *shard < u64::from(UNBILLED_SHARDS))
            .ok_or_else(|| invalid(format!("`resumeAt.shard` must be 0..{UNBILLED_SHARDS}, got {v}")))?
            as u32,
    };
    let after = object
        .get("after")
        .map(|after| PageKey::unbilled_position(slice.side, shard, cycle_end, after).map_err(invalid))
        .transpose()?;
    Ok(Some(ResumeAt { shard, after }))
}

/// The event that continues `run` after a hand-over: the same cycle end and slice, and where a slice's
/// reading stopped (`resumeAt`, unless that is the start).
fn continuation(run: &BillingRun, resume: Option<&ResumeAt>) -> Value {
    let mut event = json!({"cycleEnd": run.cycle_end.as_str(), "handOver": true});
    if !run.cycle_end.is_month_boundary() {
        event["offCycle"] = json!(true);
    }
    if let Some(slice) = &run.slice {
        event["side"] = json!(slice.side.as_str());
        if let Some(part) = slice.part {
            event["part"] = json!({"index": part.index(), "of": part.of()});
        }
        if let Some(resume) = resume.filter(|resume| **resume != ResumeAt::START) {
            event["resumeAt"] = resume.to_json();
        }
    }
    event
}

/// The `billing-run` function: reads the cycle end from the event, runs, logs and returns the summary.
/// `deadline` is the Lambda invocation's; the run stops starting transactions shortly before it.
pub async fn run_from_event(
    store: &Store,
    event: &Value,
    deadline: Option<SystemTime>,
    now: SystemTime,
) -> Result<RunSummary, BillingError> {
    let refused = |e: &BillingError| {
        tracing::error!(error = %e, error_type = e.error_type(), "billing run refused; nothing written");
    };
    let cycle_end = cycle_end_from_event(event, now).inspect_err(refused)?;
    let hand_over = match event.get("handOver") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if event.get("detail-type").is_none() => true,
        Some(other) => {
            let error = BillingError::InvalidEvent(format!("`handOver` must be true or false, got {other}"));
            refused(&error);
            return Err(error);
        }
    };
    let slice = slice_from_event(event).inspect_err(refused)?;
    let resume = resume_from_event(event, slice.as_ref(), &cycle_end).inspect_err(refused)?;
    let mut run =
        BillingRun { hand_over, slice, resume, concurrency: concurrency_from_env(), ..BillingRun::new(cycle_end) };
    if let Some(days) = std::env::var("PAYMENT_DUE_DAYS").ok().and_then(|v| v.parse().ok()) {
        run.payment_due_days = days;
    }
    // A deadline from before any real invocation is no real one (`cargo lambda watch` sends 600000 ms after the
    // epoch): ignore it rather than refuse to work. One that passed a moment ago is real (a loaded instance got
    // to it late): the run is out of time.
    let deadline = deadline.filter(|at| {
        let real = at.duration_since(SystemTime::UNIX_EPOCH).is_ok_and(|since| since > NO_REAL_DEADLINE_BEFORE);
        if !real {
            tracing::warn!(deadline = %humantime::format_rfc3339_millis(*at), "ignoring a deadline from before any real invocation");
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
    run_billing(store, &run).await
}

/// Bills every purchase created before the run's cycle end that is not yet billed, to its client and to its
/// agency, independently (or, for a slice run, on the slice's side to the slice's owners only). Reads only the
/// sparse unbilled indexes (Query per shard, never a Scan), so the work grows with the unbilled purchases, not
/// with the table.
pub async fn run_billing(store: &Store, run: &BillingRun) -> Result<RunSummary, BillingError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    let side = run.slice.map(|slice| slice.side);
    let part = run.slice.and_then(|slice| slice.part);
    tracing::info!(
        run_id = %run_id,
        cycle_end = %run.cycle_end,
        side = side.map(StatementKind::as_str),
        part = part.map(|p| p.to_string()),
        "billing run started"
    );
    let bills_side = |kind: StatementKind| side.is_none_or(|side| side == kind);
    // One side after the other, never both at once: both sides update the same purchase items, and DynamoDB
    // cancels a transaction touching an item another transaction is writing (TransactionConflict). The agency
    // side runs even if the client side failed on bad data, as the two are billed independently ...
    // (Boxed: the SDK's paginator futures nested in the run's loops make a type too deep to lay out inline.)
    let mut client = Tally::default();
    let client_result = if bills_side(StatementKind::Client) {
        Box::pin(bill_side(store, run, &run_id, StatementKind::Client, &mut client)).await
    } else {
        Ok(())
    };
    let mut agency = Tally::default();
    // ... unless DynamoDB is unavailable or time is up: with steps in parallel, pressing on with the other side
    // would only add load to a throttled table (and retries) for a run that must be repeated anyway.
    let agency_result = match &client_result {
        Err(stop @ (BillingError::OutOfTime | BillingError::Storage(StoreError::Unavailable(_)))) => Err(stop.clone()),
        _ if bills_side(StatementKind::Agency) => {
            Box::pin(bill_side(store, run, &run_id, StatementKind::Agency, &mut agency)).await
        }
        _ => Ok(()),
    };
    // Only a run that billed every purchase of the cycle on both sides makes its statements payable; an
    // unfinished one leaves them `building` for the run that finishes the cycle, and so does a slice run, which
    // cannot know whether the rest of the cycle is billed.
    let mut made_payable = 0;
    let mut result = client_result.and(agency_result);
    let finishing = Instant::now();
    if result.is_ok() && run.slice.is_none() {
        result = finish_cycle(store, run, &mut made_payable).await;
    }
    let finish_ms = finishing.elapsed().as_millis() as u64;
    // The deadline, or a table that stayed throttled or unavailable through a step's retries, stopped a run that
    // made progress: with `hand_over`, an answer saying where to go on (the same cycle end: the unbilled indexes
    // and the building set are the record of what is left) instead of a failure, so a long throttled month is
    // not failed by a caller's bounded retries while it still moves. A run that changed nothing still fails (the
    // caller retries that with backoff), so a caller looping on `complete` cannot spin forever.
    let stopped_by = match &result {
        Err(stop @ (BillingError::OutOfTime | BillingError::Storage(StoreError::Unavailable(_)))) => Some(stop.clone()),
        _ => None,
    };
    // A slice run's reading position: pages read (and their purchases settled) are progress too, so a part
    // that owns nothing on a long index hands over where it stopped instead of failing with nothing done.
    let start = run.resume.clone().unwrap_or(ResumeAt::START);
    let resume_at = run
        .slice
        .and_then(|slice| match slice.side {
            StatementKind::Client => client.resume_at.take(),
            StatementKind::Agency => agency.resume_at.take(),
        })
        .filter(|position| position.shard < UNBILLED_SHARDS);
    let read_on = resume_at.as_ref().is_some_and(|position| *position != start);
    let progress = client.transactions + agency.transactions + made_payable > 0 || read_on;
    let handed_over = run.hand_over && stopped_by.is_some() && progress;
    if handed_over {
        result = Ok(());
    }
    let summary = RunSummary {
        run_id,
        cycle_end: run.cycle_end.to_string(),
        side,
        part,
        client_statements_written: client.statements.len() as u64,
        agency_statements_written: agency.statements.len() as u64,
        purchases_billed_to_client: client.purchases_billed,
        purchases_billed_to_agency: agency.purchases_billed,
        // Sums of cent amounts: rounding only fixes the rendering at two places ("0.00").
        total_at_price: round_to_cents(client.amount),
        total_at_cost: round_to_cents(agency.amount),
        items_read: client.items_read + agency.items_read,
        items_scanned: client.items_scanned + agency.items_scanned,
        queries: client.queries + agency.queries,
        purchases_in_other_parts: part.map(|_| client.in_other_parts + agency.in_other_parts),
        transactions: client.transactions + agency.transactions,
        purchases_already_billed: client.already_billed + agency.already_billed,
        purchases_left_for_next_cycle: client.left_for_next_cycle + agency.left_for_next_cycle,
        statements_made_payable: made_payable,
        duration_ms: started.elapsed().as_millis() as u64,
        finish_ms,
        complete: !handed_over,
        continue_with: handed_over.then(|| continuation(run, resume_at.as_ref().or(run.resume.as_ref()))),
        handed_over_on: stopped_by.filter(|_| handed_over).map(|stop| stop.error_type()),
    };
    log_summary(&summary, result.as_ref().err());
    result.map(|()| summary)
}

/// Makes the cycle's statements payable, a page at a time (`made_payable` counts as it goes, so a hand-over
/// reports what it did). The state index is eventually consistent, so one pass may miss a statement the last
/// step wrote a moment before: the building set is read again, after a short growing pause, until a whole
/// pass finds it empty. The deadline is checked before every page.
async fn finish_cycle(store: &Store, run: &BillingRun, made_payable: &mut u64) -> Result<(), BillingError> {
    // Counted from now, when the statements become payable (a late run gives clients the same days to pay).
    let due_at = crate::domain::billing::due_at(&run.cycle_end, SystemTime::now(), run.payment_due_days);
    let out_of_time = || run.deadline.is_some_and(|deadline| Instant::now() >= deadline);
    let mut pause = FIRST_FINISH_PAUSE;
    loop {
        let mut found = 0;
        let mut after = None;
        loop {
            if out_of_time() {
                return Err(BillingError::OutOfTime);
            }
            let page = store.building_statements_page(&run.cycle_end, run.finish_page_size, after).await?;
            found += page.statements.len();
            *made_payable += store.make_payable(&page.statements, &due_at, run.concurrency).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if found == 0 {
            return Ok(());
        }
        // Sleep no later than the deadline, which the next page checks.
        let sleep =
            run.deadline.map_or(pause, |deadline| pause.min(deadline.saturating_duration_since(Instant::now())));
        tokio::time::sleep(sleep).await;
        pause = (pause * 2).min(MAX_FINISH_PAUSE);
    }
}

/// One side's counts, kept even when it fails so the partial summary can be logged.
#[derive(Default)]
struct Tally {
    statements: std::collections::BTreeSet<String>,
    purchases_billed: u64,
    amount: Decimal,
    items_read: u64,
    items_scanned: u64,
    queries: u64,
    in_other_parts: u64,
    transactions: u64,
    already_billed: u64,
    left_for_next_cycle: u64,
    /// A side's reading position when it stopped (set by [`bill_side`] only).
    resume_at: Option<ResumeAt>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.statements.extend(other.statements);
        self.purchases_billed += other.purchases_billed;
        self.amount += other.amount;
        self.items_read += other.items_read;
        self.items_scanned += other.items_scanned;
        self.queries += other.queries;
        self.in_other_parts += other.in_other_parts;
        self.transactions += other.transactions;
        self.already_billed += other.already_billed;
        self.left_for_next_cycle += other.left_for_next_cycle;
    }
}

/// Reads one side's unbilled purchases, shard after shard, and bills them in steps, up to
/// `run.concurrency` steps in flight while the next pages are read. A slice run skips the purchases of owners
/// outside its part before they are batched.
async fn bill_side(
    store: &Store,
    run: &BillingRun,
    run_id: &str,
    kind: StatementKind,
    tally: &mut Tally,
) -> Result<(), BillingError> {
    let batch_size = run.purchases_per_transaction.clamp(1, MAX_PURCHASES_PER_STEP);
    // Steps fill across pages and shards.
    let mut planner = StepPlanner::new(kind, batch_size, run.max_buffered_purchases);
    let mut pool = StepPool::new(store, run, run_id, kind);
    // Steps waiting for a slot beyond this stop the reading until some finish (memory stays bounded).
    let backlog = 2 * pool.limit;
    let start = run.resume.clone().unwrap_or(ResumeAt::START);
    pool.marks.read_to = start.clone();
    let result = async {
        for shard in start.shard..UNBILLED_SHARDS {
            let after = if shard == start.shard { start.after.clone() } else { None };
            let mut pages = store.unbilled_pages(kind, shard, &run.cycle_end, after, run.read_page_size);
            loop {
                // Per page, not only before a transaction: a part that owns nothing on a long index sends none.
                if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return Err(BillingError::OutOfTime);
                }
                let page_start = ResumeAt { shard, after: pages.position().cloned() };
                let Some(page) = pages.next().await else { break };
                let page = page?;
                let seq = pool.marks.begin_page(page_start);
                tally.queries += 1;
                tally.items_read += page.items_read;
                tally.items_scanned += page.items_scanned;
                for purchase in page.purchases {
                    // The index is sharded by purchase, not by owner, so every part reads the whole side and
                    // keeps its own owners: reads are cheap next to the transactional writes (2 units per KB),
                    // and disjoint owners mean no two parts ever write the same item.
                    if run.slice.is_some_and(|slice| !slice.bills(kind, kind.owner(&purchase))) {
                        tally.in_other_parts += 1;
                        continue;
                    }
                    pool.marks.hold(seq, &purchase.purchase_id);
                    if let Some(step) = planner.push(purchase) {
                        pool.ready.push_back(step);
                    }
                }
                let read_to = match pages.position() {
                    Some(next) => ResumeAt { shard, after: Some(next.clone()) },
                    None => ResumeAt { shard: shard + 1, after: None },
                };
                pool.marks.end_page(seq, read_to);
                pool.ready.extend(planner.flush_if_full());
                pool.run_until(backlog, tally).await?;
            }
        }
        pool.ready.extend(planner.drain());
        pool.run_until(0, tally).await
    }
    .await;
    // Whatever happened, the steps in flight end (committed or not) before the side does.
    pool.settle_all(tally).await;
    tally.resume_at = Some(pool.marks.position());
    result
}

/// Where a side's reading could resume without skipping a purchase it holds: the pages read, in order, each
/// with its purchases of the slice not yet settled. The position is the start of the oldest page with one
/// unsettled (held in the planner, waiting, in flight or failed), else the end of the last page read.
#[derive(Default)]
struct ReadMarks {
    next_page: u64,
    /// Page number -> (where the page started, its purchases not yet settled).
    pages: BTreeMap<u64, (ResumeAt, usize)>,
    page_of: HashMap<String, u64>,
    /// Where the page after the last one read starts.
    read_to: ResumeAt,
}

impl Default for ResumeAt {
    fn default() -> ResumeAt {
        ResumeAt::START
    }
}

impl ReadMarks {
    fn begin_page(&mut self, start: ResumeAt) -> u64 {
        let page = self.next_page;
        self.next_page += 1;
        self.pages.insert(page, (start, 0));
        page
    }

    fn hold(&mut self, page: u64, purchase_id: &str) {
        if let Some((_, held)) = self.pages.get_mut(&page)
            && self.page_of.insert(purchase_id.to_owned(), page).is_none()
        {
            *held += 1;
        }
    }

    fn end_page(&mut self, page: u64, read_to: ResumeAt) {
        if self.pages.get(&page).is_some_and(|(_, held)| *held == 0) {
            self.pages.remove(&page);
        }
        self.read_to = read_to;
    }

    /// These purchases' step ended without error: they are billed (by us or another run) or left for the next
    /// cycle.
    fn settled(&mut self, purchase_ids: &[String]) {
        for id in purchase_ids {
            let Some(page) = self.page_of.remove(id) else { continue };
            if let Some((_, held)) = self.pages.get_mut(&page) {
                *held -= 1;
                if *held == 0 {
                    self.pages.remove(&page);
                }
            }
        }
    }

    fn position(&self) -> ResumeAt {
        self.pages.values().next().map_or_else(|| self.read_to.clone(), |(start, _)| start.clone())
    }
}

/// What a step's task answers: its owner, its purchase ids, what it did and how it ended.
type StepDone = (String, Vec<String>, Tally, Result<(), BillingError>);

/// The steps of one side in flight, each in its own task, at most `limit` at once and never two for the same
/// statement: two transactions on the one statement item would cancel each other (TransactionConflict), and
/// the statement's order of steps does not matter for its sums, only that each commits once.
///
/// Exactly once does not rest on this scheduling: each purchase's `billedTo… = false` condition, the
/// deterministic statement id and the `building` condition hold whatever runs alongside (other tasks, other
/// runs), as `storage::billing` explains.
struct StepPool {
    store: Store,
    run: Arc<BillingRun>,
    run_id: Arc<str>,
    kind: StatementKind,
    limit: usize,
    /// Steps waiting for a slot, in the order planned.
    ready: VecDeque<Step>,
    /// Owners with a step in flight.
    busy: HashSet<String>,
    tasks: tokio::task::JoinSet<StepDone>,
    /// The first failure; no step starts after it.
    error: Option<BillingError>,
    /// Which pages read still hold purchases not settled: where the side could resume.
    marks: ReadMarks,
}

impl StepPool {
    fn new(store: &Store, run: &BillingRun, run_id: &str, kind: StatementKind) -> StepPool {
        StepPool {
            store: store.clone(),
            run: Arc::new(run.clone()),
            run_id: Arc::from(run_id),
            kind,
            limit: run.concurrency.clamp(1, MAX_BILLING_CONCURRENCY),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            tasks: tokio::task::JoinSet::new(),
            error: None,
            marks: ReadMarks::default(),
        }
    }

    /// Starts waiting steps whose statement has none in flight, while slots are free.
    fn start_ready(&mut self) {
        let mut i = 0;
        while self.error.is_none() && self.tasks.len() < self.limit && i < self.ready.len() {
            if self.busy.contains(&self.ready[i].owner) {
                i += 1;
                continue;
            }
            let Some(step) = self.ready.remove(i) else { break };
            self.busy.insert(step.owner.clone());
            let (store, run, run_id, kind) = (self.store.clone(), self.run.clone(), self.run_id.clone(), self.kind);
            self.tasks.spawn(async move {
                let owner = step.owner.clone();
                let ids = step.purchases.iter().map(|p| p.purchase_id.clone()).collect();
                let mut tally = Tally::default();
                let result = bill_step(&store, &run, &run_id, kind, step, &mut tally).await;
                (owner, ids, tally, result)
            });
        }
    }

    /// Starts and settles steps until at most `backlog` wait (and, for 0, none is in flight either).
    async fn run_until(&mut self, backlog: usize, tally: &mut Tally) -> Result<(), BillingError> {
        loop {
            if let Some(error) = &self.error {
                return Err(error.clone());
            }
            self.start_ready();
            let done =
                if backlog == 0 { self.ready.is_empty() && self.tasks.is_empty() } else { self.ready.len() <= backlog };
            if done {
                return Ok(());
            }
            match self.tasks.join_next().await {
                Some(joined) => self.settle(joined, tally),
                // Nothing in flight and nothing could start: only with no slot at all, which `limit` >= 1 rules out.
                None => return Ok(()),
            }
        }
    }

    fn settle(&mut self, joined: Result<StepDone, tokio::task::JoinError>, tally: &mut Tally) {
        let failure = match joined {
            Ok((owner, ids, step_tally, result)) => {
                self.busy.remove(&owner);
                tally.add(step_tally);
                if result.is_ok() {
                    self.marks.settled(&ids);
                }
                result.err()
            }
            Err(join_error) => {
                Some(BillingError::Storage(StoreError::Internal(format!("a billing step task failed: {join_error}"))))
            }
        };
        if let Some(failure) = failure {
            self.error.get_or_insert(failure);
        }
    }

    /// Waits for every step in flight, counting what they did; starts nothing new.
    async fn settle_all(&mut self, tally: &mut Tally) {
        while let Some(joined) = self.tasks.join_next().await {
            self.settle(joined, tally);
        }
    }
}

/// Sends one step, dropping purchases another run billed meanwhile and sending the rest again.
async fn bill_step(
    store: &Store,
    run: &BillingRun,
    run_id: &str,
    kind: StatementKind,
    mut step: Step,
    tally: &mut Tally,
) -> Result<(), BillingError> {
    let statement_id = kind.statement_id(&step.owner, &run.cycle_end);
    while !step.purchases.is_empty() {
        // The deadline is checked before each transaction, never inside one.
        if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(BillingError::OutOfTime);
        }
        match store.bill_step(kind, &run.cycle_end, &step, run_id).await? {
            StepOutcome::Committed(delta) => {
                tally.transactions += 1;
                tally.statements.insert(statement_id);
                tally.purchases_billed += delta.purchase_count;
                tally.amount += delta.total;
                return Ok(());
            }
            StepOutcome::AlreadyBilled(positions) => {
                tracing::info!(statement_id = %statement_id, count = positions.len(), "purchases already billed by another run; dropped");
                tally.already_billed += positions.len() as u64;
                step = step.without(&positions);
            }
            StepOutcome::StatementClosed => {
                tracing::warn!(
                    statement_id = %statement_id,
                    count = step.purchases.len(),
                    "statement no longer building; its purchases stay unbilled for the next cycle"
                );
                tally.left_for_next_cycle += step.purchases.len() as u64;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One JSON log line with every figure as its own field, so Logs Insights can query and graph them.
fn log_summary(summary: &RunSummary, error: Option<&BillingError>) {
    macro_rules! log_with {
        ($level:ident, $message:literal $(, $extra:tt)*) => {
            tracing::$level!(
                $($extra,)*
                run_id = %summary.run_id,
                cycle_end = %summary.cycle_end,
                side = summary.side.map(StatementKind::as_str),
                part = summary.part.map(|p| p.to_string()),
                client_statements_written = summary.client_statements_written,
                agency_statements_written = summary.agency_statements_written,
                purchases_billed_to_client = summary.purchases_billed_to_client,
                purchases_billed_to_agency = summary.purchases_billed_to_agency,
                total_at_price = %summary.total_at_price,
                total_at_cost = %summary.total_at_cost,
                items_read = summary.items_read,
                items_scanned = summary.items_scanned,
                queries = summary.queries,
                purchases_in_other_parts = summary.purchases_in_other_parts,
                transactions = summary.transactions,
                purchases_already_billed = summary.purchases_already_billed,
                purchases_left_for_next_cycle = summary.purchases_left_for_next_cycle,
                statements_made_payable = summary.statements_made_payable,
                duration_ms = summary.duration_ms,
                finish_ms = summary.finish_ms,
                complete = summary.complete,
                handed_over_on = summary.handed_over_on,
                $message
            )
        };
    }
    match error {
        None if !summary.complete => {
            log_with!(
                warn,
                "billing run handed over (deadline, or a throttled table); invoke it again with continueWith"
            )
        }
        None => log_with!(info, "billing run finished"),
        Some(err) => {
            let error = err.to_string();
            let error_type = err.error_type();
            log_with!(error, "billing run did not finish; run it again with the same cycleEnd", error, error_type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn events_name_a_cycle_end_that_has_passed() {
        let now = at("2026-11-26T15:00:00.123Z");
        let parse = |v: Value| cycle_end_from_event(&v, now).map(|c| c.as_str().to_owned());
        assert_eq!(parse(json!({"cycleEnd": "2026-11-01T00:00:00Z"})).unwrap(), "2026-11-01T00:00:00.000Z");
        // Off a boundary only when the event says so, and only once the grace period has passed.
        let off = json!({"cycleEnd": "2026-11-26T14:59:00.123Z", "offCycle": true});
        assert_eq!(parse(off).unwrap(), "2026-11-26T14:59:00.123Z");
        assert_eq!(
            parse(json!({"cycleEnd": "2026-11-01T00:00:00Z", "offCycle": false})).unwrap(),
            "2026-11-01T00:00:00.000Z"
        );
        // The month that ended a moment ago is refused until its grace period has passed.
        let early = cycle_end_from_event(&json!({"cycleEnd": "2026-12-01T00:00:00Z"}), at("2026-12-01T00:00:59.999Z"));
        assert!(matches!(early, Err(BillingError::InvalidEvent(m)) if m.contains("less than 60 s")));
        assert!(cycle_end_from_event(&json!({"cycleEnd": "2026-12-01T00:00:00Z"}), at("2026-12-01T00:01:00Z")).is_ok());
        let scheduled = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
        });
        assert_eq!(parse(scheduled).unwrap(), "2026-11-01T00:00:00.000Z");
        for bad in [
            json!({}),
            Value::Null,
            json!({"detail-type": "Scheduled Event"}),
            json!({"detail-type": "Scheduled Event", "time": null}),
            json!({"cycleEnd": "2026-12-01T00:00:00Z"}),
            json!({"cycleEnd": "2026-11-26T15:01:00.124Z"}),
            // An operator's typo on 20 November would bill 1-9 November on a statement of its own.
            json!({"cycleEnd": "2026-11-10T00:00:00Z"}),
            json!({"cycleEnd": "2026-11-01T00:00:00.001Z"}),
            json!({"cycleEnd": "2026-11-26T14:59:00.124Z", "offCycle": true}),
            json!({"cycleEnd": "2026-11-10T00:00:00Z", "offCycle": "yes"}),
            json!({"cycleEnd": "2026-11-01T00:00:00Z", "offCycle": 1}),
            json!({"detail-type": "Scheduled Event", "time": "2026-11-10T00:00:00Z"}),
            json!({"detail-type": "Scheduled Event", "time": "2026-12-01T00:00:00Z"}),
            json!({"cycleEnd": 1}),
            json!({"cycleEnd": null}),
            json!({"cycleEnd": "soon"}),
            json!({"cycleend": "2026-11-01T00:00:00Z"}),
            json!({"detail-type": "Object Created"}),
            json!([1]),
            json!("2026-11-01T00:00:00Z"),
        ] {
            assert!(matches!(parse(bad.clone()), Err(BillingError::InvalidEvent(_))), "{bad}");
        }
    }

    #[test]
    fn events_may_name_a_side_and_a_part_of_it() {
        let now = at("2026-11-26T15:00:00Z");
        let slice = |v: Value| {
            cycle_end_from_event(&v, now)?;
            slice_from_event(&v)
        };
        let base = json!({"cycleEnd": "2026-11-01T00:00:00Z", "handOver": true});
        let with = |extra: Value| {
            let mut event = base.clone();
            event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            event
        };
        assert_eq!(slice(base.clone()), Ok(None));
        assert_eq!(
            slice(with(json!({"side": "client"}))),
            Ok(Some(BillingSlice { side: StatementKind::Client, part: None }))
        );
        assert_eq!(
            slice(with(json!({"side": "agency", "part": {"index": 3, "of": 4}}))),
            Ok(Some(BillingSlice { side: StatementKind::Agency, part: Some(Part::new(3, 4).unwrap()) }))
        );
        assert_eq!(
            slice(with(json!({"side": "client", "part": {"of": 64, "index": 0}}))).unwrap().unwrap().part,
            Some(Part::new(0, 64).unwrap())
        );
        assert_eq!(
            slice(with(json!({"side": "client", "part": {"index": 0, "of": 1}}))).unwrap().unwrap().side,
            StatementKind::Client
        );
        for (bad, says) in [
            (json!({"part": {"index": 0, "of": 2}}), "`part` needs `side`"),
            (json!({"side": "clients"}), "unknown side \"clients\"; allowed: \"client\", \"agency\""),
            (json!({"side": "Client"}), "unknown side"),
            (json!({"side": 1}), "`side` must be \"client\" or \"agency\", got 1"),
            (json!({"side": null}), "`side` must be"),
            (json!({"side": "client", "part": null}), "`part` must be {\"index\": k, \"of\": n}, got null"),
            (json!({"side": "client", "part": 2}), "`part` must be"),
            (json!({"side": "client", "part": [0, 2]}), "`part` must be"),
            (json!({"side": "client", "part": {"index": 0}}), "`part.of` is required"),
            (json!({"side": "client", "part": {"of": 2}}), "`part.index` is required"),
            (json!({"side": "client", "part": {"index": 2, "of": 2}}), "`part.index` must be 0..2"),
            (json!({"side": "client", "part": {"index": 0, "of": 0}}), "`part.of` must be 1..=64, got 0"),
            (json!({"side": "client", "part": {"index": 0, "of": 65}}), "`part.of` must be 1..=64, got 65"),
            (json!({"side": "client", "part": {"index": 0, "of": 4294967296u64}}), "`part.of` must be 1..=64"),
            (json!({"side": "client", "part": {"index": -1, "of": 2}}), "`part.index` must be a whole number, got -1"),
            (json!({"side": "client", "part": {"index": 0.0, "of": 2}}), "`part.index` must be a whole number"),
            (json!({"side": "client", "part": {"index": "0", "of": 2}}), "`part.index` must be a whole number"),
            (json!({"side": "client", "part": {"index": 0, "of": 2, "k": 1}}), "unknown field `part.k`"),
            (
                json!({"side": "client", "parts": 2}),
                "unknown field `parts`; allowed: `cycleEnd`, `handOver`, `side`, `part`, `offCycle`",
            ),
        ] {
            let event = with(bad.clone());
            match slice(event.clone()) {
                Err(BillingError::InvalidEvent(message)) => assert!(message.contains(says), "{event}: {message}"),
                other => panic!("{event}: expected InvalidEvent, got {other:?}"),
            }
        }
        // The schedule bills whole cycles.
        let scheduled = json!({"detail-type": "Scheduled Event", "time": "2026-11-01T00:00:00Z", "side": "client"});
        assert!(matches!(slice(scheduled), Err(BillingError::InvalidEvent(m)) if m.contains("Scheduled Event")));
    }

    #[test]
    fn a_whole_cycle_summary_has_the_same_fields_as_before_and_a_slice_says_which_it_is() {
        let keys = |summary: &RunSummary| -> Vec<String> {
            serde_json::to_value(summary).unwrap().as_object().unwrap().keys().cloned().collect()
        };
        let mut whole = keys(&RunSummary::default());
        whole.sort();
        let mut before = [
            "runId",
            "cycleEnd",
            "clientStatementsWritten",
            "agencyStatementsWritten",
            "purchasesBilledToClient",
            "purchasesBilledToAgency",
            "totalAtPrice",
            "totalAtCost",
            "itemsRead",
            "itemsScanned",
            "queries",
            "transactions",
            "purchasesAlreadyBilled",
            "purchasesLeftForNextCycle",
            "statementsMadePayable",
            "durationMs",
            "finishMs",
            "complete",
        ];
        before.sort();
        assert_eq!(whole, before);
        let slice = RunSummary {
            side: Some(StatementKind::Agency),
            part: Some(Part::new(1, 3).unwrap()),
            purchases_in_other_parts: Some(7),
            ..RunSummary::default()
        };
        let answer = serde_json::to_value(&slice).unwrap();
        assert_eq!(
            (&answer["side"], &answer["part"], &answer["purchasesInOtherParts"]),
            (&json!("agency"), &json!({"index": 1, "of": 3}), &json!(7))
        );
    }

    #[test]
    fn a_hand_over_continues_the_same_slice() {
        let cycle_end = CycleEnd::parse("2026-11-01T00:00:00Z").unwrap();
        let whole = BillingRun::new(cycle_end.clone());
        assert_eq!(continuation(&whole, None), json!({"cycleEnd": "2026-11-01T00:00:00.000Z", "handOver": true}));
        let slice = BillingSlice { side: StatementKind::Client, part: Some(Part::new(2, 5).unwrap()) };
        let event = continuation(&BillingRun { slice: Some(slice), ..whole }, None);
        assert_eq!(
            event,
            json!({"cycleEnd": "2026-11-01T00:00:00.000Z", "handOver": true, "side": "client",
                "part": {"index": 2, "of": 5}})
        );
        assert_eq!(slice_from_event(&event), Ok(Some(slice)));
        // An off-cycle run's continuation says so again.
        let off = BillingRun::new(CycleEnd::parse("2026-11-10T00:00:00Z").unwrap());
        assert_eq!(
            continuation(&off, None),
            json!({"cycleEnd": "2026-11-10T00:00:00.000Z", "handOver": true, "offCycle": true})
        );
    }

    #[test]
    fn a_resume_position_is_checked_strictly() {
        let cycle_end = CycleEnd::parse("2026-11-01T00:00:00Z").unwrap();
        let client = BillingSlice { side: StatementKind::Client, part: Some(Part::new(1, 4).unwrap()) };
        let after = json!({"pk": "ACCOUNT#acct-1", "sk": "PURCHASE#p1", "unbilledClientPk": "UNBILLED#2",
            "unbilledClientSk": "2026-10-30T10:00:00.000Z#p1"});
        let resume =
            |v: Value, slice: Option<&BillingSlice>| resume_from_event(&json!({"resumeAt": v}), slice, &cycle_end);
        let at = resume(json!({"shard": 2, "after": after}), Some(&client)).unwrap().unwrap();
        assert_eq!(at.shard, 2);
        // What a hand-over writes is what the next invocation reads.
        assert_eq!(resume(at.to_json(), Some(&client)).unwrap(), Some(at.clone()));
        assert_eq!(resume(json!({"shard": 3}), Some(&client)).unwrap(), Some(ResumeAt { shard: 3, after: None }));
        assert_eq!(resume_from_event(&json!({}), Some(&client), &cycle_end).unwrap(), None);
        let with = |field: &str, value: Value| {
            let mut after = after.clone();
            if value.is_null() {
                after.as_object_mut().unwrap().remove(field);
            } else {
                after[field] = value;
            }
            json!({"shard": 2, "after": after})
        };
        for (bad, slice, says) in [
            (json!({"shard": 2}), None, "`resumeAt` needs `side`"),
            (json!([2]), Some(&client), "`resumeAt` must be"),
            (json!({"after": after}), Some(&client), "`resumeAt.shard` is required"),
            (json!({"shard": 4}), Some(&client), "`resumeAt.shard` must be 0..4"),
            (json!({"shard": -1}), Some(&client), "`resumeAt.shard` must be"),
            (json!({"shard": "1"}), Some(&client), "`resumeAt.shard` must be"),
            (json!({"shard": 2, "page": 1}), Some(&client), "unknown field `resumeAt.page`"),
            (json!({"shard": 2, "after": "x"}), Some(&client), "must be an object"),
            // The key of shard 2 given as shard 1's, or of the other side's index.
            (json!({"shard": 1, "after": after}), Some(&client), "is not shard 1's partition"),
            (with("unbilledClientSk", json!("2026-11-01T00:00:00.000Z#p1")), Some(&client), "not before the cycle end"),
            (with("unbilledClientSk", json!(3)), Some(&client), "must be a non-empty string"),
            (with("pk", json!("AGENCY#x")), Some(&client), "not a purchase's key"),
            (with("sk", json!("STATEMENT#x")), Some(&client), "not a purchase's key"),
            (with("sk", Value::Null), Some(&client), "`resumeAt.after.sk` is required"),
            (with("other", json!("x")), Some(&client), "unknown field `resumeAt.after.other`"),
            (
                json!({"shard": 2, "after": after}),
                Some(&BillingSlice { side: StatementKind::Agency, part: None }),
                "unknown field `resumeAt.after.unbilledClientPk`",
            ),
        ] {
            match resume(bad.clone(), slice) {
                Err(BillingError::InvalidEvent(message)) => assert!(message.contains(says), "{bad}: {message}"),
                other => panic!("{bad}: expected InvalidEvent, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_failure_has_its_own_error_type() {
        let diagnostic = |e: BillingError| Diagnostic::from(e);
        for (error, error_type) in [
            (BillingError::InvalidEvent("x".into()), "InvalidBillingEvent"),
            (BillingError::OutOfTime, "OutOfTime"),
            (BillingError::Storage(StoreError::Unavailable("x".into())), "StorageUnavailable"),
            (BillingError::Storage(StoreError::Internal("x".into())), "StorageError"),
        ] {
            let message = error.to_string();
            assert_eq!(diagnostic(error), Diagnostic { error_type: error_type.into(), error_message: message });
        }
    }
}
