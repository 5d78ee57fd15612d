//! `POST /accounts/{accountId}/credit-purchases`: quote at the agency's prices, then one transaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::AppError;
use super::http::{authorize, idempotency_key, json_body, json_response};
use super::{App, agency_of, balances_map, load_account, pricing_body, pricing_of, purchase_view, respond};
use crate::domain::{self, PurchaseRecord, PurchaseRequest};
use crate::storage::{IdempotencyClaim, RecordOutcome, StoredIdempotency};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `POST /accounts/{accountId}/credit-purchases`
pub async fn purchase_credits(app: &App, request: Request) -> Response<Body> {
    respond(app, purchase(app, &request)).await
}

async fn purchase(app: &App, request: &Request) -> Result<Response<Body>, AppError> {
    // Everything the request alone can tell is checked before any read or write.
    let account_id = authorize(request, &app.settings.account_claim)?;
    let key = idempotency_key(request)?;
    let minimal = prefers_minimal_return(request);
    let body = json_body(request)?;
    let purchase_request = domain::parse_purchase_request(&body)?;
    let request_hash = request_hash(&account_id, &purchase_request);

    let mut agency_id = agency_of(app, &account_id).await?;
    // One refresh is allowed when prices or the agency move between our read (or cache) and our write.
    for attempt in 0..2 {
        let pricing = pricing_of(app, &agency_id).await?;
        let quote = domain::quote(&pricing, &purchase_request.quantities);
        if let Some(expected) = purchase_request.expected_total
            && expected != quote.total
        {
            // A retry of an earlier success must get that success back, not a 409 for today's prices.
            if let Some(key) = &key
                && let Some(stored) = app.store.idempotency(key, epoch_seconds(SystemTime::now())).await?
            {
                return replay(app, &account_id, &request_hash, stored, minimal).await;
            }
            return Err(AppError::PriceChanged {
                current_pricing: pricing_body(&account_id, &pricing),
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
            key.clone(),
        );
        let purchase_view = purchase_view(&record);
        let claim = key.as_ref().map(|key| IdempotencyClaim {
            key: key.clone(),
            request_hash: request_hash.clone(),
            purchase_body: purchase_view.to_string(),
            now_epoch_seconds: epoch_seconds(now),
            expires_at_epoch_seconds: epoch_seconds(now + IDEMPOTENCY_TTL),
        });

        match app.store.record_purchase(&record, &pricing, claim.as_ref()).await? {
            RecordOutcome::Recorded => {
                tracing::info!(
                    purchase_id = %record.purchase_id,
                    account_id = %account_id,
                    total = %record.total,
                    "purchase recorded"
                );
                let mut response = if minimal {
                    // One DynamoDB call in all: the caller asked not to pay for the balances read.
                    minimal_response(json!({"purchase": purchase_view}))
                } else {
                    created_response(app, &account_id, purchase_view).await
                };
                let location = format!("/accounts/{account_id}/credit-purchases/{}", record.purchase_id);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Ok(response);
            }
            RecordOutcome::IdempotencyKeyTaken(stored) => {
                return replay(app, &account_id, &request_hash, stored, minimal).await;
            }
            RecordOutcome::AccountMissing => {
                app.cache.invalidate(&account_id, &agency_id);
                return Err(AppError::AccountNotFound);
            }
            RecordOutcome::PricingChanged if attempt == 0 => {
                tracing::info!(account_id = %account_id, "prices or agency changed since read; refreshing");
                app.cache.invalidate(&account_id, &agency_id);
                agency_id = agency_of(app, &account_id).await?;
            }
            RecordOutcome::PricingChanged => break,
        }
    }
    Err(AppError::Unavailable("prices kept changing during the purchase".into()))
}

/// Answers a request whose `Idempotency-Key` was already used: the first answer again, or 422.
async fn replay(
    app: &App,
    account_id: &str,
    request_hash: &str,
    stored: StoredIdempotency,
    minimal: bool,
) -> Result<Response<Body>, AppError> {
    if stored.account_id != account_id || stored.request_hash != request_hash {
        return Err(AppError::IdempotencyKeyReused);
    }
    let purchase: Value = serde_json::from_str(&stored.purchase_body)
        .map_err(|e| AppError::Internal(format!("stored purchase body: {e}")))?;
    // Balances are read now: they include this purchase and anything since.
    let mut response = if minimal {
        minimal_response(json!({"purchase": purchase}))
    } else {
        created_response(app, account_id, purchase).await
    };
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// RFC 7240 `Prefer: return=minimal`: the caller does not need the balances in the answer.
fn prefers_minimal_return(request: &Request) -> bool {
    request.headers().get_all("prefer").iter().any(|value| {
        value.to_str().unwrap_or("").split(',').any(|token| token.trim().eq_ignore_ascii_case("return=minimal"))
    })
}

/// The 201 after a committed write. It never turns into an error: if the balances cannot be read just now,
/// the purchase stands and the answer simply omits them (the dashboard then asks `GET /balances`).
async fn created_response(app: &App, account_id: &str, purchase: Value) -> Response<Body> {
    match load_account(app, account_id).await {
        Ok(account) => json_response(
            StatusCode::CREATED,
            &json!({"purchase": purchase, "balances": balances_map(&account.balances)}),
        ),
        Err(err) => {
            tracing::warn!(account_id = %account_id, error = ?err, "purchase recorded but balances unreadable");
            json_response(StatusCode::CREATED, &json!({"purchase": purchase}))
        }
    }
}

fn minimal_response(body: Value) -> Response<Body> {
    let mut response = json_response(StatusCode::CREATED, &body);
    response.headers_mut().insert("preference-applied", HeaderValue::from_static("return=minimal"));
    response
}

/// Binds a key to the account and the request's meaning, not its bytes.
fn request_hash(account_id: &str, request: &PurchaseRequest) -> String {
    hex::encode(Sha256::digest(format!("{account_id}\n{}", request.canonical())))
}

fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
