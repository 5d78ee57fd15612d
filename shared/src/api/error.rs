//! The one error type of the HTTP API, and the one place it becomes a response (RFC 9457 problem details).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Map, Value, json};

use crate::domain::{PricingDataError, RequestError};
use crate::storage::StoreError;

/// Where the `type` URIs of our problems point; they name the problem, they need not resolve.
pub const PROBLEM_TYPE_BASE: &str = "https://overage-credits.dev/problems/";

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum AppError {
    /// No authorizer claims, or no account claim in them.
    Unauthenticated,
    /// The caller's account is not the one in the path.
    Forbidden,
    InvalidAccountId,
    AccountNotFound,
    /// The path's `statementId` is not the form of any statement id.
    InvalidStatementId,
    /// No client statement of the caller's account has this id (another account's and agency statements
    /// included: they are never told apart from unknown ids).
    StatementNotFound,
    UnsupportedMediaType(String),
    PayloadTooLarge {
        limit: usize,
    },
    MalformedJson(String),
    /// An object in the body names the same key twice.
    DuplicateField(String),
    InvalidRequest(RequestError),
    InvalidIdempotencyKey(String),
    IdempotencyKeyReused,
    InvalidQuery {
        parameter: &'static str,
        detail: String,
    },
    /// The price changed since the client saw it; carries the current pricing body and the server's total.
    PriceChanged {
        current_pricing: Value,
        server_total: String,
        expected_total: String,
    },
    /// The client's pay-later line has less available than the purchase's total.
    CreditLimitExceeded {
        available: String,
        requested: String,
    },
    /// The agency's line (at cost) cannot take the purchase; says nothing of the agency's figures.
    AgencyCreditLimitExceeded,
    /// A failed or overdue statement must be paid first.
    AccountOnHold {
        statement_id: String,
    },
    /// Nothing was written: a read failed or the budget ran out before the write.
    Unavailable(String),
    /// The write was sent but its outcome is unknown (timed out, unanswered): it may have committed.
    OutcomeUnknown(String),
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> AppError {
        match err {
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::Internal(m) => AppError::Internal(m),
        }
    }
}

impl From<PricingDataError> for AppError {
    fn from(err: PricingDataError) -> AppError {
        AppError::Internal(format!("pricing data: {err}"))
    }
}

impl From<RequestError> for AppError {
    fn from(err: RequestError) -> AppError {
        AppError::InvalidRequest(err)
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::InvalidAccountId
            | AppError::InvalidStatementId
            | AppError::MalformedJson(_)
            | AppError::DuplicateField(_)
            | AppError::InvalidRequest(_)
            | AppError::InvalidIdempotencyKey(_)
            | AppError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            AppError::AccountNotFound | AppError::StatementNotFound => StatusCode::NOT_FOUND,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::PriceChanged { .. } => StatusCode::CONFLICT,
            AppError::CreditLimitExceeded { .. }
            | AppError::AgencyCreditLimitExceeded
            | AppError::AccountOnHold { .. } => StatusCode::PAYMENT_REQUIRED,
            AppError::Unavailable(_) | AppError::OutcomeUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code the dashboard switches on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "unauthenticated",
            AppError::Forbidden => "forbidden",
            AppError::InvalidAccountId => "invalid_account_id",
            AppError::AccountNotFound => "account_not_found",
            AppError::InvalidStatementId => "invalid_statement_id",
            AppError::StatementNotFound => "statement_not_found",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::MalformedJson(_) => "malformed_json",
            AppError::DuplicateField(_) => "duplicate_field",
            AppError::InvalidRequest(e) => e.code(),
            AppError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            AppError::IdempotencyKeyReused => "idempotency_key_reused",
            AppError::InvalidQuery { .. } => "invalid_query_parameter",
            AppError::PriceChanged { .. } => "price_changed",
            AppError::CreditLimitExceeded { .. } => "credit_limit_exceeded",
            AppError::AgencyCreditLimitExceeded => "agency_credit_limit_exceeded",
            AppError::AccountOnHold { .. } => "account_on_hold",
            AppError::Unavailable(_) | AppError::OutcomeUnknown(_) => "service_unavailable",
            AppError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "Authentication required",
            AppError::Forbidden => "Not your account",
            AppError::InvalidAccountId => "Invalid account id",
            AppError::AccountNotFound => "Account not found",
            AppError::InvalidStatementId => "Invalid statement id",
            AppError::StatementNotFound => "Statement not found",
            AppError::UnsupportedMediaType(_) => "Unsupported media type",
            AppError::PayloadTooLarge { .. } => "Request body too large",
            AppError::MalformedJson(_) => "Malformed JSON",
            AppError::DuplicateField(_) => "Duplicate field",
            AppError::InvalidRequest(_) => "Invalid purchase request",
            AppError::InvalidIdempotencyKey(_) => "Invalid Idempotency-Key",
            AppError::IdempotencyKeyReused => "Idempotency-Key already used",
            AppError::InvalidQuery { .. } => "Invalid query parameter",
            AppError::PriceChanged { .. } => "Prices changed",
            AppError::CreditLimitExceeded { .. } => "Pay-later credit limit reached",
            AppError::AgencyCreditLimitExceeded => "Pay-later purchases paused",
            AppError::AccountOnHold { .. } => "Account on hold",
            AppError::Unavailable(_) | AppError::OutcomeUnknown(_) => "Service temporarily unavailable",
            AppError::Internal(_) => "Internal error",
        }
    }

    /// Text for people; never carries internal details of 5xx errors (those go to the logs).
    fn detail(&self) -> String {
        match self {
            AppError::Unauthenticated => "The request carries no verified account claim.".into(),
            AppError::Forbidden => "The token's account may only act on its own account.".into(),
            AppError::InvalidAccountId => "Account ids are 1-64 letters, digits, '-' or '_'.".into(),
            AppError::AccountNotFound => "No such account.".into(),
            AppError::InvalidStatementId => {
                "A statement id is the `statementId` of one of your statements, e.g. client-20261101T000000.000Z-acct-x."
                    .into()
            }
            AppError::StatementNotFound => "This account has no statement with this id.".into(),
            AppError::UnsupportedMediaType(got) => {
                format!("Send the body as application/json (got {got:?}).")
            }
            AppError::PayloadTooLarge { limit } => format!("The body must be at most {limit} bytes."),
            AppError::MalformedJson(why) => format!("The body is not valid JSON: {why}."),
            AppError::DuplicateField(name) => {
                format!("The field `{name}` appears more than once in one object; send each field once.")
            }
            AppError::InvalidRequest(e) => e.detail(),
            AppError::InvalidIdempotencyKey(why) => {
                format!(
                    "Idempotency-Key must be 1-255 printable ASCII characters, without commas or surrounding \
                     spaces: {why}."
                )
            }
            AppError::IdempotencyKeyReused => {
                "This Idempotency-Key was already used for a different request; send a new key per purchase.".into()
            }
            AppError::InvalidQuery { detail, .. } => detail.clone(),
            AppError::PriceChanged { server_total, expected_total, .. } => format!(
                "The total is now {server_total}, not {expected_total}: review the current prices and confirm again."
            ),
            AppError::CreditLimitExceeded { available, requested } => format!(
                "This purchase ({requested}) is more than the {available} you can still buy on Pay Later; nothing was \
                 charged. Buy less, or pay an open statement to free up credit."
            ),
            AppError::AgencyCreditLimitExceeded => "Pay-later purchases are paused for your account right now; \
                 nothing was charged. Please contact your agency."
                .into(),
            AppError::AccountOnHold { statement_id } => format!(
                "Statement {statement_id} is unpaid (payment failed or overdue): purchases are on hold until it is \
                 paid. Nothing was charged."
            ),
            AppError::Unavailable(_) => {
                "Nothing was charged. Please try again in a moment; a retry with the same Idempotency-Key never buys \
                 twice."
                    .into()
            }
            AppError::OutcomeUnknown(_) => "We could not confirm the purchase in time: it may have gone through. \
                 Retry with the same Idempotency-Key, which never buys twice and returns the purchase if it was made, \
                 or check your purchase history before buying again."
                .into(),
            AppError::Internal(_) => "Something went wrong on our side; the details are in our logs.".into(),
        }
    }

    fn extensions(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        match self {
            AppError::InvalidRequest(RequestError::UnknownCreditType(t)) => {
                extra.insert("creditType".into(), json!(t));
            }
            AppError::InvalidRequest(RequestError::InvalidQuantity { credit_type, .. }) => {
                extra.insert("creditType".into(), json!(credit_type));
            }
            AppError::InvalidRequest(RequestError::UnknownField(f)) | AppError::DuplicateField(f) => {
                extra.insert("field".into(), json!(f));
            }
            AppError::InvalidRequest(RequestError::LineBelowMinimum { credit_type, minimum_quantity }) => {
                extra.insert("creditType".into(), json!(credit_type.as_str()));
                if let Some(minimum) = minimum_quantity {
                    extra.insert("minimumQuantity".into(), json!(minimum));
                }
            }
            AppError::OutcomeUnknown(_) => {
                extra.insert("outcome".into(), json!("unknown"));
            }
            AppError::CreditLimitExceeded { available, requested } => {
                extra.insert("availableCredit".into(), json!(available));
                extra.insert("requestedTotal".into(), json!(requested));
            }
            AppError::AccountOnHold { statement_id } => {
                extra.insert("statementId".into(), json!(statement_id));
            }
            AppError::InvalidQuery { parameter, .. } => {
                extra.insert("parameter".into(), json!(parameter));
            }
            AppError::PriceChanged { current_pricing, server_total, expected_total } => {
                extra.insert("currentPricing".into(), current_pricing.clone());
                extra.insert("total".into(), json!(server_total));
                extra.insert("expectedTotal".into(), json!(expected_total));
            }
            _ => {}
        }
        extra
    }

    /// The response for this error: the single mapping from errors to HTTP.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match &self {
            AppError::Internal(m) => tracing::error!(code = self.code(), error = %m, "request failed"),
            AppError::Unavailable(m) | AppError::OutcomeUnknown(m) => {
                tracing::warn!(code = self.code(), error = %m, "request failed")
            }
            _ => tracing::info!(code = self.code(), status = status.as_u16(), "request refused"),
        }
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{PROBLEM_TYPE_BASE}{}", self.code())));
        body.insert("title".into(), json!(self.title()));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.detail()));
        body.insert("code".into(), json!(self.code()));
        body.extend(self.extensions());
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::Text(Value::Object(body).to_string()))
            .expect("static status and headers are valid");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
