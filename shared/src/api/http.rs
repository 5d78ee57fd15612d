//! Reading API Gateway (HTTP API, payload 2.0) requests: the caller's identity, the path and the body.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::{StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Settings;
use super::error::AppError;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::is_valid_account_id;

/// Bodies above this are refused before parsing: a purchase is a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Who is calling, from the JWT authorizer's verified claims, and the account they asked for.
///
/// API Gateway only fills `requestContext.authorizer.jwt.claims` after verifying the token, so the
/// functions trust exactly that and nothing else in the request. An agency administrator's token is refused
/// here even if it also names an account: client routes act as a client, never on its behalf.
pub fn authorize(request: &Request, settings: &Settings) -> Result<String, AppError> {
    let claims = verified_claims(request).ok_or(AppError::Unauthenticated)?;
    let caller = claim(claims, &settings.account_claim);
    if is_agency_admin(claims, settings) {
        return Err(AppError::AgencyTokenOnClientRoute);
    }
    let caller = caller.ok_or(AppError::Unauthenticated)?;
    let path_params = request.path_parameters();
    let requested = path_params.first("accountId").ok_or(AppError::InvalidAccountId)?;
    if !is_valid_account_id(requested) {
        return Err(AppError::InvalidAccountId);
    }
    if caller != requested {
        return Err(AppError::Forbidden);
    }
    Ok(caller.to_owned())
}

/// An agency administrator acting on its own agency (the path's `agencyId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyAdmin {
    pub agency_id: String,
    /// The token's `sub`: who changed a price or a limit, or voided a purchase, in the audit trail.
    pub subject: String,
}

/// The caller as an agency administrator of the path's agency: the agency claim **and** the admin role
/// (membership of the configured group) are both required, since client tokens may carry their agency's id.
pub fn authorize_agency(request: &Request, settings: &Settings) -> Result<AgencyAdmin, AppError> {
    let claims = verified_claims(request).ok_or(AppError::Unauthenticated)?;
    let caller = claim(claims, &settings.agency_claim);
    if caller.is_none() && claim(claims, &settings.account_claim).is_none() {
        return Err(AppError::Unauthenticated);
    }
    if !is_agency_admin(claims, settings) {
        return Err(AppError::AgencyAdminRequired);
    }
    let caller = caller.ok_or(AppError::AgencyAdminRequired)?;
    let path_params = request.path_parameters();
    let requested = path_params.first("agencyId").ok_or(AppError::InvalidAgencyId)?;
    // Forbidden before bad input: nothing about another agency is even validated.
    if caller != requested {
        return Err(AppError::AgencyForbidden);
    }
    if !is_valid_account_id(requested) {
        return Err(AppError::InvalidAgencyId);
    }
    let subject = claim(claims, "sub").unwrap_or(caller).to_owned();
    Ok(AgencyAdmin { agency_id: caller.to_owned(), subject })
}

fn verified_claims(request: &Request) -> Option<&std::collections::HashMap<String, String>> {
    let context: &ApiGatewayV2httpRequestContext = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context,
        _ => return None,
    };
    Some(&context.authorizer.as_ref()?.jwt.as_ref()?.claims)
}

fn claim<'a>(claims: &'a std::collections::HashMap<String, String>, name: &str) -> Option<&'a str> {
    claims.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Whether the token's groups claim holds the agency-admin group.
fn is_agency_admin(claims: &std::collections::HashMap<String, String>, settings: &Settings) -> bool {
    claim(claims, &settings.groups_claim)
        .is_some_and(|groups| claim_values(groups).contains(&settings.agency_admin_group.as_str()))
}

/// The values of a claim exactly as the HTTP API's JWT authorizer hands them over: a list claim as its values
/// joined by single spaces in brackets (`[finance agency-admin]`), a string claim as itself. Nothing else is
/// taken apart: a comma, a quote or a bracket inside a value is part of that value (`viewers,agency-admin` is one
/// group, not two). Cognito group names hold no whitespace, so the space between values is unambiguous.
fn claim_values(value: &str) -> Vec<&str> {
    match value.strip_prefix('[').and_then(|listed| listed.strip_suffix(']')) {
        Some(listed) => listed.split(' ').filter(|v| !v.is_empty()).collect(),
        None => vec![value],
    }
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
    // Strict about duplicate keys at any depth: with serde_json's default the last one wins, while a log or a
    // WAF that keeps the first would see another request than the one we execute.
    let value: StrictJson = serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix(DUPLICATE_KEY) {
            Some(rest) => AppError::DuplicateField(rest.split(DUPLICATE_KEY_END).next().unwrap_or(rest).to_owned()),
            None => AppError::MalformedJson(message),
        }
    })?;
    Ok(value.0)
}

const DUPLICATE_KEY: &str = "duplicate key `";
const DUPLICATE_KEY_END: &str = "`";

/// A JSON value whose objects never repeat a key.
struct StrictJson(serde_json::Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictJson, D::Error> {
        deserializer.deserialize_any(StrictJsonVisitor).map(StrictJson)
    }
}

struct StrictJsonVisitor;

impl<'de> Visitor<'de> for StrictJsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(StrictJson(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(serde_json::Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("{DUPLICATE_KEY}{key}{DUPLICATE_KEY_END}")));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `Idempotency-Key` header, if sent once, by its rule ([`IdempotencyKey`]).
pub fn idempotency_key(request: &Request) -> Result<Option<IdempotencyKey>, AppError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AppError::InvalidIdempotencyKey("sent more than once".into()));
    }
    IdempotencyKey::from_bytes(value.as_bytes()).map(Some).map_err(AppError::InvalidIdempotencyKey)
}

/// A query string parameter, if present. Given twice (`limit=5&limit=500`), or with a comma (API Gateway joins
/// repeated parameters with one), it is refused rather than guessing which value was meant.
pub fn query_parameter(request: &Request, name: &'static str) -> Result<Option<String>, AppError> {
    let values: Vec<&str> = request.query_string_parameters_ref().and_then(|q| q.all(name)).unwrap_or_default();
    match values.as_slice() {
        [] => Ok(None),
        [value] if !value.contains(',') => Ok(Some((*value).to_owned())),
        _ => Err(AppError::InvalidQuery {
            parameter: name,
            detail: format!("`{name}` must be given at most once, without commas."),
        }),
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(serde_json::to_string(body).expect("response bodies serialise")))
        .expect("static status and headers are valid")
}
