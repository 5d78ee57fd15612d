//! The dashboard's read routes over billing: a client's purchase history, its statements and the purchase ids
//! of one statement, each paged (`limit`, opaque `cursor`, `nextCursor`) so no answer grows with the account.
//!
//! All answer the client's view only: prices and totals at price, never costs, never agency statements.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

use super::cursor::{CursorKey, CursorList, invalid_cursor};
use super::error::AppError;
use super::http::{authorize, json_response, query_parameter};
use super::paging::{DEFAULT_PAGE_SIZE, Paging};
use super::routing::route_of;
use super::views::{PurchaseView, PurchasesPage, StatementPurchasesPage, StatementView, StatementsPage};
use super::{App, load_account, respond};
use crate::domain::billing::{CycleEnd, StatementKind, StatementRef};
use crate::domain::is_valid_account_id;
use crate::storage::{PurchaseKey, StatementKey, StatementPurchasePosition};

/// `GET /accounts/{accountId}/credit-purchases?limit=&cursor=`: newest first, `nextCursor` while more follow.
pub async fn list_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let paging = Paging::read(app, &request, DEFAULT_PAGE_SIZE)?;
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => Some(decode_cursor(app.cursor_key()?, &cursor, &account_id)?),
            None => None,
        };
        load_account(app, &account_id).await?;
        let page = app.store.purchases_newest_first(&account_id, paging.limit, after.as_ref()).await?;
        let body = PurchasesPage {
            purchases: page.purchases.iter().map(PurchaseView::of).collect(),
            next_cursor: paging.next_cursor(CursorList::Purchases, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// The route key of the statement purchases route, as API Gateway sends it.
pub const STATEMENT_PURCHASES_ROUTE_KEY: &str = "GET /accounts/{accountId}/statements/{statementId}/purchases";
/// The route key of the statements route.
pub const STATEMENTS_ROUTE_KEY: &str = "GET /accounts/{accountId}/statements";

/// The `list-statements` function: `GET /accounts/{accountId}/statements` and
/// `GET /accounts/{accountId}/statements/{statementId}/purchases`, told apart by the request's route key (or,
/// without one, by the path, else by the `statementId` path parameter).
pub async fn list_statements(app: &App, request: Request) -> Response<Body> {
    let routes = [STATEMENTS_ROUTE_KEY, STATEMENT_PURCHASES_ROUTE_KEY];
    let purchases_route = match route_of(&request, &routes, |key| key) {
        Some(key) => key == STATEMENT_PURCHASES_ROUTE_KEY,
        None => request.path_parameters().first("statementId").is_some(),
    };
    if purchases_route { list_statement_purchases(app, request).await } else { list_statement_page(app, request).await }
}

/// `GET /accounts/{accountId}/statements?limit=&cursor=`: the client's statements, newest cycle first, without
/// their purchase ids (`purchaseCount` says how many; the ids are paged by the purchases route).
async fn list_statement_page(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let paging = Paging::read(app, &request, DEFAULT_PAGE_SIZE)?;
        let after = paging.after(
            &request,
            CursorList::Statements,
            |key: &StatementKey| key.is_statement_of(&account_id),
            "not a position in this account's statements",
        )?;
        load_account(app, &account_id).await?;
        let page = app.store.client_statements_page(&account_id, paging.limit, after.as_ref()).await?;
        let body = StatementsPage {
            statements: page.statements.iter().map(StatementView::of).collect(),
            next_cursor: paging.next_cursor(CursorList::Statements, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// `GET /accounts/{accountId}/statements/{statementId}/purchases?limit=&cursor=`: the ids of the purchases one
/// of the client's statements covers, part by part.
async fn list_statement_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let paging = Paging::read(app, &request, DEFAULT_PAGE_SIZE)?;
        let path_parameters = request.path_parameters();
        let statement_id = path_parameters.first("statementId").ok_or(AppError::InvalidStatementId)?.to_owned();
        let cycle_end = own_statement_cycle_end(&statement_id, &account_id)?;
        let after = paging.after(
            &request,
            CursorList::StatementPurchases,
            |position: &StatementPurchasePosition| position.is_in(&account_id, &cycle_end),
            "not a position in this statement",
        )?;
        load_account(app, &account_id).await?;
        let page = app
            .store
            .client_statement_purchase_ids(&account_id, &cycle_end, &statement_id, paging.limit, after.as_ref())
            .await?
            .ok_or(AppError::StatementNotFound)?;
        let body = StatementPurchasesPage {
            statement_id: &statement_id,
            purchase_ids: &page.purchase_ids,
            next_cursor: paging.next_cursor(CursorList::StatementPurchases, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
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
