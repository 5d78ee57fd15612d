//! `GET /agencies/{agencyId}/clients` and `PUT /agencies/{agencyId}/clients/{accountId}/credit-limit`.
//!
//! The clients page comes from the `agency-items` index (one Query, never a Scan), which projects each account
//! item whole, running unbilled sums included: what each client owes this cycle under the asking agency, never
//! what it bought under an agency it left. A limit
//! change is the credit line storage function's, written with its audit entry in one transaction.

use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::super::cursor::{CursorList, invalid_cursor};
use super::super::error::AppError;
use super::super::http::{authorize_agency, json_body, json_response, query_parameter};
use super::super::{App, balances_map, respond};
use super::pricing::page_size;
use crate::domain::agency::{LimitRequestError, parse_credit_limit};
use crate::domain::credit::CreditLine;
use crate::domain::{self, CURRENCY, is_valid_account_id, round_to_cents};
use crate::storage::{ClientLimitOutcome, ClientPosition, LimitChangeBy, UnbilledSums};

/// `GET /agencies/{agencyId}/clients?limit=&cursor=`: by account id, each with its balances, its line, its hold
/// and what it owes this cycle at price and at cost; the agency's own line (at cost) beside them.
pub async fn list_clients(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let cursors = app.cursor_key()?;
        let limit = page_size(query_parameter(&request, "limit")?.as_deref())?;
        let after = match query_parameter(&request, "cursor")? {
            Some(cursor) => {
                let position: ClientPosition = cursors.open(CursorList::AgencyClients, &cursor)?;
                if !position.is_client_of(&admin.agency_id) {
                    return Err(invalid_cursor("not a position in this agency's clients"));
                }
                Some(position)
            }
            None => None,
        };
        let (page, agency_line) = tokio::try_join!(
            app.store.agency_clients_page(&admin.agency_id, limit, after.as_ref()),
            app.store.agency_line(&admin.agency_id),
        )?;
        let clients: Vec<Value> = page
            .clients
            .iter()
            .map(|(client, unbilled)| {
                json!({
                    "accountId": client.account_id,
                    "name": client.name,
                    "balances": balances_map(&client.balances),
                    "creditLine": client.credit_line.as_ref().map(line_view),
                    "holdStatementId": client.hold_statement_id(),
                    "unbilled": unbilled_view(unbilled),
                })
            })
            .collect();
        let next_cursor = page.next.as_ref().map(|position| cursors.sign(CursorList::AgencyClients, position));
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "agencyId": admin.agency_id,
                "currency": CURRENCY,
                "agencyCreditLine": agency_line.as_ref().map(line_view),
                "clients": clients,
                "nextCursor": next_cursor,
            }),
        ))
    })
    .await
}

/// `PUT /agencies/{agencyId}/clients/{accountId}/credit-limit` with `{"creditLimit": "20000.00"}`.
pub async fn put_credit_limit(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let path_parameters = request.path_parameters();
        let account_id = path_parameters.first("accountId").ok_or(AppError::InvalidAccountId)?.to_owned();
        if !is_valid_account_id(&account_id) {
            return Err(AppError::InvalidAccountId);
        }
        let limit = parse_credit_limit(&json_body(&request)?).map_err(|e| match e {
            LimitRequestError::InvalidField { field, detail } => AppError::InvalidField { field, detail },
            LimitRequestError::InvalidLimit(why) => AppError::InvalidCreditLimit(why),
        })?;
        let changed_at = domain::time::timestamp(SystemTime::now());
        let by = LimitChangeBy { agency_id: &admin.agency_id, changed_by: &admin.subject, changed_at: &changed_at };
        let line = match app.store.set_client_credit_limit(&account_id, limit, by).await? {
            // Unknown accounts and other agencies' clients look the same.
            ClientLimitOutcome::NotAClient => return Err(AppError::ClientNotFound),
            ClientLimitOutcome::Unchanged(line) => line,
            ClientLimitOutcome::Set { line, audit } => {
                tracing::info!(
                    agency_id = %audit.agency_id,
                    account_id = %audit.account_id,
                    old_limit = ?audit.old_limit,
                    new_limit = %audit.new_limit,
                    by = %audit.changed_by,
                    "credit limit changed"
                );
                line
            }
        };
        Ok(json_response(StatusCode::OK, &json!({"accountId": account_id, "creditLine": line_view(&line)})))
    })
    .await
}

/// A line as the balances route shows it: a line lowered below what is owed has nothing available (0.00).
fn line_view(line: &CreditLine) -> Value {
    json!({
        "limit": round_to_cents(line.limit).to_string(),
        "outstanding": round_to_cents(line.outstanding()).to_string(),
        "available": round_to_cents(line.available.max(Decimal::ZERO)).to_string(),
    })
}

/// What a client owes this cycle, and the agency's margin on it.
fn unbilled_view(sums: &UnbilledSums) -> Value {
    json!({
        "purchases": sums.purchases,
        "atPrice": round_to_cents(sums.at_price).to_string(),
        "atCost": round_to_cents(sums.at_cost).to_string(),
        "margin": round_to_cents(sums.at_price - sums.at_cost).to_string(),
    })
}
