//! `collect-payments`: charges every payable statement (client statements at price, agency statements at cost)
//! through Stripe, one PaymentIntent per attempt, and records the outcome through the same exactly-once storage
//! functions `record-payment` uses.
//!
//! Exactly one charge per attempt, whatever runs at once: each attempt is claimed on the statement item with a
//! conditional write *before* Stripe is called (status payable, amount due unchanged, no attempt in flight or
//! succeeded, the previous attempt failed and due for retry); only the claimer calls Stripe, with
//! `Idempotency-Key: {statementId}:{attempt}`. Stripe's answer is stored on the attempt (its PaymentIntent id)
//! before the outcome is recorded. A run that stops anywhere after the claim leaves the attempt `in_flight`; once
//! its lease has passed, a later run takes the same attempt over and asks Stripe what became of it (by the stored
//! intent id, else by the customer's intents' metadata) before it would charge, again with the same key.
//!
//! Outcomes: succeeded → `record_payment` (reference = the PaymentIntent id: the webhook records the same one, so
//! whichever lands second is a replay); declined / authentication required → `mark_unpaid(payment_failed)` on a
//! client statement (hold), and the next attempt is due after the dunning delay; transient (429, 5xx, timeout) →
//! the attempt stays `in_flight` and is retried with the same key by a later run.
//!
//! Dunning (default, [`DEFAULT_RETRY_DAYS`]): after the first failure, attempts 2, 3 and 4 are due 3, 5 and 7
//! days after it; after the last the attempt is `exhausted` and the statement stays `payment_failed` (the daily
//! sweep makes it `overdue` at its due date).

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lambda_http::lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::billing::{CycleEnd, STATUS_PAID, STATUS_PAYMENT_FAILED, StatementKind};
use crate::domain::time;
use crate::storage::collection::{AttemptEnd, PayableStatement, STATE_FAILED, STATE_IN_FLIGHT};
use crate::storage::statements::{MarkOutcome, Payment, PaymentOutcome};
use crate::storage::{Store, StoreError};
use crate::stripe::{self, ChargeOutcome, ChargeRequest, StripeClient, StripeError};

/// Days after the first failure when attempts 2, 3, 4 are due.
pub const DEFAULT_RETRY_DAYS: [u64; 3] = [3, 5, 7];

/// The event: `{}` (every payable statement) or `{"cycleEnd": "..."}` (that cycle's only, as the billing
/// state machine sends it after the cycle is payable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectEvent {
    #[serde(default)]
    pub cycle_end: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// Statements being charged at once (Stripe allows 100 requests/s live, 25 in test mode; each statement
    /// makes two or three).
    pub concurrency: usize,
    /// How long a claim holds before another run may take the attempt over: longer than the function's timeout,
    /// so a live run never loses its claim.
    pub lease: Duration,
    /// Dunning: days after the first failure when each further attempt is due.
    pub retry_days: Vec<u64>,
    /// No new statement is started when less than this is left before the deadline.
    pub deadline_margin: Duration,
}

impl Default for CollectSettings {
    fn default() -> CollectSettings {
        CollectSettings {
            concurrency: 8,
            lease: Duration::from_secs(15 * 60),
            retry_days: DEFAULT_RETRY_DAYS.to_vec(),
            deadline_margin: Duration::from_secs(30),
        }
    }
}

impl CollectSettings {
    /// `COLLECT_CONCURRENCY` (1–32), `COLLECT_RETRY_DAYS` (comma-separated, increasing), `COLLECT_LEASE_SECONDS`.
    /// A bad value stops the cold start with its name.
    pub fn from_env() -> Result<CollectSettings, String> {
        let mut settings = CollectSettings::default();
        if let Ok(text) = std::env::var("COLLECT_CONCURRENCY") {
            settings.concurrency = text
                .parse()
                .ok()
                .filter(|c| (1..=32).contains(c))
                .ok_or_else(|| format!("COLLECT_CONCURRENCY={text:?}: expected 1-32"))?;
        }
        if let Ok(text) = std::env::var("COLLECT_RETRY_DAYS") {
            settings.retry_days = parse_retry_days(&text)?;
        }
        if let Ok(text) = std::env::var("COLLECT_LEASE_SECONDS") {
            let seconds: u64 = text.parse().map_err(|_| format!("COLLECT_LEASE_SECONDS={text:?}: expected seconds"))?;
            settings.lease = Duration::from_secs(seconds);
        }
        Ok(settings)
    }

    /// How many attempts a statement gets in all.
    pub fn max_attempts(&self) -> u32 {
        1 + self.retry_days.len() as u32
    }
}

/// `"3,5,7"`: strictly increasing days, at most 10.
pub fn parse_retry_days(text: &str) -> Result<Vec<u64>, String> {
    let days: Vec<u64> = if text.trim().is_empty() {
        Vec::new()
    } else {
        text.split(',')
            .map(|d| d.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{text:?}: {e}"))?
    };
    if days.len() > 10 || days.windows(2).any(|w| w[0] >= w[1]) || days.first() == Some(&0) {
        return Err(format!("COLLECT_RETRY_DAYS={text:?}: at most 10 increasing days above 0"));
    }
    Ok(days)
}

/// What `collect-payments` needs, built once per instance.
pub struct Collector {
    pub store: Store,
    pub stripe: StripeClient,
    pub settings: CollectSettings,
}

/// What a run did, one count per statement looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectSummary {
    pub payable: u64,
    /// Charged and recorded paid (or found paid by Stripe on a resumed attempt).
    pub succeeded: u64,
    /// Declined or authentication required: `payment_failed` (client statements), retried later.
    pub failed: u64,
    /// Left `in_flight`: Stripe unavailable or still processing; a later run resumes with the same key.
    pub in_flight: u64,
    /// Not this run's: another run holds the attempt, a failed one is not yet due, or attempts are exhausted.
    pub not_due: u64,
    /// Lost the claim to a concurrent run.
    pub claimed_elsewhere: u64,
    /// No Stripe customer on the account or agency.
    pub no_customer: u64,
    /// Errors (logged with the statement): storage, an amount that is not whole cents, Stripe refusing.
    pub errors: u64,
    /// Stopped before the deadline with statements left for the next run.
    pub out_of_time: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectError {
    #[error("invalid collection event: {0}")]
    InvalidEvent(String),
    #[error("collection could not read the payable statements: {0}")]
    Storage(#[from] StoreError),
}

impl CollectError {
    pub fn error_type(&self) -> &'static str {
        match self {
            CollectError::InvalidEvent(_) => "InvalidCollectEvent",
            CollectError::Storage(StoreError::Unavailable(_)) => "StorageUnavailable",
            CollectError::Storage(StoreError::Internal(_)) => "StorageError",
        }
    }
}

impl From<CollectError> for Diagnostic {
    fn from(error: CollectError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

pub fn parse_collect_event(payload: &Value) -> Result<(CollectEvent, Option<CycleEnd>), CollectError> {
    // serde would take a struct from a JSON array too (`[]`): only an object is an event.
    if !payload.is_object() {
        return Err(CollectError::InvalidEvent("expected a JSON object".to_owned()));
    }
    let event: CollectEvent =
        serde_json::from_value(payload.clone()).map_err(|e| CollectError::InvalidEvent(e.to_string()))?;
    let cycle = event
        .cycle_end
        .as_deref()
        .map(CycleEnd::parse)
        .transpose()
        .map_err(|e| CollectError::InvalidEvent(format!("`cycleEnd`: {e}")))?;
    Ok((event, cycle))
}

/// The `collect-payments` function.
pub async fn collect_payments(
    collector: &Collector,
    event: LambdaEvent<Value>,
) -> Result<CollectSummary, CollectError> {
    let deadline = real_deadline(event.context.deadline);
    let (_, cycle) = parse_collect_event(&event.payload)?;
    Box::pin(collect(collector, cycle.as_ref(), SystemTime::now(), deadline)).await
}

/// The invocation's deadline, unless it is from before any real invocation (`cargo lambda watch` sends its
/// timeout as milliseconds after the epoch): that one is ignored, as billing-run does, instead of every statement
/// being out of time.
pub fn real_deadline(deadline_ms: u64) -> Option<SystemTime> {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let real = Duration::from_millis(deadline_ms) > crate::billing::NO_REAL_DEADLINE_BEFORE;
    if !real {
        tracing::warn!(deadline = %humantime::format_rfc3339_millis(at), "ignoring a deadline from before any real invocation");
    }
    real.then_some(at)
}

/// What one statement came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Succeeded,
    Failed,
    InFlight,
    NotDue,
    ClaimedElsewhere,
    NoCustomer,
    Error,
    OutOfTime,
}

/// One collection run at `now` (tests pass a later `now` to reach a retry's due date).
pub async fn collect(
    collector: &Collector,
    cycle: Option<&CycleEnd>,
    now: SystemTime,
    deadline: Option<SystemTime>,
) -> Result<CollectSummary, CollectError> {
    let statements: Vec<PayableStatement> = collector
        .store
        .payable_statements()
        .await?
        .into_iter()
        .filter(|s| cycle.is_none_or(|c| &s.reference.cycle_end == c))
        .collect();
    let mut summary = CollectSummary { payable: statements.len() as u64, ..CollectSummary::default() };
    let steps: Vec<Step> = futures_util::stream::iter(statements)
        .map(|statement| async move {
            if deadline.is_some_and(|d| SystemTime::now() + collector.settings.deadline_margin >= d) {
                return Step::OutOfTime;
            }
            collect_one(collector, &statement, now).await
        })
        .buffer_unordered(collector.settings.concurrency.max(1))
        .collect()
        .await;
    for step in steps {
        match step {
            Step::Succeeded => summary.succeeded += 1,
            Step::Failed => summary.failed += 1,
            Step::InFlight => summary.in_flight += 1,
            Step::NotDue => summary.not_due += 1,
            Step::ClaimedElsewhere => summary.claimed_elsewhere += 1,
            Step::NoCustomer => summary.no_customer += 1,
            Step::Error => summary.errors += 1,
            Step::OutOfTime => summary.out_of_time = true,
        }
    }
    tracing::info!(summary = ?summary, "collection run finished");
    Ok(summary)
}

/// What to do with a statement's latest attempt at `now`.
enum Plan {
    New(u32),
    Resume(u32),
    Skip,
}

fn plan(statement: &PayableStatement, settings: &CollectSettings, now: SystemTime) -> Plan {
    let now_text = time::timestamp(now);
    match &statement.attempt {
        None => Plan::New(1),
        Some(a) if a.state == STATE_FAILED && a.next_at.as_deref().is_some_and(|next| next <= now_text.as_str()) => {
            Plan::New(a.number + 1)
        }
        Some(a) if a.state == STATE_IN_FLIGHT => {
            let stale_before = time::timestamp(now.checked_sub(settings.lease).unwrap_or(SystemTime::UNIX_EPOCH));
            if a.claimed_at <= stale_before { Plan::Resume(a.number) } else { Plan::Skip }
        }
        Some(_) => Plan::Skip,
    }
}

async fn collect_one(collector: &Collector, statement: &PayableStatement, now: SystemTime) -> Step {
    let id = statement.statement_id.as_str();
    match Box::pin(try_collect_one(collector, statement, now)).await {
        Ok(step) => step,
        Err(error) => {
            tracing::error!(statement_id = id, error = %error, "collection of a statement failed; a later run resumes it");
            Step::Error
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum OneError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Amount(String),
}

async fn try_collect_one(
    collector: &Collector,
    statement: &PayableStatement,
    now: SystemTime,
) -> Result<Step, OneError> {
    let store = &collector.store;
    let now_text = time::timestamp(now);
    let (number, resumed) = match plan(statement, &collector.settings, now) {
        Plan::Skip => return Ok(Step::NotDue),
        Plan::New(n) if n > collector.settings.max_attempts() => return Ok(Step::NotDue),
        Plan::New(n) => (n, false),
        Plan::Resume(n) => (n, true),
    };
    if !resumed && statement.amount_due <= rust_decimal::Decimal::ZERO {
        return Ok(Step::NotDue);
    }
    let Some(customer) = store.stripe_customer(&statement.reference).await? else {
        tracing::warn!(statement_id = %statement.statement_id, "no Stripe customer: not collected");
        return Ok(Step::NoCustomer);
    };
    let amount = match (&statement.attempt, resumed) {
        (Some(a), true) => a.amount,
        _ => statement.amount_due,
    };
    let amount_minor = stripe::minor_units(amount, &statement.currency)
        .map_err(|e| OneError::Amount(format!("{}: amount due {e}", statement.statement_id)))?;
    let claimed = if resumed {
        let stale_before = time::timestamp(now.checked_sub(collector.settings.lease).unwrap_or(SystemTime::UNIX_EPOCH));
        store.resume_attempt(statement, number, &stale_before, &now_text).await?
    } else {
        store.claim_new_attempt(statement, number, &customer, &now_text).await?
    };
    if !claimed {
        return Ok(Step::ClaimedElsewhere);
    }
    // The customer the attempt was claimed for (a resumed attempt keeps its own).
    let customer = match (&statement.attempt, resumed) {
        (Some(a), true) => a.customer.clone().unwrap_or(customer),
        _ => customer,
    };
    let outcome = if resumed {
        resumed_outcome(collector, statement, number, &customer, amount_minor).await
    } else {
        charge(collector, statement, number, &customer, amount_minor).await
    };
    settle(collector, statement, number, outcome, now).await
}

/// A new attempt: the customer's default card, then one PaymentIntent.
async fn charge(
    collector: &Collector,
    statement: &PayableStatement,
    number: u32,
    customer: &str,
    amount_minor: i64,
) -> Result<ChargeOutcome, StripeError> {
    let Some(payment_method) = collector.stripe.default_payment_method(customer).await? else {
        return Ok(ChargeOutcome::Failed { intent_id: None, reason: "no_default_payment_method".to_owned() });
    };
    let request = ChargeRequest {
        statement_id: statement.statement_id.clone(),
        attempt: number,
        amount_minor,
        currency: statement.currency.clone(),
        customer: customer.to_owned(),
        payment_method,
    };
    collector.stripe.charge(&request).await
}

/// An attempt a stopped run left `in_flight`: what Stripe made of it, charging (same key) only when Stripe has
/// no intent for it.
async fn resumed_outcome(
    collector: &Collector,
    statement: &PayableStatement,
    number: u32,
    customer: &str,
    amount_minor: i64,
) -> Result<ChargeOutcome, StripeError> {
    let stored = statement.attempt.as_ref().and_then(|a| a.intent_id.clone());
    let intent = match stored {
        Some(id) => Some(collector.stripe.payment_intent(&id).await?),
        None => collector.stripe.find_attempt(customer, &statement.statement_id, number).await?,
    };
    match intent {
        Some(intent) => Ok(intent.outcome()),
        None => charge(collector, statement, number, customer, amount_minor).await,
    }
}

/// Records an attempt's outcome and ends the attempt.
async fn settle(
    collector: &Collector,
    statement: &PayableStatement,
    number: u32,
    outcome: Result<ChargeOutcome, StripeError>,
    now: SystemTime,
) -> Result<Step, OneError> {
    let store = &collector.store;
    let id = statement.statement_id.as_str();
    let now_text = time::timestamp(now);
    match outcome {
        Ok(ChargeOutcome::Succeeded { intent_id, amount_minor }) => {
            store.store_attempt_intent(&statement.reference, number, &intent_id).await?;
            let payment = Payment {
                statement_id: statement.statement_id.clone(),
                amount: stripe::from_minor_units(amount_minor),
                payment_reference: intent_id.clone(),
                paid_at: now_text,
            };
            match store.record_payment(&payment).await? {
                PaymentOutcome::Recorded(_) | PaymentOutcome::Replayed(_) => {}
                // Paid meanwhile by another path: the customer was charged twice; an operator refunds.
                PaymentOutcome::NotPayable { status } if status == STATUS_PAID => {
                    tracing::error!(statement_id = id, intent_id, "charged a statement paid meanwhile: refund it");
                }
                other => {
                    tracing::error!(statement_id = id, intent_id, outcome = ?other, "charge not recorded");
                    return Ok(Step::Error);
                }
            }
            store.finish_attempt(&statement.reference, number, AttemptEnd::Succeeded).await?;
            tracing::info!(statement_id = id, attempt = number, intent_id, "statement collected");
            Ok(Step::Succeeded)
        }
        Ok(ChargeOutcome::Failed { intent_id, reason }) => {
            if let Some(intent_id) = &intent_id {
                store.store_attempt_intent(&statement.reference, number, intent_id).await?;
            }
            if statement.reference.kind == StatementKind::Client {
                match store.mark_unpaid(id, STATUS_PAYMENT_FAILED, &reason).await? {
                    MarkOutcome::Marked => {}
                    // Paid meanwhile (a later success, another path): never put a paid statement on hold.
                    other => tracing::info!(statement_id = id, outcome = ?other, "failure not marked"),
                }
            }
            let first_failed_at =
                statement.attempt.as_ref().and_then(|a| a.first_failed_at.clone()).unwrap_or_else(|| now_text.clone());
            let next_at = collector.settings.retry_days.get(number as usize - 1).map(|days| {
                let first = humantime::parse_rfc3339(&first_failed_at).unwrap_or(now);
                time::timestamp(first + Duration::from_secs(days * 86_400))
            });
            let end = AttemptEnd::Failed { reason: &reason, next_at: next_at.as_deref(), failed_at: &now_text };
            store.finish_attempt(&statement.reference, number, end).await?;
            tracing::warn!(statement_id = id, attempt = number, reason, next_at, "collection attempt failed");
            Ok(Step::Failed)
        }
        Ok(ChargeOutcome::Pending { intent_id, status }) => {
            store.store_attempt_intent(&statement.reference, number, &intent_id).await?;
            tracing::info!(statement_id = id, attempt = number, intent_id, status, "charge still processing");
            Ok(Step::InFlight)
        }
        Err(StripeError::Transient(why)) => {
            tracing::warn!(statement_id = id, attempt = number, why, "Stripe unavailable; retried with the same key");
            Ok(Step::InFlight)
        }
        Err(StripeError::Refused { status, message }) => {
            // Nothing was charged; our request or data is wrong. No hold (not the client's doing); the attempt
            // counts as failed so it is retried after the dunning delay once fixed.
            tracing::error!(statement_id = id, attempt = number, status, message, "Stripe refused the charge");
            let reason = format!("stripe_refused_{status}");
            let next_at = collector
                .settings
                .retry_days
                .get(number as usize - 1)
                .map(|_| time::timestamp(now + Duration::from_secs(86_400)));
            let end = AttemptEnd::Failed { reason: &reason, next_at: next_at.as_deref(), failed_at: &now_text };
            store.finish_attempt(&statement.reference, number, end).await?;
            Ok(Step::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_strict() {
        assert_eq!(parse_collect_event(&json!({})).unwrap().1, None);
        let (_, cycle) = parse_collect_event(&json!({"cycleEnd": "2026-12-01T00:00:00.000Z"})).unwrap();
        assert!(cycle.is_some());
        for bad in [json!([]), json!({"cycleEnd": "yesterday"}), json!({"cycle": "2026-12-01T00:00:00Z"}), json!(1)] {
            assert_eq!(parse_collect_event(&bad).unwrap_err().error_type(), "InvalidCollectEvent", "{bad}");
        }
    }

    #[test]
    fn retry_days_are_increasing() {
        assert_eq!(parse_retry_days("3,5,7"), Ok(vec![3, 5, 7]));
        assert_eq!(parse_retry_days(""), Ok(vec![]));
        for bad in ["5,3", "0,1", "a", "1,1"] {
            assert!(parse_retry_days(bad).is_err(), "{bad}");
        }
        assert_eq!(CollectSettings::default().max_attempts(), 4);
    }

    #[test]
    fn a_deadline_from_before_any_real_invocation_is_ignored() {
        // `cargo lambda watch --timeout 600` sends 600000 ms after the epoch: not a deadline that has passed.
        assert_eq!(real_deadline(600_000), None);
        let real = 1_796_600_000_000;
        assert_eq!(real_deadline(real), Some(SystemTime::UNIX_EPOCH + Duration::from_millis(real)));
    }
}
