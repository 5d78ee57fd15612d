//! `GET /accounts/{accountId}/ledger?type=&limit=&cursor=`: the client's ledger entries, newest first, each with
//! every type's balance after it, paged like the purchase history (strict opaque cursor, `nextCursor`).
//!
//! Served by the `list-purchases` function as its second route (one function fewer to build and deploy; both
//! routes need the same reads on the account's own partition), told apart by the request's route key.

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value, json};

use super::cursor::{CursorList, invalid_cursor};
use super::error::AppError;
use super::history::{list_purchases, page_size};
use super::http::{authorize, json_response, query_parameter};
use super::{App, respond};
use crate::domain::CreditType;
use crate::domain::ledger::{EntryType, LedgerEntry};
use crate::storage::LedgerPosition;

/// The route key of the ledger route, as API Gateway sends it.
pub const LEDGER_ROUTE_KEY: &str = "GET /accounts/{accountId}/ledger";

/// The `list-purchases` function: `GET /accounts/{accountId}/credit-purchases` and
/// `GET /accounts/{accountId}/ledger`, told apart by the route key (or, without one, by the path).
pub async fn list_purchases_or_ledger(app: &App, request: Request) -> Response<Body> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.clone(),
        _ => None,
    };
    let ledger = match route_key.as_deref() {
        Some(LEDGER_ROUTE_KEY) => true,
        Some(key) if key.ends_with("/credit-purchases") => false,
        _ => request.uri().path().trim_end_matches('/').ends_with("/ledger"),
    };
    if ledger { list_ledger(app, request).await } else { list_purchases(app, request).await }
}

/// `GET /accounts/{accountId}/ledger?type=&limit=&cursor=`
pub async fn list_ledger(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings)?;
        let cursors = app.cursor_key()?;
        let limit = page_size(query_parameter(&request, "limit")?.as_deref())?;
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
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => {
                let position: LedgerPosition = cursors.open(CursorList::Ledger, &cursor)?;
                if !position.is_entry_of(&account_id) {
                    return Err(invalid_cursor("not a position in this account's ledger"));
                }
                Some(position)
            }
            None => None,
        };
        let page =
            app.store.ledger_page(&account_id, limit, after.as_ref(), only).await?.ok_or(AppError::AccountNotFound)?;
        let entries: Vec<Value> = page.entries.iter().map(|(entry, after)| entry_view(entry, after)).collect();
        let next_cursor = page.next.as_ref().map(|position| cursors.sign(CursorList::Ledger, position));
        Ok(json_response(StatusCode::OK, &json!({"entries": entries, "nextCursor": next_cursor})))
    })
    .await
}

/// The client's view of an entry: what moved, why, and every type's balance after it. Who made an adjustment
/// is the operator's business and is not shown.
pub fn entry_view(entry: &LedgerEntry, balances_after: &std::collections::BTreeMap<CreditType, i64>) -> Value {
    let quantities: Map<String, Value> =
        entry.quantities.iter().map(|(t, q)| (t.as_str().to_owned(), json!(q))).collect();
    let after: Map<String, Value> = CreditType::ALL
        .into_iter()
        .map(|t| (t.as_str().to_owned(), json!(balances_after.get(&t).copied().unwrap_or(0))))
        .collect();
    let mut view = json!({
        "entryId": entry.entry_id,
        "type": entry.entry_type.as_str(),
        "createdAt": entry.created_at,
        "quantities": quantities,
        "balancesAfter": after,
    });
    let object = view.as_object_mut().expect("an object");
    for (name, value) in [
        ("reason", &entry.reason),
        ("reference", &entry.reference),
        ("consumptionId", &entry.consumption_id),
        ("purchaseId", &entry.purchase_id),
    ] {
        if let Some(value) = value {
            object.insert(name.to_owned(), json!(value));
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cursor::CursorKey;

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
