//! `GET /agencies/{agencyId}/purchases`, `POST .../purchases/{purchaseId}/void`, `GET /agencies/{agencyId}/statements`:
//! the agency's view of its clients' purchases (price, cost and margin), the void of an unbilled one, and the
//! agency's own statements at cost.

use std::time::{Instant, SystemTime};

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use super::super::cursor::{CursorList, invalid_cursor};
use super::super::error::AppError;
use super::super::http::{authorize_agency, idempotency_key, json_body, json_response, query_parameter};
use super::super::paging::{AGENCY_PAGE_SIZE, Paging};
use super::super::views::{
    AgencyPurchaseView, AgencyPurchasesPage, AgencyStatementsPage, BalancesView, PurchaseAnswer, StatementView,
};
use super::super::{App, respond};
use crate::domain::agency::MAX_VOID_REASON_CHARS;
use crate::domain::billing::StatementKind;
use crate::domain::idempotency;
use crate::domain::{PurchaseRecord, RequestError, is_valid_account_id, time};
use crate::storage::{
    AgencyPurchasePosition, ClientInBookPosition, IdempotencyClaim, PurchaseKey, StatementKey, StoreError,
    StoredIdempotency, VoidOutcome, VoidRequest,
};

/// `GET /agencies/{agencyId}/purchases?accountId=&limit=&cursor=`: the agency's clients' purchases, newest
/// first, with price, cost and margin per line and in total. With `accountId`, one client's only, this agency's
/// purchases of it; each request reads a bounded number of items, so a page may end short with a `nextCursor`.
pub async fn list_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let paging = Paging::read(app, &request, AGENCY_PAGE_SIZE)?;
        let limit = paging.limit;
        let account_id = match query_parameter(&request, "accountId")? {
            Some(account_id) if is_valid_account_id(&account_id) => Some(account_id),
            Some(_) => {
                return Err(AppError::InvalidQuery {
                    parameter: "accountId",
                    detail: "`accountId` must be 1-64 letters, digits, '-' or '_'.".into(),
                });
            }
            None => None,
        };
        let cursor = query_parameter(&request, "cursor")?;
        let (purchases, next_cursor) = match &account_id {
            None => {
                let after = match &cursor {
                    Some(cursor) => Some(paging.open(
                        CursorList::AgencyPurchases,
                        cursor,
                        |position: &AgencyPurchasePosition| position.is_in_agency(&admin.agency_id),
                        "not a position in this agency's purchases",
                    )?),
                    None => None,
                };
                let page = app.store.agency_purchases_page(&admin.agency_id, limit, after.as_ref()).await?;
                (page.purchases, paging.next_cursor(CursorList::AgencyPurchases, page.next.as_ref()))
            }
            Some(account_id) => {
                let after = match &cursor {
                    Some(cursor) => Some(paging.open(
                        CursorList::AgencyClientPurchases,
                        cursor,
                        |position: &ClientListPosition| position.is_for(&admin.agency_id, account_id),
                        "not a position in this client's purchases",
                    )?),
                    None => None,
                };
                // A current client is read from its own partition; any other account (it left, never was, or
                // does not exist) from the agency's own book, so what that account did under another agency
                // never shows, not even in how long the answer takes.
                let current = app.store.account(account_id).await?.is_some_and(|a| a.agency_id == admin.agency_id);
                let moved = || invalid_cursor("the account joined or left this agency since; start again");
                if current {
                    let after = match after {
                        Some(ClientListPosition::Partition(key)) => Some(key),
                        Some(ClientListPosition::Book(_)) => return Err(moved()),
                        None => None,
                    };
                    let page = app
                        .store
                        .client_purchases_for_agency(&admin.agency_id, account_id, limit, after.as_ref())
                        .await?;
                    (page.purchases, paging.next_cursor(CursorList::AgencyClientPurchases, page.next.as_ref()))
                } else {
                    let after = match after {
                        Some(ClientListPosition::Book(position)) => Some(position),
                        Some(ClientListPosition::Partition(_)) => return Err(moved()),
                        None => None,
                    };
                    let page =
                        app.store.client_purchases_in_book(&admin.agency_id, account_id, limit, after.as_ref()).await?;
                    (page.purchases, paging.next_cursor(CursorList::AgencyClientPurchases, page.next.as_ref()))
                }
            }
        };
        let body = AgencyPurchasesPage {
            agency_id: &admin.agency_id,
            purchases: purchases.iter().map(AgencyPurchaseView::of).collect(),
            next_cursor,
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// Where a one-client list continues: in a current client's own partition, or in the agency's book filtered to
/// an account that is not its client now. The two forms have different fields, so neither passes for the other.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum ClientListPosition {
    Partition(PurchaseKey),
    Book(ClientInBookPosition),
}

impl ClientListPosition {
    fn is_for(&self, agency_id: &str, account_id: &str) -> bool {
        match self {
            ClientListPosition::Partition(key) => key.is_purchase_of(account_id),
            ClientListPosition::Book(position) => position.is_in_agency_for(agency_id, account_id),
        }
    }
}

/// `GET /agencies/{agencyId}/statements?limit=&cursor=`: the agency's statements (at cost), newest cycle first.
pub async fn list_statements(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let paging = Paging::read(app, &request, AGENCY_PAGE_SIZE)?;
        let after = paging.after(
            &request,
            CursorList::AgencyStatements,
            |key: &StatementKey| key.is_statement_of_owner(StatementKind::Agency, &admin.agency_id),
            "not a position in this agency's statements",
        )?;
        let page =
            app.store.statements_page(StatementKind::Agency, &admin.agency_id, paging.limit, after.as_ref()).await?;
        let body = AgencyStatementsPage {
            agency_id: &admin.agency_id,
            statements: page.statements.iter().map(StatementView::of).collect(),
            next_cursor: paging.next_cursor(CursorList::AgencyStatements, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// `POST /agencies/{agencyId}/purchases/{purchaseId}/void`, body `{"accountId", "reason"?}`, optional
/// `Idempotency-Key`: undoes an unbilled purchase of one of the agency's clients in one transaction.
pub async fn void_purchase(app: &App, request: Request) -> Response<Body> {
    // The budget bounds the reads; a write that runs out of it is answered as of unknown outcome (retry with
    // the same key), never as "nothing happened".
    let deadline = Instant::now() + app.settings.request_budget;
    void(app, &request, deadline).await.unwrap_or_else(AppError::into_response)
}

/// A validated void request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VoidBody {
    account_id: String,
    /// `None` when absent or empty.
    reason: Option<String>,
}

async fn void(app: &App, request: &Request, deadline: Instant) -> Result<Response<Body>, AppError> {
    // Everything the request alone can tell is checked before any read or write.
    let admin = authorize_agency(request, &app.settings)?;
    let purchase_id = request
        .path_parameters()
        .first("purchaseId")
        .filter(|id| is_canonical_uuid(id))
        .ok_or(AppError::InvalidPurchaseId)?
        .to_owned();
    let key = idempotency_key(request)?;
    let body = parse_void_body(&json_body(request)?)?;
    let request_hash = void_request_hash(&admin.agency_id, &purchase_id, &body);
    let now = SystemTime::now();

    // A retry of an earlier void gets its answer again, whatever happened to the purchase since.
    if let Some(key) = &key
        && let Some(stored) = before_write(deadline, app.store.void_idempotency(&admin.agency_id, key, now)).await?
    {
        return replay(app, &request_hash, stored, deadline).await;
    }

    let (purchase, account) = before_write(deadline, async {
        tokio::try_join!(app.store.purchase(&body.account_id, &purchase_id), app.store.account(&body.account_id))
    })
    .await?;
    // Unknown, another agency's, or of an account that is not this agency's: all the same 404.
    let purchase = purchase.filter(|p| p.agency_id == admin.agency_id).ok_or(AppError::PurchaseNotFound)?;
    if purchase.voided_at.is_some() {
        return Err(AppError::PurchaseAlreadyVoided);
    }
    if purchase.billed_to_client || purchase.billed_to_agency {
        return Err(AppError::PurchaseAlreadyBilled);
    }
    let account = account.ok_or_else(|| AppError::Internal(format!("purchase {purchase_id} without its account")))?;

    let entry_id = uuid::Uuid::now_v7().to_string();
    let voided_at = time::timestamp(now);
    let claim = key.as_ref().map(|key| IdempotencyClaim::new(key.clone(), request_hash.clone(), None, now));
    let void_request = VoidRequest {
        purchase: &purchase,
        agency_id: &admin.agency_id,
        voided_by: &admin.subject,
        reason: body.reason.as_deref(),
        entry_id: &entry_id,
        voided_at: &voided_at,
        client_has_line: account.credit_line.is_some(),
        idempotency: claim.as_ref(),
    };
    let written = tokio::time::timeout_at(deadline.into(), app.store.void_purchase(&void_request)).await;
    let outcome = match written {
        Ok(Ok(outcome)) => outcome,
        // Refused as malformed: nothing was written.
        Ok(Err(StoreError::Internal(why))) => return Err(AppError::Internal(why)),
        Ok(Err(StoreError::Unavailable(why))) => return Err(AppError::OutcomeUnknown(why)),
        Err(_) => return Err(AppError::OutcomeUnknown("request budget exhausted during the void".into())),
    };
    match outcome {
        VoidOutcome::Voided(record) => {
            tracing::info!(
                purchase_id = %purchase_id,
                account_id = %record.account_id,
                agency_id = %admin.agency_id,
                voided_by = %admin.subject,
                "purchase voided"
            );
            Ok(voided_answer(app, &record, deadline).await)
        }
        VoidOutcome::IdempotencyKeyTaken(stored) => replay(app, &request_hash, stored, deadline).await,
        VoidOutcome::NotFound => Err(AppError::PurchaseNotFound),
        VoidOutcome::AlreadyVoided => Err(AppError::PurchaseAlreadyVoided),
        VoidOutcome::AlreadyBilled => Err(AppError::PurchaseAlreadyBilled),
        VoidOutcome::CreditsAlreadyUsed(short) => Err(AppError::CreditsAlreadyUsed {
            credit_type: short.credit_type.as_str().to_owned(),
            short_by: short.short,
        }),
    }
}

/// The 200 of a committed void: the purchase as voided, and the client's balances as they are now. The void
/// stands whatever happens here: balances that cannot be read in the time left are left out.
async fn voided_answer(app: &App, record: &PurchaseRecord, deadline: Instant) -> Response<Body> {
    let account = match tokio::time::timeout_at(deadline.into(), app.store.account(&record.account_id)).await {
        Ok(Ok(Some(account))) => Some(account),
        other => {
            tracing::warn!(purchase_id = %record.purchase_id, outcome = ?other.map(|r| r.map(|_| ())), "voided; balances unreadable");
            None
        }
    };
    let body = PurchaseAnswer {
        purchase: AgencyPurchaseView::of(record),
        balances: account.as_ref().map(|account| BalancesView(&account.balances)),
    };
    json_response(StatusCode::OK, &body)
}

/// Answers a void whose `Idempotency-Key` this agency already used: the purchase that void voided (as it is
/// now: voided), or 422 for another request under the same key.
async fn replay(
    app: &App,
    request_hash: &str,
    stored: StoredIdempotency,
    deadline: Instant,
) -> Result<Response<Body>, AppError> {
    if stored.request_hash != request_hash {
        return Err(AppError::IdempotencyKeyReused);
    }
    let purchase = before_write(deadline, app.store.purchase(&stored.account_id, &stored.purchase_id))
        .await?
        .ok_or_else(|| AppError::Internal(format!("voided purchase {} is gone", stored.purchase_id)))?;
    let mut response = voided_answer(app, &purchase, deadline).await;
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// Runs a read that comes before the write within the budget: if the budget runs out, nothing was written.
async fn before_write<T>(deadline: Instant, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, AppError> {
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(AppError::Unavailable("request budget exhausted before the void was written".into())),
    }
}

/// `{"accountId": "acct-x", "reason": "typo"}`: `accountId` required (the purchase lives in its account's
/// partition), `reason` optional, at most 500 characters; nothing else.
fn parse_void_body(body: &Value) -> Result<VoidBody, AppError> {
    let object = body.as_object().ok_or(AppError::InvalidRequest(RequestError::NotAnObject))?;
    let invalid =
        |field: &str, detail: &str| AppError::InvalidField { field: field.to_owned(), detail: detail.to_owned() };
    if let Some(unknown) = object.keys().find(|k| *k != "accountId" && *k != "reason") {
        return Err(invalid(unknown, &format!("Unknown field `{unknown}`; allowed: `accountId`, `reason`.")));
    }
    let account_id = match object.get("accountId") {
        Some(Value::String(id)) if is_valid_account_id(id) => id.clone(),
        Some(_) => return Err(invalid("accountId", "`accountId` must be 1-64 letters, digits, '-' or '_'.")),
        None => {
            return Err(invalid(
                "accountId",
                "`accountId` (the purchase's account, from the purchases list) is required.",
            ));
        }
    };
    let reason = match object.get("reason") {
        None => None,
        Some(Value::String(reason)) if reason.chars().count() <= MAX_VOID_REASON_CHARS => {
            Some(reason.clone()).filter(|r| !r.is_empty())
        }
        Some(_) => {
            return Err(invalid(
                "reason",
                &format!("`reason` must be a string of at most {MAX_VOID_REASON_CHARS} characters."),
            ));
        }
    };
    Ok(VoidBody { account_id, reason })
}

/// Binds a key to the agency and the request's meaning (purchase, account, reason), not its bytes.
fn void_request_hash(agency_id: &str, purchase_id: &str, body: &VoidBody) -> String {
    idempotency::void_request_hash(agency_id, purchase_id, &body.account_id, body.reason.as_deref())
}

/// Purchase ids are UUIDs in canonical (lowercase, hyphenated) form; anything else names no purchase.
fn is_canonical_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_void_body_needs_its_account_and_nothing_unknown() {
        let ok = parse_void_body(&json!({"accountId": "acct-a", "reason": "typo"})).unwrap();
        assert_eq!(ok, VoidBody { account_id: "acct-a".into(), reason: Some("typo".into()) });
        assert_eq!(parse_void_body(&json!({"accountId": "acct-a", "reason": ""})).unwrap().reason, None);
        let long = "é".repeat(MAX_VOID_REASON_CHARS);
        assert!(parse_void_body(&json!({"accountId": "acct-a", "reason": long})).is_ok());
        for (body, code) in [
            (json!([]), "invalid_body"),
            (json!({}), "invalid_field"),
            (json!({"reason": "x"}), "invalid_field"),
            (json!({"accountId": 3}), "invalid_field"),
            (json!({"accountId": "a#b"}), "invalid_field"),
            (json!({"accountId": "acct-a", "reason": 1}), "invalid_field"),
            (json!({"accountId": "acct-a", "reason": "x".repeat(501)}), "invalid_field"),
            (json!({"accountId": "acct-a", "extra": 1}), "invalid_field"),
        ] {
            assert_eq!(parse_void_body(&body).unwrap_err().code(), code, "{body}");
        }
    }

    #[test]
    fn a_key_binds_the_whole_void() {
        let body = VoidBody { account_id: "acct-a".into(), reason: None };
        let hash = void_request_hash("agency-a", "p", &body);
        assert_eq!(hash, void_request_hash("agency-a", "p", &body.clone()));
        assert_ne!(hash, void_request_hash("agency-a", "q", &body));
        assert_ne!(hash, void_request_hash("agency-b", "p", &body));
        assert_ne!(hash, void_request_hash("agency-a", "p", &VoidBody { reason: Some("x".into()), ..body.clone() }));
        assert_ne!(hash, void_request_hash("agency-a", "p", &VoidBody { account_id: "acct-b".into(), ..body }));
    }

    #[test]
    fn purchase_ids_are_canonical_uuids() {
        assert!(is_canonical_uuid("0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!is_canonical_uuid("0196A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"));
        assert!(!is_canonical_uuid("0196a1b2c3d47e5f8a9b0c1d2e3f4a5b"));
        assert!(!is_canonical_uuid("x"));
    }
}
