//! Our own thin Stripe client: the three calls collection makes, form-encoded as Stripe's API takes them,
//! reading only the fields we use (serde ignores the rest, so a server that omits or adds fields parses).
//!
//! - `GET /v1/customers/{id}`: the customer's default payment method (`invoice_settings.default_payment_method`);
//! - `POST /v1/payment_intents` (`off_session`, `confirm`): one charge per attempt, `Idempotency-Key:
//!   {statementId}:{attempt}`, so a resend of the same attempt is the same charge at Stripe;
//! - `GET /v1/payment_intents/{id}` and `GET /v1/payment_intents?customer=`: an attempt's outcome when our run
//!   stopped between Stripe's answer and our write.
//!
//! Why not `async-stripe`: README "Stripe" has the figures. Over hyper 1 / hyper-util / hyper-rustls, already in
//! the tree through the AWS SDK, this adds no crate to the lock file.
//!
//! Outcomes ([`ChargeOutcome`], [`StripeError`]): succeeded; declined (HTTP 402, or an intent left
//! `requires_payment_method`) and `requires_action` / `authentication_required` → failed with that reason; 429,
//! 5xx, a timeout or a connection error → transient (the attempt is retried with the same key); any other 4xx
//! → refused (our request or our data is wrong: nothing was charged).

pub mod signature;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rust_decimal::Decimal;
use serde::Deserialize;

/// Stripe's API base, unless settings point elsewhere (localstripe locally).
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";

/// The largest amount Stripe charges in one PaymentIntent, in minor units (USD 999,999.99).
pub const MAX_AMOUNT_MINOR: i64 = 99_999_999;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Minor units of `amount` in `currency`, exactly: refuses anything that is not a whole number of cents, zero,
/// negative or above Stripe's maximum. Only two-decimal currencies (the product bills in USD).
pub fn minor_units(amount: Decimal, currency: &str) -> Result<i64, String> {
    if !currency.eq_ignore_ascii_case("usd") {
        return Err(format!("currency {currency} is not supported (two-decimal USD only)"));
    }
    let cents = amount * Decimal::ONE_HUNDRED;
    if !cents.fract().is_zero() {
        return Err(format!("{amount} is not a whole number of cents"));
    }
    let cents = i64::try_from(cents.trunc()).map_err(|_| format!("{amount} is out of range"))?;
    if cents <= 0 {
        return Err(format!("{amount} is not above zero"));
    }
    if cents > MAX_AMOUNT_MINOR {
        return Err(format!("{amount} is above Stripe's largest charge"));
    }
    Ok(cents)
}

/// Back from minor units (two-decimal currencies).
pub fn from_minor_units(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

/// One attempt at charging a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub statement_id: String,
    pub attempt: u32,
    pub amount_minor: i64,
    pub currency: String,
    pub customer: String,
    pub payment_method: String,
}

impl ChargeRequest {
    /// Stripe replays the first answer to a request with the same key (24 hours): our own retries of one
    /// attempt are one charge.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.statement_id, self.attempt)
    }
}

/// What Stripe did with an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        intent_id: String,
        amount_minor: i64,
    },
    /// Declined, or the bank wants the customer present (`authentication_required`): no money moved.
    Failed {
        intent_id: Option<String>,
        reason: String,
    },
    /// Stripe has not finished (`processing`): ask again later by the intent id.
    Pending {
        intent_id: String,
        status: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// 429, 5xx, a timeout, a connection error: the same request may succeed later.
    #[error("Stripe unavailable: {0}")]
    Transient(String),
    /// Any other 4xx (a bad key, a missing customer, a malformed request): nothing was charged.
    #[error("Stripe refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// Where and how to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `https://api.stripe.com`, or `http://127.0.0.1:<port>` for localstripe.
    pub base_url: String,
    pub secret_key: Secret,
    /// Per request. Stripe's own libraries wait up to 80 s; a collection run has many statements to go.
    pub timeout: Duration,
}

/// The client, built once per Lambda instance (its connection pool is reused across invocations).
#[derive(Clone)]
pub struct StripeClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base_url: String,
    authorization: hyper::header::HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// The PaymentIntent fields we read.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub amount: i64,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub last_payment_error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Real Stripe puts the failed intent in a card error; localstripe does not.
    #[serde(default)]
    pub payment_intent: Option<IntentRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IntentRef {
    pub id: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct Customer {
    #[serde(default)]
    invoice_settings: Option<InvoiceSettings>,
}

#[derive(Deserialize)]
struct InvoiceSettings {
    #[serde(default)]
    default_payment_method: Option<String>,
}

#[derive(Deserialize)]
struct IntentList {
    data: Vec<PaymentIntent>,
    #[serde(default)]
    has_more: bool,
}

impl ErrorBody {
    /// The most specific reason Stripe gives.
    fn reason(&self) -> String {
        self.decline_code
            .clone()
            .or_else(|| self.code.clone())
            .or_else(|| self.message.clone())
            .unwrap_or_else(|| "card_declined".to_owned())
    }
}

impl PaymentIntent {
    /// An intent's status as an attempt's outcome.
    pub fn outcome(&self) -> ChargeOutcome {
        let failed = |reason: String| ChargeOutcome::Failed { intent_id: Some(self.id.clone()), reason };
        match self.status.as_str() {
            "succeeded" => ChargeOutcome::Succeeded { intent_id: self.id.clone(), amount_minor: self.amount },
            // Off-session, the bank asking for the customer is a failure we tell the client about.
            "requires_action" => failed("authentication_required".to_owned()),
            "requires_payment_method" => failed(
                self.last_payment_error.as_ref().map(ErrorBody::reason).unwrap_or_else(|| "card_declined".into()),
            ),
            "canceled" => failed("canceled".to_owned()),
            other => ChargeOutcome::Pending { intent_id: self.id.clone(), status: other.to_owned() },
        }
    }
}

/// The TLS settings: the Mozilla roots compiled into the binary (Stripe's certificates chain to one of them),
/// rustls on aws-lc as the SDK uses.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl StripeClient {
    pub fn new(settings: StripeSettings) -> StripeClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut authorization =
            hyper::header::HeaderValue::try_from(format!("Bearer {}", settings.secret_key.expose()))
                .expect("a Stripe key is printable ASCII");
        authorization.set_sensitive(true);
        StripeClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            authorization,
            timeout: settings.timeout,
        }
    }

    /// The customer's default payment method (`invoice_settings.default_payment_method`), if it has one.
    pub async fn default_payment_method(&self, customer: &str) -> Result<Option<String>, StripeError> {
        let path = format!("/v1/customers/{}", encode_path(customer));
        let (status, body) = self.send(Method::GET, &path, None, None).await?;
        let customer: Customer = parse(status, &body)?;
        Ok(customer.invoice_settings.and_then(|s| s.default_payment_method))
    }

    /// Creates and confirms one PaymentIntent off-session.
    pub async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, StripeError> {
        let attempt = request.attempt.to_string();
        let amount = request.amount_minor.to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("amount", &amount)
            .append_pair("currency", &request.currency.to_ascii_lowercase())
            .append_pair("customer", &request.customer)
            .append_pair("payment_method", &request.payment_method)
            .append_pair("off_session", "true")
            .append_pair("confirm", "true")
            .append_pair("metadata[statementId]", &request.statement_id)
            .append_pair("metadata[attempt]", &attempt)
            .finish();
        let key = request.idempotency_key();
        let (status, bytes) = self.send(Method::POST, "/v1/payment_intents", Some(body), Some(&key)).await?;
        if status == StatusCode::PAYMENT_REQUIRED {
            // A card error: declined, or `authentication_required` off-session.
            let error = serde_json::from_slice::<ErrorEnvelope>(&bytes).map(|e| e.error).unwrap_or_default();
            return Ok(ChargeOutcome::Failed {
                intent_id: error.payment_intent.as_ref().map(|i| i.id.clone()),
                reason: error.reason(),
            });
        }
        let intent: PaymentIntent = parse(status, &bytes)?;
        Ok(intent.outcome())
    }

    /// One PaymentIntent by id.
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        let path = format!("/v1/payment_intents/{}", encode_path(id));
        let (status, body) = self.send(Method::GET, &path, None, None).await?;
        parse(status, &body)
    }

    /// The customer's PaymentIntent for this statement's attempt (by its metadata), newest first, if any: the
    /// outcome of an attempt whose answer we lost before storing its intent id.
    pub async fn find_attempt(
        &self,
        customer: &str,
        statement_id: &str,
        attempt: u32,
    ) -> Result<Option<PaymentIntent>, StripeError> {
        let attempt = attempt.to_string();
        let mut starting_after: Option<String> = None;
        // Bounded: one customer's intents for a few statements a month, 100 a page.
        for _ in 0..10 {
            // (The serializer is not Send: finished before the await.)
            let path = {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("customer", customer).append_pair("limit", "100");
                if let Some(after) = &starting_after {
                    query.append_pair("starting_after", after);
                }
                format!("/v1/payment_intents?{}", query.finish())
            };
            let (status, body) = self.send(Method::GET, &path, None, None).await?;
            let page: IntentList = parse(status, &body)?;
            if let Some(found) = page.data.iter().find(|pi| {
                pi.metadata.get("statementId").map(String::as_str) == Some(statement_id)
                    && pi.metadata.get("attempt") == Some(&attempt)
            }) {
                return Ok(Some(found.clone()));
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => starting_after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
        Err(StripeError::Transient(format!("{customer}: too many PaymentIntents to search")))
    }

    /// Any call, for tests and local tools (seeding customers, counting intents): the status and the JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, serde_json::Value), StripeError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| StripeError::Refused { status: 0, message: e.to_string() })?;
        let body = (!form.is_empty())
            .then(|| form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish());
        let (status, bytes) = self.send(method, path, body, None).await?;
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status.as_u16(), json))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Bytes), StripeError> {
        let uri = format!("{}{path}", self.base_url);
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(hyper::header::AUTHORIZATION, self.authorization.clone())
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let body = match form {
            Some(form) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| StripeError::Refused { status: 0, message: e.to_string() })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| StripeError::Transient(e.to_string()))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| StripeError::Transient(e.to_string()))?;
            Ok::<_, StripeError>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| StripeError::Transient(format!("no answer within {:?}", self.timeout)))??;
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(StripeError::Transient(format!("HTTP {status}: {}", error_message(&body))));
        }
        Ok((status, body))
    }
}

/// A 2xx body as `T`; any other status as refused.
fn parse<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, StripeError> {
    if !status.is_success() {
        return Err(StripeError::Refused { status: status.as_u16(), message: error_message(body) });
    }
    serde_json::from_slice(body)
        .map_err(|e| StripeError::Refused { status: status.as_u16(), message: format!("unreadable answer: {e}") })
}

fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => {
            let e = envelope.error;
            [e.kind, e.code, e.message].into_iter().flatten().collect::<Vec<_>>().join(": ")
        }
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else is percent-encoded so it cannot change the path.
fn encode_path(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn amounts_become_exact_minor_units_or_are_refused() {
        assert_eq!(minor_units(d("12.34"), "USD"), Ok(1234));
        assert_eq!(minor_units(d("12.3400"), "usd"), Ok(1234));
        assert_eq!(minor_units(d("0.01"), "USD"), Ok(1));
        assert_eq!(minor_units(d("999999.99"), "USD"), Ok(MAX_AMOUNT_MINOR));
        for bad in ["12.345", "0.001", "0", "0.00", "-1.00", "1000000.00"] {
            assert!(minor_units(d(bad), "USD").is_err(), "{bad}");
        }
        assert!(minor_units(d("1.00"), "JPY").is_err());
        assert_eq!(from_minor_units(1234), d("12.34"));
    }

    #[test]
    fn intent_statuses_are_outcomes() {
        let intent = |status: &str, error: Option<ErrorBody>| PaymentIntent {
            id: "pi_1".into(),
            status: status.into(),
            amount: 100,
            currency: None,
            customer: None,
            metadata: HashMap::new(),
            last_payment_error: error,
        };
        assert_eq!(
            intent("succeeded", None).outcome(),
            ChargeOutcome::Succeeded { intent_id: "pi_1".into(), amount_minor: 100 }
        );
        assert_eq!(
            intent("requires_action", None).outcome(),
            ChargeOutcome::Failed { intent_id: Some("pi_1".into()), reason: "authentication_required".into() }
        );
        let declined = ErrorBody {
            code: Some("card_declined".into()),
            decline_code: Some("insufficient_funds".into()),
            ..Default::default()
        };
        assert_eq!(
            intent("requires_payment_method", Some(declined)).outcome(),
            ChargeOutcome::Failed { intent_id: Some("pi_1".into()), reason: "insufficient_funds".into() }
        );
        assert!(matches!(intent("processing", None).outcome(), ChargeOutcome::Pending { .. }));
        assert_eq!(format!("{:?}", Secret::new("sk_live_x")), "Secret(***)");
    }
}
