//! The one error type of the HTTP API, and the one place it becomes a response (RFC 9457 problem details).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Map, Value, json};

use crate::domain::{PricingDataError, RequestError};
use crate::storage::{LedgerPageError, StoreError};

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

    // The agency's routes (`api::agency`).
    /// The token is an agency administrator's, but of another agency than the path's.
    AgencyForbidden,
    /// The token names an agency but lacks the agency-admin role (a client token, say).
    AgencyAdminRequired,
    /// An agency administrator's token on a client route.
    AgencyTokenOnClientRoute,
    InvalidAgencyId,
    /// The path's account is not one of this agency's clients (unknown accounts look the same).
    ClientNotFound,
    InvalidPurchaseId,
    /// No purchase of this agency's clients has this id.
    PurchaseNotFound,
    /// A field of an agency request body is missing, unknown or of the wrong type.
    InvalidField {
        field: String,
        detail: String,
    },
    /// A header that is not of its documented form (`If-Match` that is no version tag at all).
    InvalidHeader {
        header: &'static str,
        detail: String,
    },
    /// `PUT .../pricing` without `If-Match`.
    PreconditionRequired,
    /// `If-Match` names another pricing version than the current one; carries the current pricing body.
    PreconditionFailed {
        current_pricing: Value,
    },
    /// A price that can never be sold: negative, more than four places, above the cap.
    InvalidPrice {
        credit_type: String,
        detail: String,
    },
    /// A price under what the agency pays the platform for the credit.
    PriceBelowCost {
        credit_type: String,
        price: String,
        cost: String,
    },
    InvalidCreditLimit(String),
    /// Billed to the client or to the agency already: a void can no longer undo it.
    PurchaseAlreadyBilled,
    PurchaseAlreadyVoided,
    /// The client has spent some of the purchase's credits: the balance of `credit_type` is `short_by` too low.
    CreditsAlreadyUsed {
        credit_type: String,
        short_by: u64,
    },
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> AppError {
        match err {
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::Internal(m) => AppError::Internal(m),
        }
    }
}

impl From<LedgerPageError> for AppError {
    fn from(err: LedgerPageError) -> AppError {
        match err {
            LedgerPageError::Store(err) => err.into(),
            // Only a cursor brings a position in, so this is the caller's input: refused like a forged cursor.
            LedgerPageError::ImpossiblePosition(_) => {
                super::cursor::invalid_cursor("not a position in this account's ledger")
            }
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
            AppError::Forbidden
            | AppError::AgencyForbidden
            | AppError::AgencyAdminRequired
            | AppError::AgencyTokenOnClientRoute => StatusCode::FORBIDDEN,
            AppError::InvalidAgencyId | AppError::InvalidPurchaseId | AppError::InvalidField { .. } => {
                StatusCode::BAD_REQUEST
            }
            AppError::ClientNotFound | AppError::PurchaseNotFound => StatusCode::NOT_FOUND,
            AppError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            AppError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            AppError::InvalidPrice { .. } | AppError::PriceBelowCost { .. } | AppError::InvalidCreditLimit(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AppError::PurchaseAlreadyBilled | AppError::PurchaseAlreadyVoided | AppError::CreditsAlreadyUsed { .. } => {
                StatusCode::CONFLICT
            }
            AppError::InvalidAccountId
            | AppError::InvalidStatementId
            | AppError::MalformedJson(_)
            | AppError::DuplicateField(_)
            | AppError::InvalidRequest(_)
            | AppError::InvalidIdempotencyKey(_)
            | AppError::InvalidHeader { .. }
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
            AppError::AgencyForbidden | AppError::AgencyTokenOnClientRoute => "forbidden",
            AppError::AgencyAdminRequired => "agency_admin_required",
            AppError::InvalidAgencyId => "invalid_agency_id",
            AppError::ClientNotFound => "client_not_found",
            AppError::InvalidPurchaseId => "invalid_purchase_id",
            AppError::PurchaseNotFound => "purchase_not_found",
            AppError::InvalidField { .. } => "invalid_field",
            AppError::InvalidHeader { .. } => "invalid_header",
            AppError::PreconditionRequired => "precondition_required",
            AppError::PreconditionFailed { .. } => "precondition_failed",
            AppError::InvalidPrice { .. } => "invalid_price",
            AppError::PriceBelowCost { .. } => "price_below_cost",
            AppError::InvalidCreditLimit(_) => "invalid_credit_limit",
            AppError::PurchaseAlreadyBilled => "purchase_already_billed",
            AppError::PurchaseAlreadyVoided => "purchase_already_voided",
            AppError::CreditsAlreadyUsed { .. } => "credits_already_used",
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
            AppError::AgencyForbidden => "Not your agency",
            AppError::AgencyAdminRequired => "Agency administrator role required",
            AppError::AgencyTokenOnClientRoute => "Client routes are for client accounts",
            AppError::InvalidAgencyId => "Invalid agency id",
            AppError::ClientNotFound => "Client not found",
            AppError::InvalidPurchaseId => "Invalid purchase id",
            AppError::PurchaseNotFound => "Purchase not found",
            AppError::InvalidField { .. } => "Invalid field",
            AppError::InvalidHeader { .. } => "Invalid header",
            AppError::PreconditionRequired => "If-Match required",
            AppError::PreconditionFailed { .. } => "Prices changed meanwhile",
            AppError::InvalidPrice { .. } => "Invalid price",
            AppError::PriceBelowCost { .. } => "Price below cost",
            AppError::InvalidCreditLimit(_) => "Invalid credit limit",
            AppError::PurchaseAlreadyBilled => "Purchase already billed",
            AppError::PurchaseAlreadyVoided => "Purchase already voided",
            AppError::CreditsAlreadyUsed { .. } => "Credits already used",
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
                "Nothing was charged or changed. Please try again in a moment; a retry with the same Idempotency-Key \
                 never applies twice."
                    .into()
            }
            AppError::OutcomeUnknown(_) => "We could not confirm the change in time: it may have gone through. \
                 Retry with the same Idempotency-Key, which never applies twice and returns the result if it was \
                 made, or check the history (purchases, prices or ledger) before trying again."
                .into(),
            AppError::Internal(_) => "Something went wrong on our side; the details are in our logs.".into(),
            AppError::AgencyForbidden => "An agency administrator may only act on its own agency and its clients.".into(),
            AppError::AgencyAdminRequired => {
                "This route is for agency administrators: the token lacks the agency-admin role.".into()
            }
            AppError::AgencyTokenOnClientRoute => {
                "An agency administrator's token cannot act as a client; use the agency routes.".into()
            }
            AppError::InvalidAgencyId => "Agency ids are 1-64 letters, digits, '-' or '_'.".into(),
            AppError::ClientNotFound => "This agency has no client with this account id.".into(),
            AppError::InvalidPurchaseId => "A purchase id is the `purchaseId` of one of your clients' purchases.".into(),
            AppError::PurchaseNotFound => "None of this agency's clients has a purchase with this id.".into(),
            AppError::InvalidField { field, detail } => format!("`{field}`: {detail}"),
            AppError::InvalidHeader { header, detail } => format!("{header}: {detail}"),
            AppError::PreconditionRequired => {
                "Send If-Match with the pricing `version` (the ETag of GET .../pricing) you are changing.".into()
            }
            AppError::PreconditionFailed { .. } => "Someone else changed these prices since you read them; the \
                 current prices are in `currentPricing`. Review them and send your change again with their version."
                .into(),
            AppError::InvalidPrice { credit_type, detail } => format!("The price of {credit_type} {detail}."),
            AppError::PriceBelowCost { credit_type, price, cost } => format!(
                "The price of {credit_type} ({price}) is below its cost ({cost}): a sale would lose money. Set a \
                 price of at least the cost."
            ),
            AppError::InvalidCreditLimit(why) => format!("The credit limit {why}."),
            AppError::PurchaseAlreadyBilled => {
                "The purchase was billed already; a billed purchase is corrected on a statement, not voided.".into()
            }
            AppError::PurchaseAlreadyVoided => "The purchase was voided already.".into(),
            AppError::CreditsAlreadyUsed { credit_type, short_by } => format!(
                "The client has already used some of these credits: its {credit_type} balance is {short_by} short \
                 of what the purchase added. Nothing was changed."
            ),
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
            AppError::InvalidField { field, .. } => {
                extra.insert("field".into(), json!(field));
            }
            AppError::InvalidHeader { header, .. } => {
                extra.insert("header".into(), json!(header));
            }
            AppError::PreconditionFailed { current_pricing } => {
                extra.insert("currentPricing".into(), current_pricing.clone());
            }
            AppError::InvalidPrice { credit_type, .. } => {
                extra.insert("creditType".into(), json!(credit_type));
            }
            AppError::PriceBelowCost { credit_type, price, cost } => {
                extra.insert("creditType".into(), json!(credit_type));
                extra.insert("price".into(), json!(price));
                extra.insert("cost".into(), json!(cost));
            }
            AppError::CreditsAlreadyUsed { credit_type, short_by } => {
                extra.insert("creditType".into(), json!(credit_type));
                extra.insert("shortBy".into(), json!(short_by));
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
