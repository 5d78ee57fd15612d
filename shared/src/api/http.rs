//! Reading API Gateway (HTTP API, payload 2.0) requests: the caller's identity, the path and the body.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::{StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use super::error::AppError;
use crate::domain::is_valid_account_id;

/// Bodies above this are refused before parsing: a purchase is a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Who is calling, from the JWT authorizer's verified claims, and the account they asked for.
///
/// API Gateway only fills `requestContext.authorizer.jwt.claims` after verifying the token, so the
/// functions trust exactly that and nothing else in the request.
pub fn authorize(request: &Request, account_claim: &str) -> Result<String, AppError> {
    let caller = caller_account(request, account_claim).ok_or(AppError::Unauthenticated)?;
    let path_params = request.path_parameters();
    let requested = path_params.first("accountId").ok_or(AppError::InvalidAccountId)?;
    if !is_valid_account_id(requested) {
        return Err(AppError::InvalidAccountId);
    }
    if caller != requested {
        return Err(AppError::Forbidden);
    }
    Ok(caller)
}

fn caller_account(request: &Request, account_claim: &str) -> Option<String> {
    let context: &ApiGatewayV2httpRequestContext = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context,
        _ => return None,
    };
    let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
    claims.get(account_claim).filter(|v| !v.is_empty()).cloned()
}

/// The request body as JSON, after the media type and size checks.
pub fn json_body(request: &Request) -> Result<serde_json::Value, AppError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(AppError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let content_type =
        request.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match content_type.as_deref() {
        Some(value) if is_json_media_type(value) => {}
        Some(value) => return Err(AppError::UnsupportedMediaType(value.to_owned())),
        None => return Err(AppError::UnsupportedMediaType("no Content-Type".into())),
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::MalformedJson("the body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| AppError::MalformedJson(e.to_string()))
}

fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `Idempotency-Key` header, if sent: 1-255 printable ASCII characters.
pub fn idempotency_key(request: &Request) -> Result<Option<String>, AppError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AppError::InvalidIdempotencyKey("sent more than once".into()));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 {
        return Err(AppError::InvalidIdempotencyKey(format!("{} characters", bytes.len())));
    }
    if !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(AppError::InvalidIdempotencyKey("non-printable or non-ASCII characters".into()));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// A query string parameter, if present once.
pub fn query_parameter(request: &Request, name: &str) -> Option<String> {
    request.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(serde_json::to_string(body).expect("response bodies serialise")))
        .expect("static status and headers are valid")
}
