//! `GET /accounts/{accountId}/ledger?type=&limit=&cursor=`: the client's ledger entries, newest first, each with
//! every type's balance after it, paged like the purchase history (strict opaque cursor, `nextCursor`).
//!
//! Served by the `list-purchases` function as its second route (one function fewer to build and deploy; both
//! routes need the same reads on the account's own partition), told apart by the request's route key.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::cursor::CursorList;
use super::error::AppError;
use super::history::list_purchases;
use super::http::{authorize, json_response, query_parameter};
use super::paging::{DEFAULT_PAGE_SIZE, Paging};
use super::routing::route_of;
use super::views::{LedgerEntryView, LedgerPage};
use super::{App, respond};
use crate::domain::ledger::EntryType;
use crate::storage::LedgerPosition;

/// The route key of the ledger route, as API Gateway sends it.
pub const LEDGER_ROUTE_KEY: &str = "GET /accounts/{accountId}/ledger";
/// The route key of the purchase history, the function's other route.
pub const PURCHASES_ROUTE_KEY: &str = "GET /accounts/{accountId}/credit-purchases";

/// The `list-purchases` function: `GET /accounts/{accountId}/credit-purchases` and
/// `GET /accounts/{accountId}/ledger`, told apart by the route key (or, without one, by the path).
pub async fn list_purchases_or_ledger(app: &App, request: Request) -> Response<Body> {
    let ledger = match route_of(&request, &[PURCHASES_ROUTE_KEY, LEDGER_ROUTE_KEY], |key| key) {
        Some(key) => key == LEDGER_ROUTE_KEY,
        None => request.uri().path().trim_end_matches('/').ends_with("/ledger"),
    };
    if ledger { list_ledger(app, request).await } else { list_purchases(app, request).await }
}

/// `GET /accounts/{accountId}/ledger?type=&limit=&cursor=`
pub async fn list_ledger(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let paging = Paging::read(app, &request, DEFAULT_PAGE_SIZE)?;
        let only = match query_parameter(&request, "type")? {
            None => None,
            Some(name) => Some(EntryType::parse(&name).ok_or_else(|| AppError::InvalidQuery {
                parameter: "type",
                detail: format!(
                    "`type` must be one of {} (got {name:?}).",
                    EntryType::ALL.map(EntryType::as_str).join(", ")
                ),
            })?),
        };
        let after = paging.after(
            &request,
            CursorList::Ledger,
            |position: &LedgerPosition| position.is_entry_of(&account_id),
            "not a position in this account's ledger",
        )?;
        let page = app
            .store
            .ledger_page(&account_id, paging.limit, after.as_ref(), only)
            .await?
            .ok_or(AppError::AccountNotFound)?;
        let body = LedgerPage {
            entries: page.entries.iter().map(|(entry, after)| LedgerEntryView::of(entry, after)).collect(),
            next_cursor: paging.next_cursor(CursorList::Ledger, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cursor::CursorKey;
    use crate::domain::CreditType;
    use serde_json::Value;

    #[test]
    fn ledger_cursors_only_move_within_the_callers_ledger() {
        let cursors = CursorKey::random();
        let position = LedgerPosition {
            pk: "ACCOUNT#acct-a".into(),
            sk: "LEDGER#2026-11-26T01:00:00.000Z#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            balances: [(CreditType::Audience, 3)].into(),
        };
        let cursor = cursors.sign(CursorList::Ledger, &position);
        let decoded: LedgerPosition = cursors.open(CursorList::Ledger, &cursor).unwrap();
        assert!(decoded.is_entry_of("acct-a"));
        assert!(!decoded.is_entry_of("acct-b"));
        assert!(cursors.open::<LedgerPosition>(CursorList::Purchases, &cursor).is_err());
        let other = |json: &str| {
            let position: Value = serde_json::from_str(json).unwrap();
            cursors.open::<LedgerPosition>(CursorList::Ledger, &cursors.sign(CursorList::Ledger, &position))
        };
        for bad in [
            r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","balances":{}}"#,
            r#"{"pk":"ACCOUNT#acct-a","sk":"LEDGER#yesterday#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","balances":{}}"#,
            r#"{"pk":"ACCOUNT#acct-a","sk":"LEDGER#2026-11-26T01:00:00.000Z#not-a-uuid","balances":{}}"#,
        ] {
            assert!(!other(bad).unwrap().is_entry_of("acct-a"), "{bad}");
        }
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"LEDGER#x","balances":{"gold":1}}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"LEDGER#x","balances":{},"x":1}"#).is_err());
    }
}
