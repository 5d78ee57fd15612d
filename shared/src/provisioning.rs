//! The provisioning entry point (`provision-account`, invoked with IAM by the parent platform at sign-up; never
//! an API route): creates or updates an account or an agency with its Stripe customer, and moves a client to
//! another agency. Each request carries a `requestId` and is applied exactly once: the change and the request's
//! record are one transaction ([`Store::write_account`] / [`Store::write_agency`], the seed loader's own writes);
//! the same request again answers `replayed` and writes nothing, another request under a used id is refused.
//!
//! Events (every field checked, unknown fields refused):
//! - `{"action": "upsertAccount", "requestId", "accountId", "agencyId", "name"?, "stripeCustomerId"?}`: a new
//!   account, or one of that agency already (a change of agency is a `moveClient`);
//! - `{"action": "upsertAgency", "requestId", "agencyId", "stripeCustomerId"?}`: the agency's line (created at
//!   the default ceiling at cost) and the customer its statements at cost are charged to;
//! - `{"action": "moveClient", "requestId", "accountId", "toAgencyId"}`: an existing account to another agency
//!   (purchases it made under the old agency stay that agency's, as billing keeps them per agency).
//!
//! Refusals are errors with their own `errorType` ([`ProvisionError::error_type`]) and write nothing.

use std::time::SystemTime;

use lambda_http::lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::credit::DEFAULT_AGENCY_CEILING_AT_COST;
use crate::domain::{is_valid_account_id, is_valid_stripe_customer_id, time};
use crate::storage::{AccountRule, AccountWrite, ProvisionOutcome, ProvisionRequestRecord, Store, StoreError};

/// A provisioning request, as the parent platform sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum ProvisionRequest {
    UpsertAccount {
        request_id: String,
        account_id: String,
        agency_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stripe_customer_id: Option<String>,
    },
    UpsertAgency {
        request_id: String,
        agency_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stripe_customer_id: Option<String>,
    },
    MoveClient {
        request_id: String,
        account_id: String,
        to_agency_id: String,
    },
}

impl ProvisionRequest {
    pub fn request_id(&self) -> &str {
        match self {
            ProvisionRequest::UpsertAccount { request_id, .. }
            | ProvisionRequest::UpsertAgency { request_id, .. }
            | ProvisionRequest::MoveClient { request_id, .. } => request_id,
        }
    }
}

/// The answer: what was done, and whether it was done now or by an earlier delivery of the same request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionAnswer {
    pub request_id: String,
    /// `applied` now, or `replayed`: the same request was applied before and nothing was written.
    pub result: &'static str,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProvisionError {
    #[error("invalid provisioning request: {0}")]
    InvalidRequest(String),
    #[error("request id {0:?} was already used for another request")]
    RequestIdReused(String),
    #[error("account {0:?} does not exist")]
    AccountNotFound(String),
    #[error("account {0:?} belongs to another agency: move it with moveClient")]
    AccountInOtherAgency(String),
    #[error("agency {0:?} does not exist: provision it with upsertAgency first")]
    AgencyNotFound(String),
    #[error("provisioning could not reach the table: {0}")]
    Storage(#[from] StoreError),
}

impl ProvisionError {
    pub fn error_type(&self) -> &'static str {
        match self {
            ProvisionError::InvalidRequest(_) => "InvalidProvisionRequest",
            ProvisionError::RequestIdReused(_) => "RequestIdReused",
            ProvisionError::AccountNotFound(_) => "AccountNotFound",
            ProvisionError::AccountInOtherAgency(_) => "AccountInOtherAgency",
            ProvisionError::AgencyNotFound(_) => "AgencyNotFound",
            ProvisionError::Storage(StoreError::Unavailable(_)) => "StorageUnavailable",
            ProvisionError::Storage(StoreError::Internal(_)) => "StorageError",
        }
    }
}

impl From<ProvisionError> for Diagnostic {
    fn from(error: ProvisionError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

/// Request ids: the caller's own (a UUID, a sign-up id), bounded and printable so they key an item.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Parses and checks one event: only a JSON object of one of the three shapes, every id well formed.
pub fn parse_provision_request(payload: &Value) -> Result<ProvisionRequest, ProvisionError> {
    let invalid = |why: String| ProvisionError::InvalidRequest(why);
    // serde would take a struct from a JSON array too: only an object is a request.
    if !payload.is_object() {
        return Err(invalid("expected a JSON object".to_owned()));
    }
    let request: ProvisionRequest = serde_json::from_value(payload.clone()).map_err(|e| invalid(e.to_string()))?;
    if !valid_request_id(request.request_id()) {
        return Err(invalid("`requestId` must be 1-128 letters, digits, '-', '_', '.' or ':'".to_owned()));
    }
    let id = |field: &str, value: &str| {
        if is_valid_account_id(value) {
            Ok(())
        } else {
            Err(invalid(format!("`{field}` {value:?} must be 1-64 letters, digits, '-' or '_'")))
        }
    };
    let customer = |value: &Option<String>| match value {
        Some(value) if !is_valid_stripe_customer_id(value) => Err(invalid(format!(
            "`stripeCustomerId` {value:?} must be a Stripe customer id (cus_ and letters or digits)"
        ))),
        _ => Ok(()),
    };
    match &request {
        ProvisionRequest::UpsertAccount { account_id, agency_id, name, stripe_customer_id, .. } => {
            id("accountId", account_id)?;
            id("agencyId", agency_id)?;
            customer(stripe_customer_id)?;
            if let Some(name) = name
                && (name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control))
            {
                return Err(invalid("`name` must be 1-200 characters without control characters".to_owned()));
            }
        }
        ProvisionRequest::UpsertAgency { agency_id, stripe_customer_id, .. } => {
            id("agencyId", agency_id)?;
            customer(stripe_customer_id)?;
        }
        ProvisionRequest::MoveClient { account_id, to_agency_id, .. } => {
            id("accountId", account_id)?;
            id("toAgencyId", to_agency_id)?;
        }
    }
    Ok(request)
}

/// The `provision-account` function.
pub async fn provision_account(store: &Store, event: LambdaEvent<Value>) -> Result<ProvisionAnswer, ProvisionError> {
    provision(store, &event.payload, SystemTime::now()).await
}

/// One provisioning event, received at `now`.
pub async fn provision(store: &Store, payload: &Value, now: SystemTime) -> Result<ProvisionAnswer, ProvisionError> {
    let answer = apply(store, payload, now).await;
    match &answer {
        Ok(answer) => tracing::info!(request_id = %answer.request_id, result = answer.result, "provisioning"),
        Err(error) => tracing::warn!(error_type = error.error_type(), %error, "provisioning refused"),
    }
    answer
}

async fn apply(store: &Store, payload: &Value, now: SystemTime) -> Result<ProvisionAnswer, ProvisionError> {
    let request = parse_provision_request(payload)?;
    // The request as understood (canonical: field order and defaults do not make two requests differ).
    let canonical = serde_json::to_string(&request).map_err(|e| StoreError::Internal(e.to_string()))?;
    let received_at = time::timestamp(now);
    let record = |account_rule| ProvisionRequestRecord {
        request_id: request.request_id(),
        request: &canonical,
        received_at: &received_at,
        account_rule,
    };
    let (outcome, account, agency) = match &request {
        ProvisionRequest::UpsertAccount { account_id, agency_id, name, stripe_customer_id, .. } => {
            let write = AccountWrite {
                account_id,
                agency_id,
                name: name.as_deref(),
                stripe_customer_id: stripe_customer_id.as_deref(),
            };
            let outcome = store.write_account(&write, Some(&record(AccountRule::NewOrSameAgency))).await?;
            (outcome, account_id.as_str(), agency_id.as_str())
        }
        ProvisionRequest::MoveClient { account_id, to_agency_id, .. } => {
            let write = AccountWrite { account_id, agency_id: to_agency_id, name: None, stripe_customer_id: None };
            let outcome = store.write_account(&write, Some(&record(AccountRule::Exists))).await?;
            (outcome, account_id.as_str(), to_agency_id.as_str())
        }
        ProvisionRequest::UpsertAgency { agency_id, stripe_customer_id, .. } => {
            let outcome = store
                .write_agency(
                    agency_id,
                    stripe_customer_id.as_deref(),
                    DEFAULT_AGENCY_CEILING_AT_COST,
                    Some(&record(AccountRule::Exists)),
                )
                .await?;
            (outcome, "", agency_id.as_str())
        }
    };
    let request_id = request.request_id().to_owned();
    match outcome {
        ProvisionOutcome::Applied => Ok(ProvisionAnswer { request_id, result: "applied" }),
        ProvisionOutcome::Replayed => Ok(ProvisionAnswer { request_id, result: "replayed" }),
        ProvisionOutcome::RequestIdReused => Err(ProvisionError::RequestIdReused(request_id)),
        ProvisionOutcome::AccountMissing => Err(ProvisionError::AccountNotFound(account.to_owned())),
        ProvisionOutcome::AccountInOtherAgency => Err(ProvisionError::AccountInOtherAgency(account.to_owned())),
        ProvisionOutcome::AgencyMissing => Err(ProvisionError::AgencyNotFound(agency.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_shape_parses_and_unknown_fields_or_bad_ids_are_refused() {
        let good = json!({"action": "upsertAccount", "requestId": "r-1", "accountId": "acct-a", "agencyId": "agency-a",
                          "name": "A", "stripeCustomerId": "cus_A1"});
        assert!(matches!(parse_provision_request(&good), Ok(ProvisionRequest::UpsertAccount { .. })));
        let agency = json!({"action": "upsertAgency", "requestId": "r-2", "agencyId": "agency-a"});
        assert!(matches!(parse_provision_request(&agency), Ok(ProvisionRequest::UpsertAgency { .. })));
        let moved =
            json!({"action": "moveClient", "requestId": "r-3", "accountId": "acct-a", "toAgencyId": "agency-b"});
        assert!(matches!(parse_provision_request(&moved), Ok(ProvisionRequest::MoveClient { .. })));
        for bad in [
            json!([]),
            json!("upsertAccount"),
            json!({"action": "upsertAccount", "requestId": "r", "accountId": "a", "agencyId": "b", "extra": 1}),
            json!({"action": "moveClient", "requestId": "r", "accountId": "a", "toAgencyId": "b", "agencyId": "c"}),
            json!({"action": "deleteAccount", "requestId": "r", "accountId": "a"}),
            json!({"requestId": "r", "accountId": "a", "agencyId": "b"}),
            json!({"action": "upsertAccount", "accountId": "a", "agencyId": "b"}),
            json!({"action": "upsertAccount", "requestId": "", "accountId": "a", "agencyId": "b"}),
            json!({"action": "upsertAccount", "requestId": "r r", "accountId": "a", "agencyId": "b"}),
            json!({"action": "upsertAccount", "requestId": "r", "accountId": "a/b", "agencyId": "b"}),
            json!({"action": "upsertAccount", "requestId": "r", "accountId": "a", "agencyId": "b", "stripeCustomerId": "cu_1"}),
            json!({"action": "upsertAccount", "requestId": "r", "accountId": "a", "agencyId": "b", "name": " "}),
            json!({"action": "upsertAgency", "requestId": "r", "agencyId": "b", "stripeCustomerId": 7}),
            json!({"action": "moveClient", "requestId": "r", "accountId": "a", "toAgencyId": ""}),
        ] {
            let error = parse_provision_request(&bad).unwrap_err();
            assert_eq!(error.error_type(), "InvalidProvisionRequest", "{bad}: {error}");
        }
    }
}
