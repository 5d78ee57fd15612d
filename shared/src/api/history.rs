//! The dashboard's read routes over billing: a client's purchase history, its statements and the purchase ids
//! of one statement, each paged (`limit`, opaque `cursor`, `nextCursor`) so no answer grows with the account.
//!
//! All answer the client's view only: prices and totals at price, never costs, never agency statements.

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use super::cursor::{CursorKey, CursorList, invalid_cursor};
use super::error::AppError;
use super::http::{authorize, json_response, query_parameter};
use super::{App, load_account, purchase_view, respond};
use crate::domain::billing::{CycleEnd, Statement, StatementKind, StatementRef};
use crate::domain::{is_valid_account_id, round_to_cents};
use crate::storage::{PurchaseKey, StatementKey, StatementPurchasePosition};

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

/// `GET /accounts/{accountId}/credit-purchases?limit=&cursor=`: newest first, `nextCursor` while more follow.
pub async fn list_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let cursors = app.cursor_key()?;
        let limit = page_size(query_parameter(&request, "limit")?.as_deref())?;
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => Some(decode_cursor(cursors, &cursor, &account_id)?),
            None => None,
        };
        load_account(app, &account_id).await?;
        let page = app.store.purchases_newest_first(&account_id, limit, after.as_ref()).await?;
        let purchases: Vec<Value> = page.purchases.iter().map(purchase_view).collect();
        let next_cursor = page.next.as_ref().map(|key| cursors.sign(CursorList::Purchases, key));
        Ok(json_response(StatusCode::OK, &json!({"purchases": purchases, "nextCursor": next_cursor})))
    })
    .await
}

/// The route key of the statement purchases route, as API Gateway sends it.
pub const STATEMENT_PURCHASES_ROUTE_KEY: &str = "GET /accounts/{accountId}/statements/{statementId}/purchases";

/// The `list-statements` function: `GET /accounts/{accountId}/statements` and
/// `GET /accounts/{accountId}/statements/{statementId}/purchases`, told apart by the request's route key (or,
/// without one, by the `statementId` path parameter).
pub async fn list_statements(app: &App, request: Request) -> Response<Body> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.clone(),
        _ => None,
    };
    let purchases_route = match route_key.as_deref() {
        Some(STATEMENT_PURCHASES_ROUTE_KEY) => true,
        Some(key) if key.ends_with("/statements") => false,
        _ => request.path_parameters().first("statementId").is_some(),
    };
    if purchases_route { list_statement_purchases(app, request).await } else { list_statement_page(app, request).await }
}

/// `GET /accounts/{accountId}/statements?limit=&cursor=`: the client's statements, newest cycle first, without
/// their purchase ids (`purchaseCount` says how many; the ids are paged by the purchases route).
async fn list_statement_page(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let cursors = app.cursor_key()?;
        let limit = page_size(query_parameter(&request, "limit")?.as_deref())?;
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => {
                let key: StatementKey = cursors.open(CursorList::Statements, &cursor)?;
                if !key.is_statement_of(&account_id) {
                    return Err(invalid_cursor("not a position in this account's statements"));
                }
                Some(key)
            }
            None => None,
        };
        load_account(app, &account_id).await?;
        let page = app.store.client_statements_page(&account_id, limit, after.as_ref()).await?;
        let statements: Vec<Value> = page.statements.iter().map(statement_view).collect();
        let next_cursor = page.next.as_ref().map(|key| cursors.sign(CursorList::Statements, key));
        Ok(json_response(StatusCode::OK, &json!({"statements": statements, "nextCursor": next_cursor})))
    })
    .await
}

/// `GET /accounts/{accountId}/statements/{statementId}/purchases?limit=&cursor=`: the ids of the purchases one
/// of the client's statements covers, part by part.
async fn list_statement_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let cursors = app.cursor_key()?;
        let limit = page_size(query_parameter(&request, "limit")?.as_deref())?;
        let path_parameters = request.path_parameters();
        let statement_id = path_parameters.first("statementId").ok_or(AppError::InvalidStatementId)?.to_owned();
        let cycle_end = own_statement_cycle_end(&statement_id, &account_id)?;
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => {
                let position: StatementPurchasePosition = cursors.open(CursorList::StatementPurchases, &cursor)?;
                if !position.is_in(&account_id, &cycle_end) {
                    return Err(invalid_cursor("not a position in this statement"));
                }
                Some(position)
            }
            None => None,
        };
        load_account(app, &account_id).await?;
        let page = app
            .store
            .client_statement_purchase_ids(&account_id, &cycle_end, &statement_id, limit, after.as_ref())
            .await?
            .ok_or(AppError::StatementNotFound)?;
        let next_cursor = page.next.as_ref().map(|position| cursors.sign(CursorList::StatementPurchases, position));
        Ok(json_response(
            StatusCode::OK,
            &json!({"statementId": statement_id, "purchaseIds": page.purchase_ids, "nextCursor": next_cursor}),
        ))
    })
    .await
}

/// The cycle end of `statement_id` if it names a client statement of `account_id`, decided before any read.
/// Not the shape of a statement id (the contract's pattern, `{client|agency}-{8 digits}T{6 digits}.{3 digits}Z-
/// {owner}`) is 400; a well-shaped id that names no statement this account can have (an impossible instant, an
/// agency's statement, another account's) is 404, as an unknown one is.
fn own_statement_cycle_end(statement_id: &str, account_id: &str) -> Result<CycleEnd, AppError> {
    if !has_statement_id_shape(statement_id) {
        return Err(AppError::InvalidStatementId);
    }
    match StatementRef::parse(statement_id) {
        Some(reference) if reference.kind == StatementKind::Client && reference.owner == account_id => {
            Ok(reference.cycle_end)
        }
        _ => Err(AppError::StatementNotFound),
    }
}

fn has_statement_id_shape(id: &str) -> bool {
    let Some((kind, rest)) = id.split_once('-') else { return false };
    let b = rest.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    matches!(kind, "client" | "agency")
        && digits(0..8)
        && b.get(8) == Some(&b'T')
        && digits(9..15)
        && b.get(15) == Some(&b'.')
        && digits(16..19)
        && rest.get(19..21) == Some("Z-")
        && rest.get(21..).is_some_and(is_valid_account_id)
}

/// The client's view of a client statement: amounts at price (that is all a client statement holds), and how
/// many purchases it covers; their ids are paged by the statement purchases route.
pub fn statement_view(statement: &Statement) -> Value {
    let lines: Vec<Value> = statement
        .lines
        .iter()
        .map(|line| {
            json!({
                "creditType": line.credit_type.as_str(),
                "quantity": line.quantity,
                "amount": round_to_cents(line.amount).to_string(),
            })
        })
        .collect();
    json!({
        "statementId": statement.statement_id,
        "cycleEnd": statement.cycle_end,
        "status": statement.status,
        "currency": statement.currency,
        "lines": lines,
        "total": round_to_cents(statement.total).to_string(),
        "amountPaid": round_to_cents(statement.amount_paid).to_string(),
        "amountDue": round_to_cents(statement.amount_due).to_string(),
        // When it falls overdue if unpaid; null while its cycle is still being billed.
        "dueAt": statement.due_at,
        "purchaseCount": statement.purchase_count,
        "createdAt": statement.created_at,
    })
}

/// `limit`: absent → 20; else a plain whole number 1..=100.
pub(super) fn page_size(raw: Option<&str>) -> Result<usize, AppError> {
    page_size_or(raw, DEFAULT_PAGE_SIZE)
}

/// `limit`: absent → `default`; else a plain whole number 1..=100.
pub(super) fn page_size_or(raw: Option<&str>, default: usize) -> Result<usize, AppError> {
    let Some(raw) = raw else { return Ok(default) };
    let invalid = || AppError::InvalidQuery {
        parameter: "limit",
        detail: format!("`limit` must be a whole number from 1 to {MAX_PAGE_SIZE} (got {raw:?})."),
    };
    // Digits only: no sign, spaces or exponent; at most three so parsing cannot overflow.
    if raw.is_empty() || raw.len() > 3 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit),
        _ => Err(invalid()),
    }
}

/// Strict: a cursor this API issued for the purchase history (see [`CursorKey::open`]), and the key of a
/// purchase of this very account, so a cursor can only ever move within the caller's own history.
fn decode_cursor(cursors: &CursorKey, cursor: &str, account_id: &str) -> Result<PurchaseKey, AppError> {
    let key: PurchaseKey = cursors.open(CursorList::Purchases, cursor)?;
    if !key.is_purchase_of(account_id) {
        return Err(invalid_cursor("not a position in this account's purchases"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "{\"pk\":\"ACCOUNT#a\"}\u{ff}"] {
            let encoded = URL_SAFE_NO_PAD.encode(text.as_bytes());
            assert!(!encoded.contains('='));
            assert_eq!(URL_SAFE_NO_PAD.decode(&encoded).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(URL_SAFE_NO_PAD.encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(URL_SAFE_NO_PAD.encode([0xfb, 0xff]), "-_8");
        assert!(URL_SAFE_NO_PAD.decode("Zm9vYmFy=").is_err()); // padding
        assert!(URL_SAFE_NO_PAD.decode("Zm9v+mFy").is_err()); // standard alphabet
        assert!(URL_SAFE_NO_PAD.decode("Zm9vY").is_err()); // dangling character
        assert!(URL_SAFE_NO_PAD.decode("Zh").is_err()); // non-zero leftover bits ("Zg" is canonical)
        assert_eq!(URL_SAFE_NO_PAD.decode("Zg").unwrap(), b"f");
    }

    #[test]
    fn page_size_is_strict() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some("1")).unwrap(), 1);
        assert_eq!(page_size(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "abc", "", "-1", "+5", " 5", "5.0", "1e2", "1000"] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_only_move_within_the_callers_account() {
        let cursors = CursorKey::random();
        let key = PurchaseKey::of("acct-a", "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        let cursor = cursors.sign(CursorList::Purchases, &key);
        assert_eq!(decode_cursor(&cursors, &cursor, "acct-a").unwrap(), key);
        assert!(decode_cursor(&cursors, &cursor, "acct-b").is_err());
        // Signed by us, yet not a position in this account's purchases: still refused.
        let other = |json: &str| {
            let position: serde_json::Value = serde_json::from_str(json).unwrap();
            decode_cursor(&cursors, &cursors.sign(CursorList::Purchases, &position), "acct-a")
        };
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"ACCOUNT"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#not-a-uuid"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#0196A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"STATEMENT#2026-12-01T00:00:00.000Z"}"#).is_err());
        assert!(
            other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","x":1}"#).is_err()
        );
        assert!(other(r#"{"pk":"ACCOUNT#acct-a"}"#).is_err());
        assert!(decode_cursor(&cursors, "", "acct-a").is_err());
        assert!(decode_cursor(&cursors, &"A".repeat(600), "acct-a").is_err());
        // The unsigned form: refused whatever it says.
        let unsigned = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&key).unwrap());
        assert!(decode_cursor(&cursors, &unsigned, "acct-a").is_err());
    }
}
