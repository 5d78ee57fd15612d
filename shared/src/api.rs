//! The HTTP handlers: plain async functions from a `Request` to a `Response`, callable from tests.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cache::PricingCache;
use crate::domain::{
    self, Balances, CURRENCY, CreditType, EffectivePricing, PriceSource, PurchaseRequest, format_rate,
};
use crate::error::AppError;
use crate::http::{authorize, idempotency_key, json_body, json_response};
use crate::storage::{Account, IdempotencyClaim, PurchaseRecord, RecordOutcome, Store};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings read once at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The JWT claim holding the caller's account id.
    pub account_claim: String,
    /// A request gives up (503) after this long, safely inside the function timeout.
    pub request_budget: Duration,
    /// How long an instance trusts its cached account → agency and agency → prices (zero: no cache).
    /// Purchases re-check both inside their transaction; `GET /pricing` may show a price this old.
    pub pricing_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            account_claim: "custom:account_id".into(),
            request_budget: Duration::from_secs(7),
            pricing_cache_ttl: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// `ACCOUNT_ID_CLAIM`, `REQUEST_BUDGET_MS` and `PRICING_CACHE_TTL_SECONDS` override the defaults.
    pub fn from_env() -> Settings {
        let mut settings = Settings::default();
        if let Ok(claim) = std::env::var("ACCOUNT_ID_CLAIM")
            && !claim.is_empty()
        {
            settings.account_claim = claim;
        }
        if let Some(ms) = std::env::var("REQUEST_BUDGET_MS").ok().and_then(|v| v.parse().ok()) {
            settings.request_budget = Duration::from_millis(ms);
        }
        if let Some(seconds) = std::env::var("PRICING_CACHE_TTL_SECONDS").ok().and_then(|v| v.parse().ok()) {
            settings.pricing_cache_ttl = Duration::from_secs(seconds);
        }
        settings
    }
}

/// Everything a handler needs, built once per Lambda instance.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub settings: Settings,
    pub cache: Arc<PricingCache>,
}

impl App {
    pub fn new(store: Store, settings: Settings) -> App {
        let cache = Arc::new(PricingCache::new(settings.pricing_cache_ttl));
        App { store, settings, cache }
    }
}

/// Runs a handler body within the request budget and maps its error in the one place errors become HTTP.
pub(crate) async fn respond(app: &App, work: impl Future<Output = Result<Response<Body>, AppError>>) -> Response<Body> {
    let outcome = match tokio::time::timeout(app.settings.request_budget, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AppError::Unavailable("request budget exhausted".into())),
    };
    outcome.unwrap_or_else(AppError::into_response)
}

/// `GET /accounts/{accountId}/pricing`
pub async fn get_pricing(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings.account_claim)?;
        let agency_id = agency_of(app, &account_id).await?;
        let pricing = pricing_of(app, &agency_id).await?;
        Ok(json_response(StatusCode::OK, &pricing_body(&account_id, &pricing)))
    })
    .await
}

/// `GET /accounts/{accountId}/balances`
pub async fn get_balances(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings.account_claim)?;
        let account = load_account(app, &account_id).await?;
        Ok(json_response(StatusCode::OK, &balances_body(&account_id, &account.balances)))
    })
    .await
}

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
    stored: crate::storage::StoredIdempotency,
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

/// Reads the account (always fresh) and remembers its agency.
pub(crate) async fn load_account(app: &App, account_id: &str) -> Result<Account, AppError> {
    let account = app.store.account(account_id).await?.ok_or(AppError::AccountNotFound)?;
    app.cache.agency_of_account.put(account_id.to_owned(), account.agency_id.clone());
    Ok(account)
}

/// The account's agency, from the cache when fresh enough.
async fn agency_of(app: &App, account_id: &str) -> Result<String, AppError> {
    match app.cache.agency_of_account.get(&account_id.to_owned()) {
        Some(agency_id) => Ok(agency_id),
        None => Ok(load_account(app, account_id).await?.agency_id),
    }
}

/// The agency's effective prices, from the cache when fresh enough.
async fn pricing_of(app: &App, agency_id: &str) -> Result<EffectivePricing, AppError> {
    if let Some(pricing) = app.cache.pricing_of_agency.get(&agency_id.to_owned()) {
        return Ok(pricing);
    }
    let (default, agency) = app.store.pricing(agency_id).await?;
    let pricing = domain::resolve_pricing(agency_id, &default, agency.as_ref())?;
    app.cache.pricing_of_agency.put(agency_id.to_owned(), pricing.clone());
    Ok(pricing)
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
    let digest = Sha256::digest(format!("{account_id}\n{}", request.canonical()));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn epoch_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The client's view of its prices: never the agency's cost.
pub fn pricing_body(account_id: &str, pricing: &EffectivePricing) -> Value {
    let prices: Vec<Value> = pricing
        .rates
        .iter()
        .map(|rate| {
            json!({
                "creditType": rate.credit_type.as_str(),
                "pricePerCredit": format_rate(rate.price),
                "source": match rate.price_source { PriceSource::Agency => "agency", PriceSource::Default => "default" },
            })
        })
        .collect();
    json!({"accountId": account_id, "currency": CURRENCY, "prices": prices})
}

/// The client's view of a purchase: lines at price, no costs.
pub fn purchase_view(record: &PurchaseRecord) -> Value {
    let lines: Vec<Value> = record
        .lines
        .iter()
        .map(|line| {
            json!({
                "creditType": line.credit_type.as_str(),
                "quantity": line.quantity,
                "unitPrice": format_rate(line.unit_price),
                "subtotal": line.subtotal.to_string(),
            })
        })
        .collect();
    json!({
        "purchaseId": record.purchase_id,
        "accountId": record.account_id,
        "createdAt": record.created_at,
        "currency": record.currency,
        "lines": lines,
        "total": record.total.to_string(),
        "billedToClient": record.billed_to_client,
        "billedToAgency": record.billed_to_agency,
    })
}

fn balances_map(balances: &Balances) -> Value {
    let map: serde_json::Map<String, Value> =
        CreditType::ALL.into_iter().map(|t| (t.as_str().to_owned(), json!(balances.get(t)))).collect();
    Value::Object(map)
}

fn balances_body(account_id: &str, balances: &Balances) -> Value {
    json!({"accountId": account_id, "balances": balances_map(balances)})
}
