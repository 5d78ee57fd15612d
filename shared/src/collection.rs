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

use crate::domain::billing::CycleEnd;
use crate::storage::collection::PayableStatement;
use crate::storage::{Store, StoreError};
use crate::stripe::StripeClient;

mod attempt;

use attempt::collect_one;

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
    /// `COLLECT_CONCURRENCY` (1–32), `COLLECT_RETRY_DAYS` (comma-separated, increasing), `COLLECT_LEASE_SECONDS`
    /// (1 or more). A bad value stops the cold start with its name.
    pub fn from_vars(var: crate::settings::Lookup) -> Result<CollectSettings, crate::settings::SettingsError> {
        let vars = crate::settings::Vars(var);
        let defaults = CollectSettings::default();
        // Read as set, empty included: an empty list means no attempt after the first.
        let retry_days = match vars.raw("COLLECT_RETRY_DAYS") {
            None => defaults.retry_days,
            Some(text) => parse_retry_days(&text).map_err(|_| {
                vars.bad("COLLECT_RETRY_DAYS", &text, "at most 10 comma-separated whole days, increasing, above 0")
            })?,
        };
        Ok(CollectSettings {
            concurrency: vars.number("COLLECT_CONCURRENCY", defaults.concurrency, 1..=32)?,
            lease: Duration::from_secs(vars.number("COLLECT_LEASE_SECONDS", defaults.lease.as_secs(), 1..=u64::MAX)?),
            retry_days,
            deadline_margin: defaults.deadline_margin,
        })
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
    fn collect_settings_default_and_refuse_bad_values_by_name() {
        use crate::settings::tests::{assert_refused, vars};
        let read = |pairs: &[(&str, &str)]| CollectSettings::from_vars(&vars(pairs));
        let defaults = read(&[]).unwrap();
        assert_eq!(
            (defaults.concurrency, defaults.lease, defaults.retry_days),
            (8, Duration::from_secs(900), vec![3, 5, 7])
        );
        let set =
            read(&[("COLLECT_CONCURRENCY", "32"), ("COLLECT_RETRY_DAYS", "1,2"), ("COLLECT_LEASE_SECONDS", "60")])
                .unwrap();
        assert_eq!((set.concurrency, set.lease, set.retry_days), (32, Duration::from_secs(60), vec![1, 2]));
        assert_eq!(read(&[("COLLECT_RETRY_DAYS", "")]).unwrap().max_attempts(), 1, "empty: no retries");
        for bad in ["0", "33", "many"] {
            assert_refused(read(&[("COLLECT_CONCURRENCY", bad)]), "COLLECT_CONCURRENCY", "from 1 to 32");
        }
        for bad in ["5,3", "0,1", "a"] {
            assert_refused(read(&[("COLLECT_RETRY_DAYS", bad)]), "COLLECT_RETRY_DAYS", "increasing, above 0");
        }
        for bad in ["0", "15m", "-1"] {
            assert_refused(read(&[("COLLECT_LEASE_SECONDS", bad)]), "COLLECT_LEASE_SECONDS", "a whole number from 1");
        }
    }

    #[test]
    fn a_deadline_from_before_any_real_invocation_is_ignored() {
        // `cargo lambda watch --timeout 600` sends 600000 ms after the epoch: not a deadline that has passed.
        assert_eq!(real_deadline(600_000), None);
        let real = 1_796_600_000_000;
        assert_eq!(real_deadline(real), Some(SystemTime::UNIX_EPOCH + Duration::from_millis(real)));
    }
}
