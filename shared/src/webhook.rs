//! `stripe-webhook`: `POST /webhooks/stripe`, Stripe's signed events (no JWT authorizer: Stripe cannot send
//! one; the signature is the authentication).
//!
//! The raw body exactly as received (lambda_http decodes API Gateway's base64 before we see it) is verified
//! ([`crate::stripe::signature`]) before anything is parsed: a missing, malformed, forged or stale signature, or
//! a body over 64 KiB, is 400 and writes nothing.
//!
//! - `payment_intent.succeeded` → `record_payment` with the PaymentIntent id as the reference: the same record
//!   `collect-payments` writes from Stripe's synchronous answer, so whichever arrives second is a replay;
//! - `payment_intent.payment_failed` → `mark_unpaid(payment_failed)` on a client statement, which never touches
//!   a paid statement (a failure arriving after the success changes nothing; a success after a failure pays and
//!   lifts the hold).
//!
//! Anything else (another event type, a statement we do not know, an intent without our metadata) is answered
//! 200 and ignored with a log line; only a storage outage answers 503, so Stripe delivers again.

use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use crate::api::error::AppError;
use crate::api::http::json_response;
use crate::domain::billing::{StatementKind, StatementRef};
use crate::domain::time;
use crate::storage::statements::{MarkOutcome, Payment, PaymentOutcome, UnpaidMark};
use crate::storage::{Store, StoreError};
use crate::stripe::signature::{self, SignatureError};
use crate::stripe::{PaymentIntent, Secret, from_minor_units};

/// What `stripe-webhook` needs, built once per instance.
pub struct WebhookApp {
    pub store: Store,
    /// The endpoint's signing secrets (more than one while rolling).
    pub secrets: Vec<Secret>,
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// What the webhook answers (Stripe only looks at the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAnswer {
    pub received: bool,
    /// `recorded`, `replayed`, `marked_failed`, or `ignored` with `reason`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn ignored(reason: impl Into<String>) -> Result<WebhookAnswer, StoreError> {
    Ok(WebhookAnswer { received: true, result: "ignored", reason: Some(reason.into()) })
}

/// The `stripe-webhook` function.
pub async fn stripe_webhook(app: &WebhookApp, request: Request) -> Response<Body> {
    handle(app, request, SystemTime::now()).await
}

pub async fn handle(app: &WebhookApp, request: Request, now: SystemTime) -> Response<Body> {
    let header = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let body: &[u8] = request.body().as_ref();
    if let Err(error) = signature::verify(header, body, &app.secrets, now) {
        tracing::warn!(error = %error, "webhook refused: signature");
        // A problem+json 400 like every refusal of the API; Stripe only reads the status.
        let detail = match error {
            SignatureError::TooLarge(_) => "The body is over 64 KiB: not a Stripe event.".to_owned(),
            _ => "The Stripe-Signature header does not sign this body with a current secret within 300 s.".to_owned(),
        };
        return AppError::InvalidHeader { header: "Stripe-Signature", detail }.into_response();
    }
    let event: Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(error) => {
            // Signed by Stripe yet not an event we can read: acknowledged, so Stripe stops sending it.
            tracing::warn!(error = %error, "webhook ignored: not a Stripe event");
            let answer = WebhookAnswer { received: true, result: "ignored", reason: Some("not an event".into()) };
            return json_response(StatusCode::OK, &answer);
        }
    };
    match Box::pin(apply(&app.store, &event)).await {
        Ok(answer) => {
            tracing::info!(event_id = event.id, event_type = event.kind, result = answer.result, reason = ?answer.reason, "webhook handled");
            json_response(StatusCode::OK, &answer)
        }
        Err(error) => {
            tracing::error!(event_id = event.id, error = %error, "webhook not recorded; Stripe delivers again");
            // 5xx: Stripe delivers it again later.
            AppError::from(error).into_response()
        }
    }
}

async fn apply(store: &Store, event: &Event) -> Result<WebhookAnswer, StoreError> {
    let succeeded = match event.kind.as_str() {
        "payment_intent.succeeded" => true,
        "payment_intent.payment_failed" => false,
        other => return ignored(format!("event type {other}")),
    };
    let Ok(intent) = serde_json::from_value::<PaymentIntent>(event.data.object.clone()) else {
        return ignored("not a PaymentIntent");
    };
    let Some(statement_id) = intent.metadata.get("statementId").cloned() else {
        return ignored("no statementId in the metadata");
    };
    let Some(reference) = StatementRef::parse(&statement_id) else {
        return ignored(format!("unknown statement {statement_id}"));
    };
    if succeeded {
        if intent.status != "succeeded" || intent.amount <= 0 {
            return ignored(format!("intent status {}", intent.status));
        }
        let created = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(event.created.max(0) as u64);
        let payment = Payment {
            statement_id: statement_id.clone(),
            amount: from_minor_units(intent.amount),
            payment_reference: intent.id.clone(),
            paid_at: time::timestamp(created),
        };
        return match store.record_payment(&payment).await? {
            PaymentOutcome::Recorded(_) => Ok(WebhookAnswer { received: true, result: "recorded", reason: None }),
            PaymentOutcome::Replayed(_) => Ok(WebhookAnswer { received: true, result: "replayed", reason: None }),
            PaymentOutcome::StatementNotFound => ignored(format!("unknown statement {statement_id}")),
            PaymentOutcome::NotPayable { status } => {
                tracing::error!(
                    statement_id,
                    intent_id = intent.id,
                    status,
                    "a charge for a statement not payable: refund it"
                );
                ignored(format!("statement is {status}"))
            }
            PaymentOutcome::Overpayment { amount_due } => {
                tracing::error!(statement_id, intent_id = intent.id, %amount_due, "a charge above the amount due: refund the difference");
                ignored("overpayment")
            }
            PaymentOutcome::ReferenceReused => ignored("payment reference recorded for another statement"),
        };
    }
    if reference.kind == StatementKind::Agency {
        // Agency statements are not held; collection's own attempt records the failure and retries.
        return ignored("agency statement failure: collection retries it");
    }
    let reason = intent
        .last_payment_error
        .as_ref()
        .and_then(|e| e.decline_code.clone().or_else(|| e.code.clone()))
        .unwrap_or_else(|| "card_declined".to_owned());
    // The attempt collection charged under (its metadata): the failure is recorded once per attempt, so this
    // event after collection's own answer, or Stripe's redelivery of it, writes (and emits) nothing more.
    let attempt = intent.metadata.get("attempt").and_then(|a| a.parse::<u32>().ok()).filter(|a| *a > 0).unwrap_or(1);
    match store.mark_unpaid(&statement_id, UnpaidMark::Failed { attempt, reason: &reason }).await? {
        MarkOutcome::Marked => Ok(WebhookAnswer { received: true, result: "marked_failed", reason: Some(reason) }),
        MarkOutcome::StatementNotFound => ignored(format!("unknown statement {statement_id}")),
        MarkOutcome::NotPayable { status } => ignored(format!("statement is {status}")),
    }
}
