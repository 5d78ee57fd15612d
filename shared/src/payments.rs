//! The payment side's entry points, invoked with IAM (never through the client API):
//!
//! - `record-payment`: `{"statementId", "amount", "paymentReference", "paidAt"}` records a payment (exactly once
//!   per reference; partial payments allowed, overpayment refused), or `{"statementId", "failed": true,
//!   "reason", "attempt"?}` marks a client statement `payment_failed` and puts its account on hold (once per
//!   attempt, 1 unless said: a later attempt's failure is recorded again and emits `statement.payment_failed`
//!   again; the same attempt again writes nothing).
//! - `statement-sweep` (daily): marks every client statement unpaid past its due date `overdue` and puts its
//!   account on hold.
//!
//! Refusals are errors with a meaningful `errorType` ([`PaymentError::error_type`]), so a caller, a log search
//! or an alarm tells them apart; a refused request writes nothing.

use std::time::SystemTime;

use lambda_http::lambda_runtime::{Diagnostic, LambdaEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::inputs::{ExternalId, Text};
use crate::domain::{parse_money, time};
use crate::storage::statements::{MarkOutcome, Payment, PaymentOutcome, PaymentReceipt, UnpaidMark};
use crate::storage::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    #[error("invalid payment event: {0}")]
    InvalidEvent(String),
    #[error("no such statement: {0}")]
    StatementNotFound(String),
    #[error("statement {statement_id} is {status}: not payable (its cycle is still being billed, or it is paid)")]
    NotPayable { statement_id: String, status: String },
    #[error("payment of {amount} is more than the {amount_due} due on {statement_id}")]
    Overpayment { statement_id: String, amount: Decimal, amount_due: Decimal },
    #[error("payment reference {0} was already recorded for another statement or amount")]
    ReferenceReused(String),
    #[error("payment not recorded: {0}")]
    Storage(#[from] StoreError),
}

impl PaymentError {
    pub fn error_type(&self) -> &'static str {
        match self {
            PaymentError::InvalidEvent(_) => "InvalidPaymentEvent",
            PaymentError::StatementNotFound(_) => "StatementNotFound",
            PaymentError::NotPayable { .. } => "StatementNotPayable",
            PaymentError::Overpayment { .. } => "Overpayment",
            PaymentError::ReferenceReused(_) => "PaymentReferenceReused",
            PaymentError::Storage(StoreError::Unavailable(_)) => "StorageUnavailable",
            PaymentError::Storage(StoreError::Internal(_)) => "StorageError",
        }
    }
}

impl From<PaymentError> for Diagnostic {
    fn from(error: PaymentError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

/// What `record-payment` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum PaymentAnswer {
    /// Recorded now (`replayed: false`) or before under the same reference (`replayed: true`).
    #[serde(rename = "recorded")]
    Recorded {
        replayed: bool,
        #[serde(flatten)]
        receipt: PaymentReceipt,
    },
    #[serde(rename = "payment_failed")]
    PaymentFailed { statement_id: String },
}

/// A payment event, validated before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    Paid(Payment),
    /// `attempt`: which attempt at collecting it failed (1 unless said): a failure is recorded, and emits
    /// `statement.payment_failed`, once per attempt.
    Failed {
        statement_id: String,
        reason: String,
        attempt: u32,
    },
}

/// The event as sent: either form's fields, each with its own rule; [`parse_payment_event`] tells the forms
/// apart. serde refuses unknown fields and wrong types with its own messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PaymentEventBody {
    statement_id: Text,
    // A payment
    amount: Option<String>,
    /// The payment side's id (a Stripe PaymentIntent id, an operator's reference).
    payment_reference: Option<ExternalId>,
    paid_at: Option<String>,
    // A failure
    failed: Option<bool>,
    reason: Option<Text>,
    attempt: Option<u32>,
}

pub fn parse_payment_event(event: &Value) -> Result<PaymentEvent, PaymentError> {
    let invalid = |why: &str| PaymentError::InvalidEvent(why.to_owned());
    let body = PaymentEventBody::deserialize(event).map_err(|e| PaymentError::InvalidEvent(e.to_string()))?;
    let statement_id = body.statement_id.into_string();
    match body.failed {
        Some(true) => {
            if body.amount.is_some() || body.payment_reference.is_some() || body.paid_at.is_some() {
                return Err(invalid("a failure carries only `statementId`, `failed`, `reason` and `attempt`"));
            }
            let reason = body.reason.ok_or_else(|| invalid("`reason` is required in a failure"))?;
            let attempt = body.attempt.unwrap_or(1);
            if attempt == 0 {
                return Err(invalid("`attempt` counts from 1"));
            }
            return Ok(PaymentEvent::Failed { statement_id, reason: reason.into_string(), attempt });
        }
        Some(false) => return Err(invalid("`failed` must be true when present")),
        None if body.reason.is_some() || body.attempt.is_some() => {
            return Err(invalid("`reason` and `attempt` belong to a failure (`failed`: true)"));
        }
        None => {}
    }
    let required = |field: Option<String>, name: &str| field.ok_or_else(|| invalid(&format!("`{name}` is required")));
    let amount = parse_money(&required(body.amount, "amount")?)
        .map_err(|e| PaymentError::InvalidEvent(format!("`amount`: {e}")))?;
    if amount.is_zero() {
        return Err(invalid("`amount` must be above zero"));
    }
    let payment_reference =
        body.payment_reference.ok_or_else(|| invalid("`paymentReference` is required"))?.into_string();
    let paid_at = humantime::parse_rfc3339(&required(body.paid_at, "paidAt")?)
        .map(time::timestamp)
        .map_err(|e| PaymentError::InvalidEvent(format!("`paidAt` must be an RFC 3339 UTC instant: {e}")))?;
    Ok(PaymentEvent::Paid(Payment { statement_id, amount, payment_reference, paid_at }))
}

/// The `record-payment` function.
pub async fn record_payment(store: &Store, event: LambdaEvent<Value>) -> Result<PaymentAnswer, PaymentError> {
    // Boxed: unboxed, the payment's future nests deep enough to overflow rustc's layout query limit in the
    // function's `main`.
    Box::pin(payment_event(store, &event.payload)).await
}

/// One payment event, from its JSON payload.
pub async fn payment_event(store: &Store, payload: &Value) -> Result<PaymentAnswer, PaymentError> {
    let answer = match parse_payment_event(payload) {
        Ok(event) => apply(store, event).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &answer {
        tracing::warn!(error = %error, error_type = error.error_type(), "payment event refused");
    }
    answer
}

async fn apply(store: &Store, event: PaymentEvent) -> Result<PaymentAnswer, PaymentError> {
    match event {
        PaymentEvent::Paid(payment) => match store.record_payment(&payment).await? {
            PaymentOutcome::Recorded(receipt) => Ok(PaymentAnswer::Recorded { replayed: false, receipt }),
            PaymentOutcome::Replayed(receipt) => Ok(PaymentAnswer::Recorded { replayed: true, receipt }),
            PaymentOutcome::ReferenceReused => Err(PaymentError::ReferenceReused(payment.payment_reference)),
            PaymentOutcome::StatementNotFound => Err(PaymentError::StatementNotFound(payment.statement_id)),
            PaymentOutcome::NotPayable { status } => {
                Err(PaymentError::NotPayable { statement_id: payment.statement_id, status })
            }
            PaymentOutcome::Overpayment { amount_due } => Err(PaymentError::Overpayment {
                statement_id: payment.statement_id,
                amount: payment.amount,
                amount_due,
            }),
        },
        PaymentEvent::Failed { statement_id, reason, attempt } => {
            match store.mark_unpaid(&statement_id, UnpaidMark::Failed { attempt, reason: &reason }).await? {
                MarkOutcome::Marked => Ok(PaymentAnswer::PaymentFailed { statement_id }),
                MarkOutcome::StatementNotFound => Err(PaymentError::StatementNotFound(statement_id)),
                MarkOutcome::NotPayable { status } => Err(PaymentError::NotPayable { statement_id, status }),
            }
        }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    pub overdue_found: u64,
    pub marked_overdue: u64,
}

/// The `statement-sweep` function: every client statement past its due date and still unpaid becomes
/// `overdue` and puts its account on hold. Reads the unpaid index only (never a Scan); safe to run again.
pub async fn sweep(store: &Store, now: SystemTime) -> Result<SweepSummary, PaymentError> {
    let ids = store.overdue_statement_ids(&time::timestamp(now)).await?;
    let mut summary = SweepSummary { overdue_found: ids.len() as u64, marked_overdue: 0 };
    for id in ids {
        // Overdue is no payment attempt: it emits `account.hold_started` (when it starts the hold), never
        // `statement.payment_failed`.
        if store.mark_unpaid(&id, UnpaidMark::Overdue).await? == MarkOutcome::Marked {
            summary.marked_overdue += 1;
        }
    }
    tracing::info!(
        overdue_found = summary.overdue_found,
        marked_overdue = summary.marked_overdue,
        "statement sweep finished"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payment_events_are_strict() {
        let paid = parse_payment_event(&json!({
            "statementId": "client-20261201T000000.000Z-acct-a", "amount": "12.50",
            "paymentReference": "ch_123", "paidAt": "2026-12-03T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            paid,
            PaymentEvent::Paid(Payment {
                statement_id: "client-20261201T000000.000Z-acct-a".into(),
                amount: "12.50".parse().unwrap(),
                payment_reference: "ch_123".into(),
                paid_at: "2026-12-03T10:00:00.000Z".into(),
            })
        );
        let failed = parse_payment_event(&json!({"statementId": "s", "failed": true, "reason": "card declined"}));
        assert_eq!(
            failed.unwrap(),
            PaymentEvent::Failed { statement_id: "s".into(), reason: "card declined".into(), attempt: 1 }
        );
        let second = parse_payment_event(&json!({"statementId": "s", "failed": true, "reason": "x", "attempt": 2}));
        assert_eq!(second.unwrap(), PaymentEvent::Failed { statement_id: "s".into(), reason: "x".into(), attempt: 2 });
        for bad in [
            json!([]),
            json!({}),
            json!({"statementId": "s", "amount": "1.00", "paymentReference": "r"}),
            json!({"statementId": "s", "amount": 1, "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z"}),
            json!({"statementId": "s", "amount": "0.00", "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z"}),
            json!({"statementId": "s", "amount": "-1.00", "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z"}),
            json!({"statementId": "s", "amount": "1.005", "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z"}),
            json!({"statementId": "s", "amount": "1.00", "paymentReference": "a b", "paidAt": "2026-12-03T10:00:00Z"}),
            json!({"statementId": "s", "amount": "1.00", "paymentReference": "r", "paidAt": "yesterday"}),
            json!({"statementId": "s", "amount": "1.00", "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z", "x": 1}),
            json!({"statementId": "s", "failed": false, "reason": "x"}),
            json!({"statementId": "s", "failed": true}),
            json!({"statementId": "s", "failed": true, "reason": "x", "attempt": 0}),
            json!({"statementId": "s", "failed": true, "reason": "x", "attempt": "2"}),
            json!({"statementId": "s", "amount": "1.00", "paymentReference": "r", "paidAt": "2026-12-03T10:00:00Z", "attempt": 1}),
        ] {
            let error = parse_payment_event(&bad).expect_err(&bad.to_string());
            assert_eq!(error.error_type(), "InvalidPaymentEvent", "{bad}");
        }
    }
}
