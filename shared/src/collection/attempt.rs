//! One statement's collection attempt: whether one is due, its claim, the charge (or what Stripe made of a
//! stopped run's charge) and the outcome recorded.

use std::time::{Duration, SystemTime};

use super::{CollectSettings, Collector, Step};
use crate::domain::billing::{STATUS_PAID, StatementKind};
use crate::domain::time;
use crate::storage::StoreError;
use crate::storage::collection::{AttemptEnd, PayableStatement, STATE_FAILED, STATE_IN_FLIGHT};
use crate::storage::statements::{MarkOutcome, Payment, PaymentOutcome, UnpaidMark};
use crate::stripe::{self, ChargeOutcome, ChargeRequest, StripeError};

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

pub(super) async fn collect_one(collector: &Collector, statement: &PayableStatement, now: SystemTime) -> Step {
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
                match store.mark_unpaid(id, UnpaidMark::Failed { attempt: number, reason: &reason }).await? {
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
