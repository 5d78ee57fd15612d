//! The `consume-credits` entry point, invoked directly (Lambda `Invoke`, IAM-authorised) by the platform's own
//! services, never through the client API and never with a client token:
//!
//! - `{"accountId", "consumptionId", "quantities": {"audience": 3}, "reason", "reference"?}` spends credits:
//!   every type's balance goes down only if it stays at or above zero, and a `consumption` ledger entry is
//!   written, in one transaction. Exactly once per account and `consumptionId` (the caller's own id): a retry
//!   returns the first result (`replayed: true`), the same id with another body is refused. The answer also says
//!   what the account's rules made it do (`alerts`, `topup` or `topupRefused`).
//! - `{"accountId", "release": "<consumptionId>", "reason"}` puts that consumption's credits back, once, with a
//!   `release` ledger entry; a second release returns the first (`replayed: true`).
//!
//! Refusals are errors with a meaningful `errorType` ([`ConsumptionError::error_type`]); a refused request
//! writes nothing.
//!
//! A consumption also decides the account's rules in its own transaction (issue #25): `credits.low` when a
//! balance crosses its threshold, an auto top-up bought with it, or that top-up's refusal ([`attempts`]).

mod attempts;
mod facts;

pub use facts::{AccountFactsCache, Consumer, ConsumptionSettings};

use std::collections::BTreeMap;
use std::time::SystemTime;

use lambda_http::lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::inputs::{AccountId, ExternalId, Text};
use crate::domain::ledger::{Consumption, MAX_QUANTITY, Quantities, Shortfall};
use crate::domain::{CreditType, time};
use crate::storage::{ConsumptionReceipt, ReleaseOutcome, ReleaseReceipt, StoreError};
use attempts::Consumed;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsumptionError {
    #[error("invalid consumption event: {0}")]
    InvalidEvent(String),
    #[error("no such account: {0}")]
    AccountNotFound(String),
    #[error("not enough credits: {}", describe_shortfalls(.0))]
    InsufficientCredits(Vec<Shortfall>),
    #[error("consumption id {0} was already used with another request")]
    ConsumptionIdReused(String),
    #[error("no consumption {0} on this account")]
    ConsumptionNotFound(String),
    #[error("consumption not recorded: {0}")]
    Storage(#[from] StoreError),
}

fn describe_shortfalls(short: &[Shortfall]) -> String {
    short
        .iter()
        .map(|s| format!("{} short by {} (balance {}, requested {})", s.credit_type, s.short, s.balance, s.requested))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConsumptionError {
    pub fn error_type(&self) -> &'static str {
        match self {
            ConsumptionError::InvalidEvent(_) => "InvalidConsumptionEvent",
            ConsumptionError::AccountNotFound(_) => "AccountNotFound",
            ConsumptionError::InsufficientCredits(_) => "InsufficientCredits",
            ConsumptionError::ConsumptionIdReused(_) => "ConsumptionIdReused",
            ConsumptionError::ConsumptionNotFound(_) => "ConsumptionNotFound",
            ConsumptionError::Storage(StoreError::Unavailable(_)) => "StorageUnavailable",
            ConsumptionError::Storage(StoreError::Internal(_)) => "StorageError",
        }
    }
}

impl From<ConsumptionError> for Diagnostic {
    fn from(error: ConsumptionError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

/// What `consume-credits` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum ConsumptionAnswer {
    #[serde(rename = "consumed")]
    Consumed {
        replayed: bool,
        #[serde(flatten)]
        receipt: ConsumptionReceipt,
    },
    #[serde(rename = "released")]
    Released {
        replayed: bool,
        #[serde(flatten)]
        receipt: ReleaseReceipt,
    },
}

/// A consumption event, validated before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumptionEvent {
    Consume(Consumption),
    Release { account_id: String, consumption_id: String, reason: String },
}

/// The event as sent: a consumption's fields or a release's, each with its own rule; [`parse_consumption_event`]
/// tells the forms apart. serde refuses unknown fields and wrong types with its own messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConsumptionEventBody {
    account_id: AccountId,
    reason: Text,
    // A consumption
    /// The caller's own id: exactly once per account and id.
    consumption_id: Option<ExternalId>,
    quantities: Option<BTreeMap<String, u64>>,
    reference: Option<Text>,
    // A release: the consumption id to give back
    release: Option<ExternalId>,
}

pub fn parse_consumption_event(event: &Value) -> Result<ConsumptionEvent, ConsumptionError> {
    let invalid = |why: String| ConsumptionError::InvalidEvent(why);
    let body = ConsumptionEventBody::deserialize(event).map_err(|e| invalid(e.to_string()))?;
    let account_id = body.account_id.into_string();
    let reason = body.reason.into_string();
    if let Some(release) = body.release {
        if body.consumption_id.is_some() || body.quantities.is_some() || body.reference.is_some() {
            return Err(invalid("a release carries only `accountId`, `release` and `reason`".into()));
        }
        return Ok(ConsumptionEvent::Release { account_id, consumption_id: release.into_string(), reason });
    }
    let consumption_id = body.consumption_id.ok_or_else(|| invalid("`consumptionId` is required".into()))?;
    let raw =
        body.quantities.ok_or_else(|| invalid("`quantities` must be an object of credit type to quantity".into()))?;
    let mut quantities = Quantities::new();
    for (name, quantity) in raw {
        let credit_type =
            CreditType::parse(&name).ok_or_else(|| invalid(format!("`quantities`: unknown credit type `{name}`")))?;
        if quantity > MAX_QUANTITY {
            return Err(invalid(format!("`quantities.{name}` must be a whole number from 0 to {MAX_QUANTITY}")));
        }
        if quantity > 0 {
            quantities.insert(credit_type, quantity);
        }
    }
    if quantities.is_empty() {
        return Err(invalid("`quantities` must ask for at least one credit".into()));
    }
    Ok(ConsumptionEvent::Consume(Consumption {
        account_id,
        consumption_id: consumption_id.into_string(),
        quantities,
        reason,
        reference: body.reference.map(Text::into_string),
    }))
}

/// The `consume-credits` function.
pub async fn consume_credits(
    consumer: &Consumer,
    event: LambdaEvent<Value>,
) -> Result<ConsumptionAnswer, ConsumptionError> {
    consumption_event(consumer, &event.payload).await
}

/// One consumption event, from its JSON payload.
pub async fn consumption_event(consumer: &Consumer, payload: &Value) -> Result<ConsumptionAnswer, ConsumptionError> {
    let answer = match parse_consumption_event(payload) {
        // Boxed: the plan-and-transact loop's future is deep; the Lambda runtime's own future stays shallow.
        Ok(event) => Box::pin(apply(consumer, event)).await,
        Err(error) => Err(error),
    };
    match &answer {
        Err(error) => tracing::warn!(error = %error, error_type = error.error_type(), "consumption event refused"),
        Ok(ConsumptionAnswer::Consumed { replayed, receipt }) => {
            tracing::info!(replayed, consumption_id = %receipt.consumption_id, "credits consumed")
        }
        Ok(ConsumptionAnswer::Released { replayed, receipt }) => {
            tracing::info!(replayed, consumption_id = %receipt.consumption_id, "consumption released")
        }
    }
    answer
}

async fn apply(consumer: &Consumer, event: ConsumptionEvent) -> Result<ConsumptionAnswer, ConsumptionError> {
    let entry_id = uuid::Uuid::now_v7().to_string();
    let now = SystemTime::now();
    match event {
        ConsumptionEvent::Consume(consumption) => {
            match attempts::consume(consumer, &consumption, &entry_id, now).await? {
                Consumed::Done { replayed, receipt } => Ok(ConsumptionAnswer::Consumed { replayed, receipt: *receipt }),
                Consumed::IdReused => Err(ConsumptionError::ConsumptionIdReused(consumption.consumption_id)),
                Consumed::AccountMissing => Err(ConsumptionError::AccountNotFound(consumption.account_id)),
                Consumed::Insufficient(short) => Err(ConsumptionError::InsufficientCredits(short)),
            }
        }
        ConsumptionEvent::Release { account_id, consumption_id, reason } => {
            let at = time::timestamp(now);
            match consumer.store.release(&account_id, &consumption_id, &reason, &entry_id, &at).await? {
                ReleaseOutcome::Released(receipt) => {
                    // The credits are back: what this container remembers of the account is now low by that much.
                    if let Some(mut facts) = consumer.facts.get(&account_id) {
                        for (credit_type, quantity) in &receipt.quantities {
                            let balance = facts.balances.0.entry(*credit_type).or_default();
                            *balance = balance.saturating_add(*quantity);
                        }
                        consumer.facts.put(&account_id, facts);
                    }
                    Ok(ConsumptionAnswer::Released { replayed: false, receipt })
                }
                ReleaseOutcome::Replayed(receipt) => Ok(ConsumptionAnswer::Released { replayed: true, receipt }),
                ReleaseOutcome::ConsumptionNotFound => Err(ConsumptionError::ConsumptionNotFound(consumption_id)),
                ReleaseOutcome::AccountMissing => Err(ConsumptionError::AccountNotFound(account_id)),
                ReleaseOutcome::AgencyChanged(_) => {
                    Err(ConsumptionError::Storage(StoreError::Internal("a release answered an agency change".into())))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn consumption_events_are_strict() {
        let consume = parse_consumption_event(&json!({
            "accountId": "acct-a", "consumptionId": "job-1", "quantities": {"audience": 3, "pixel": 0},
            "reason": "audience build", "reference": "job/1"
        }))
        .unwrap();
        assert_eq!(
            consume,
            ConsumptionEvent::Consume(Consumption {
                account_id: "acct-a".into(),
                consumption_id: "job-1".into(),
                quantities: Quantities::from([(CreditType::Audience, 3)]),
                reason: "audience build".into(),
                reference: Some("job/1".into()),
            })
        );
        let release = parse_consumption_event(&json!({"accountId": "acct-a", "release": "job-1", "reason": "failed"}));
        assert_eq!(
            release.unwrap(),
            ConsumptionEvent::Release {
                account_id: "acct-a".into(),
                consumption_id: "job-1".into(),
                reason: "failed".into()
            }
        );
        for bad in [
            json!([]),
            json!({}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": 0}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": -1}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": 1.5}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"gold": 1}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": 1_000_001}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": 1}}),
            json!({"accountId": "acct-a", "consumptionId": "a b", "quantities": {"audience": 1}, "reason": "r"}),
            json!({"accountId": "a#b", "consumptionId": "c", "quantities": {"audience": 1}, "reason": "r"}),
            json!({"accountId": "acct-a", "consumptionId": "c", "quantities": {"audience": 1}, "reason": "r", "x": 1}),
            json!({"accountId": "acct-a", "release": "c"}),
            json!({"accountId": "acct-a", "release": "c", "reason": "r", "quantities": {}}),
        ] {
            let error = parse_consumption_event(&bad).expect_err(&bad.to_string());
            assert_eq!(error.error_type(), "InvalidConsumptionEvent", "{bad}");
        }
    }

    #[test]
    fn a_shortfall_names_the_type_and_the_amount() {
        let error = ConsumptionError::InsufficientCredits(vec![Shortfall {
            credit_type: CreditType::Audience,
            balance: 1,
            requested: 3,
            short: 2,
        }]);
        assert_eq!(error.error_type(), "InsufficientCredits");
        assert_eq!(error.to_string(), "not enough credits: audience short by 2 (balance 1, requested 3)");
    }
}
