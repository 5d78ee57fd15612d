//! The dashboard's read routes over billing: a client's purchase history and its statements.
//!
//! Both answer the client's view only: prices and totals at price, never costs, never agency statements.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::api::{App, load_account, purchase_view, respond};
use crate::billing::Statement;
use crate::domain::round_to_cents;
use crate::error::AppError;
use crate::http::{authorize, json_response, query_parameter};
use crate::storage::billing::PurchaseKey;

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

/// A cursor is a purchase key (~130 bytes of JSON); anything much longer is not one of ours.
const MAX_CURSOR_CHARS: usize = 512;

/// `GET /accounts/{accountId}/credit-purchases?limit=&cursor=`: newest first, `nextCursor` while more follow.
pub async fn list_purchases(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let account_id = authorize(&request, &app.settings.account_claim)?;
        let limit = page_size(query_parameter(&request, "limit").as_deref())?;
        let after = match query_parameter(&request, "cursor") {
            Some(cursor) => Some(decode_cursor(&cursor, &account_id)?),
            None => None,
        };
        load_account(app, &account_id).await?;
        let page = app.store.purchases_newest_first(&account_id, limit, after.as_ref()).await?;
        let purchases: Vec<Value> = page.purchases.iter().map(purchase_view).collect();
        let next_cursor = page.next.as_ref().map(encode_cursor);
        Ok(json_response(StatusCode::OK, &json!({"purchases": purchases, "nextCursor": next_cursor})))
    })
    .await
}

/// `GET /accounts/{accountId}/statements`: the client's statements, newest cycle first.
pub async fn list_statements(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings.account_claim)?;
        load_account(app, &account_id).await?;
        let statements = app.store.client_statements(&account_id).await?;
        let statements: Vec<Value> = statements.iter().map(statement_view).collect();
        Ok(json_response(StatusCode::OK, &json!({"statements": statements})))
    })
    .await
}

/// The client's view of a client statement: amounts at price (that is all a client statement holds).
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
        "purchaseCount": statement.purchase_count,
        "purchaseIds": statement.purchase_ids,
        "createdAt": statement.created_at,
    })
}

/// `limit`: absent → 20; else a plain whole number 1..=100.
fn page_size(raw: Option<&str>) -> Result<usize, AppError> {
    let Some(raw) = raw else { return Ok(DEFAULT_PAGE_SIZE) };
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

fn invalid_cursor(why: &str) -> AppError {
    AppError::InvalidQuery {
        parameter: "cursor",
        detail: format!("`cursor` must be a `nextCursor` from this account's previous page: {why}."),
    }
}

/// Base64url (no padding) of the JSON of the page's last key.
fn encode_cursor(key: &PurchaseKey) -> String {
    base64url_encode(serde_json::to_string(key).expect("a purchase key serialises").as_bytes())
}

/// Strict: canonical base64url, exactly `{"pk", "sk"}`, and the key of a purchase of this very account, so a
/// cursor can only ever move within the caller's own history.
fn decode_cursor(cursor: &str, account_id: &str) -> Result<PurchaseKey, AppError> {
    if cursor.is_empty() || cursor.len() > MAX_CURSOR_CHARS {
        return Err(invalid_cursor("wrong length"));
    }
    let bytes = base64url_decode(cursor).ok_or_else(|| invalid_cursor("not base64url"))?;
    let key: PurchaseKey = serde_json::from_slice(&bytes).map_err(|_| invalid_cursor("not a position"))?;
    if !key.is_purchase_of(account_id) {
        return Err(invalid_cursor("not a position in this account's purchases"));
    }
    Ok(key)
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let bits = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..chunk.len() + 1 {
            out.push(char::from(BASE64URL[(bits >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// Decodes unpadded base64url; `None` for any other character, a dangling character or non-zero leftover
/// bits, so each byte string has exactly one accepted encoding.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| BASE64URL.iter().position(|&a| a == c).map(|v| v as u32);
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        let leftover_mask = match produced {
            1 => 0xFFFF,
            2 => 0xFF,
            _ => 0,
        };
        if bits & leftover_mask != 0 {
            return None;
        }
        for i in 0..produced {
            out.push((bits >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "{\"pk\":\"ACCOUNT#a\"}\u{ff}"] {
            let encoded = base64url_encode(text.as_bytes());
            assert!(!encoded.contains('='));
            assert_eq!(base64url_decode(&encoded).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(base64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert!(base64url_decode("Zm9vYmFy=").is_none()); // padding
        assert!(base64url_decode("Zm9v+mFy").is_none()); // standard alphabet
        assert!(base64url_decode("Zm9vY").is_none()); // dangling character
        assert!(base64url_decode("Zh").is_none()); // non-zero leftover bits ("Zg" is canonical)
        assert_eq!(base64url_decode("Zg").unwrap(), b"f");
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
        let key = PurchaseKey::of("acct-a", "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        let cursor = encode_cursor(&key);
        assert_eq!(decode_cursor(&cursor, "acct-a").unwrap(), key);
        assert!(decode_cursor(&cursor, "acct-b").is_err());
        let other = |json: &str| decode_cursor(&base64url_encode(json.as_bytes()), "acct-a");
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"ACCOUNT"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#not-a-uuid"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#0196A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"}"#).is_err());
        assert!(other(r#"{"pk":"ACCOUNT#acct-a","sk":"STATEMENT#2026-12-01T00:00:00.000Z"}"#).is_err());
        assert!(
            other(r#"{"pk":"ACCOUNT#acct-a","sk":"PURCHASE#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","x":1}"#).is_err()
        );
        assert!(other(r#"{"pk":"ACCOUNT#acct-a"}"#).is_err());
        assert!(decode_cursor("", "acct-a").is_err());
        assert!(decode_cursor(&"A".repeat(600), "acct-a").is_err());
    }
}
