//! `POST /accounts/{accountId}/credit-purchases`: quote at the agency's prices, then one transaction.

use std::time::{Instant, SystemTime};

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use super::error::AppError;
use super::http::{authorize, idempotency_key, json_body, json_response};
use super::views::{BalancesView, PricingView, PurchaseAnswer, PurchaseView};
use super::{App, agency_of, load_account, pricing_of};
use crate::domain::idempotency::purchase_request_hash;
use crate::domain::{self, PurchaseRecord};
use crate::storage::{IdempotencyClaim, RecordOutcome, StoreError, StoredIdempotency};

/// What a purchase request came to, as the handler decided it: what metrics record, read from the same values
/// the response is built from (never parsed back out of the response).
#[derive(Debug, Clone, PartialEq)]
pub enum Purchased {
    /// A new purchase was written.
    Created(Box<PurchaseRecord>),
    /// A retry under an `Idempotency-Key` already used: the earlier purchase, nothing written.
    Replayed { account_id: String, purchase_id: String },
    /// Refused or failed: the problem's code and status.
    Refused { code: &'static str, status: u16 },
}

/// `POST /accounts/{accountId}/credit-purchases`
pub async fn purchase_credits(app: &App, request: Request) -> Response<Body> {
    purchase_credits_with_outcome(app, request).await.0
}

/// [`purchase_credits`], with the typed outcome its response was built from.
pub async fn purchase_credits_with_outcome(app: &App, request: Request) -> (Response<Body>, Purchased) {
    // The budget bounds the work up to the write. Once the write is known to have committed, the answer is a
    // 201 whatever the time left: only the optional balances read is cut short.
    let deadline = Instant::now() + app.settings.request_budget;
    match purchase(app, &request, deadline).await {
        Ok(answered) => answered,
        Err(error) => {
            let refused = Purchased::Refused { code: error.code(), status: error.status().as_u16() };
            (error.into_response(), refused)
        }
    }
}

/// At most this many fresh re-reads of the agency and its prices per request: one when a 409 would be built
/// from cached prices, one when the transaction finds the prices moved.
const MAX_REFRESHES: usize = 2;

async fn purchase(app: &App, request: &Request, deadline: Instant) -> Result<(Response<Body>, Purchased), AppError> {
    // Everything the request alone can tell is checked before any read or write.
    let account_id = authorize(request, &app.settings)?;
    let key = idempotency_key(request)?;
    let minimal = prefers_minimal_return(request);
    let body = json_body(request)?;
    let purchase_request = domain::parse_purchase_request(&body)?;
    let request_hash = purchase_request_hash(&account_id, &purchase_request);
    let answer = Answer { app, account_id: &account_id, minimal, deadline };

    let mut agency_id = before_write(deadline, agency_of(app, &account_id)).await?;
    let mut refreshes = 0;
    loop {
        let (pricing, from_cache) = before_write(deadline, pricing_of(app, &agency_id)).await?;
        let quote = domain::quote(&pricing, &purchase_request.quantities)?;
        if let Some(expected) = purchase_request.expected_total
            && expected != quote.total
        {
            // A retry of an earlier success must get that success back, not a 409 for today's prices.
            if let Some(key) = &key
                && let Some(stored) = before_write(deadline, async {
                    Ok(app.store.idempotency(&account_id, key, SystemTime::now()).await?)
                })
                .await?
            {
                return answer.replay(&request_hash, stored).await;
            }
            // A 409 must show what a purchase would be charged now, never an instance's stale cache.
            if from_cache && refreshes < MAX_REFRESHES {
                refreshes += 1;
                agency_id = refresh(app, &account_id, &agency_id, deadline).await?;
                continue;
            }
            return Err(AppError::PriceChanged {
                current_pricing: serde_json::to_value(PricingView::of(&account_id, &pricing))
                    .map_err(|e| AppError::Internal(format!("pricing view: {e}")))?,
                server_total: quote.total.to_string(),
                expected_total: domain::round_to_cents(expected).to_string(),
            });
        }

        let now = SystemTime::now();
        let record = PurchaseRecord::unbilled(
            uuid::Uuid::now_v7().to_string(),
            &account_id,
            &agency_id,
            now,
            quote,
            key.as_ref().map(|key| key.as_str().to_owned()),
        );
        let purchase_body = serde_json::to_string(&PurchaseView::of(&record)).expect("a purchase view serialises");
        let claim =
            key.as_ref().map(|key| IdempotencyClaim::new(key.clone(), request_hash.clone(), Some(purchase_body), now));

        let written =
            tokio::time::timeout_at(deadline.into(), app.store.record_purchase(&record, &pricing, claim.as_ref()));
        let outcome = match written.await {
            Ok(Ok(outcome)) => outcome,
            // Refused as malformed: nothing was written.
            Ok(Err(StoreError::Internal(why))) => return Err(AppError::Internal(why)),
            Ok(Err(StoreError::Unavailable(why))) => return Err(AppError::OutcomeUnknown(why)),
            Err(_) => return Err(AppError::OutcomeUnknown("request budget exhausted during the write".into())),
        };
        match outcome {
            RecordOutcome::Recorded => {
                tracing::info!(
                    purchase_id = %record.purchase_id,
                    account_id = %account_id,
                    total = %record.total,
                    "purchase recorded"
                );
                let mut response = answer.created(PurchaseView::of(&record)).await;
                let location = format!("/accounts/{account_id}/credit-purchases/{}", record.purchase_id);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Ok((response, Purchased::Created(Box::new(record))));
            }
            RecordOutcome::IdempotencyKeyTaken(stored) => return answer.replay(&request_hash, stored).await,
            RecordOutcome::AccountMissing => {
                app.cache.invalidate(&account_id, &agency_id);
                return Err(AppError::AccountNotFound);
            }
            RecordOutcome::PricingChanged if refreshes < MAX_REFRESHES => {
                tracing::info!(account_id = %account_id, "prices or agency changed since read; refreshing");
                refreshes += 1;
                agency_id = refresh(app, &account_id, &agency_id, deadline).await?;
            }
            RecordOutcome::PricingChanged => {
                return Err(AppError::Unavailable("prices kept changing during the purchase".into()));
            }
            RecordOutcome::OnHold { statement_id } => return Err(AppError::AccountOnHold { statement_id }),
            RecordOutcome::CreditLimitExceeded { available } => {
                return Err(AppError::CreditLimitExceeded {
                    // A line lowered below what is owed shows as nothing available, not a negative amount.
                    available: domain::round_to_cents(available.max(Decimal::ZERO)).to_string(),
                    requested: record.total.to_string(),
                });
            }
            RecordOutcome::AgencyCreditLimitExceeded => {
                tracing::warn!(account_id = %account_id, agency_id = %agency_id, "agency credit line exhausted");
                return Err(AppError::AgencyCreditLimitExceeded);
            }
        }
    }
}

/// Runs work that comes before the write within the budget: if the budget runs out, nothing was written.
async fn before_write<T>(deadline: Instant, work: impl Future<Output = Result<T, AppError>>) -> Result<T, AppError> {
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(result) => result,
        Err(_) => Err(AppError::Unavailable("request budget exhausted before the purchase was written".into())),
    }
}

/// Forgets the cached agency and prices and reads the account's agency again.
async fn refresh(app: &App, account_id: &str, agency_id: &str, deadline: Instant) -> Result<String, AppError> {
    app.cache.invalidate(account_id, agency_id);
    before_write(deadline, agency_of(app, account_id)).await
}

/// How a committed purchase is answered: always 201.
struct Answer<'a> {
    app: &'a App,
    account_id: &'a str,
    minimal: bool,
    deadline: Instant,
}

impl Answer<'_> {
    /// The 201 after a committed write, with the balances unless the caller asked for the minimal answer. It
    /// never turns into an error: if the balances cannot be read in the time left, the purchase stands and the
    /// answer simply omits them (the dashboard then asks `GET /balances`).
    async fn created(&self, purchase: impl Serialize) -> Response<Body> {
        if self.minimal {
            // One DynamoDB call in all: the caller asked not to pay for the balances read.
            let mut response = json_response(StatusCode::CREATED, &PurchaseAnswer { purchase, balances: None });
            response.headers_mut().insert("preference-applied", HeaderValue::from_static("return=minimal"));
            return response;
        }
        let read = tokio::time::timeout_at(self.deadline.into(), load_account(self.app, self.account_id)).await;
        let account = match read {
            Ok(Ok(account)) => Some(account),
            Ok(Err(err)) => {
                tracing::warn!(account_id = %self.account_id, error = ?err, "purchase recorded but balances unreadable");
                None
            }
            Err(_) => {
                tracing::warn!(account_id = %self.account_id, "purchase recorded; no time left to read the balances");
                None
            }
        };
        let balances = account.as_ref().map(|account| BalancesView(&account.balances));
        json_response(StatusCode::CREATED, &PurchaseAnswer { purchase, balances })
    }

    /// Answers a request whose `Idempotency-Key` this account already used: the purchase it made, as it is now
    /// (billed or not), or 422 for another request under the same key.
    async fn replay(
        &self,
        request_hash: &str,
        stored: StoredIdempotency,
    ) -> Result<(Response<Body>, Purchased), AppError> {
        if stored.account_id != self.account_id || stored.request_hash != request_hash {
            return Err(AppError::IdempotencyKeyReused);
        }
        // Committed: from here the answer is a 201. The purchase as first answered stands in if it cannot be read.
        let current = tokio::time::timeout_at(
            self.deadline.into(),
            self.app.store.purchase(self.account_id, &stored.purchase_id),
        )
        .await;
        let mut response = match current {
            Ok(Ok(Some(record))) => self.created(PurchaseView::of(&record)).await,
            _ => {
                let first: Value = serde_json::from_str(stored.purchase_body.as_deref().unwrap_or_default())
                    .map_err(|e| AppError::Internal(format!("stored purchase body: {e}")))?;
                self.created(first).await
            }
        };
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        let replayed = Purchased::Replayed { account_id: stored.account_id, purchase_id: stored.purchase_id };
        Ok((response, replayed))
    }
}

/// RFC 7240 `Prefer: return=minimal`: the caller does not need the balances in the answer.
fn prefers_minimal_return(request: &Request) -> bool {
    request.headers().get_all("prefer").iter().any(|value| {
        value.to_str().unwrap_or("").split(',').any(|token| token.trim().eq_ignore_ascii_case("return=minimal"))
    })
}
