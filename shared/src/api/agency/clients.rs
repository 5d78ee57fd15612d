//! `GET /agencies/{agencyId}/clients` and `PUT /agencies/{agencyId}/clients/{accountId}/credit-limit`.
//!
//! The clients page comes from the `agency-items` index (one Query, never a Scan), which projects each account
//! item whole, running unbilled sums included: what each client owes this cycle under the asking agency, never
//! what it bought under an agency it left, and its last statement under this agency. A limit change is the credit line storage function's, written with its audit entry in one transaction.

use std::collections::HashMap;
use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

use super::super::cursor::CursorList;
use super::super::error::AppError;
use super::super::http::{authorize_agency, json_body, json_response};
use super::super::paging::{AGENCY_PAGE_SIZE, Paging};
use super::super::views::{
    BalancesView, ClientView, ClientsPage, CreditLimitView, CreditLineView, LastStatementView, UnbilledView,
};
use super::super::{App, respond};
use crate::domain::agency::{LimitRequestError, parse_credit_limit};
use crate::domain::billing::{Statement, StatementKind};
use crate::domain::{self, CURRENCY, is_valid_account_id};
use crate::storage::{ClientLimitOutcome, ClientPosition, LimitChangeBy};

/// `GET /agencies/{agencyId}/clients?limit=&cursor=`: by account id, each with its balances, its line, its hold,
/// what it owes this cycle at price and at cost, and its last statement under this agency; the agency's own line
/// (at cost) beside them.
///
/// The last statements cost one BatchGetItem per page whatever the clients bought: each account item (which the
/// page reads anyway) names its latest statement per agency, and the statements are then read by key. Their
/// status and settlement change after billing, so they are read, not copied onto the account item.
pub async fn list_clients(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let paging = Paging::read(app, &request, AGENCY_PAGE_SIZE)?;
        let after = paging.after(
            &request,
            CursorList::AgencyClients,
            |position: &ClientPosition| position.is_client_of(&admin.agency_id),
            "not a position in this agency's clients",
        )?;
        let clients_and_statements = async {
            let page = app.store.agency_clients_page(&admin.agency_id, paging.limit, after.as_ref()).await?;
            let ids: Vec<String> = page.clients.iter().filter_map(|row| row.last_statement_id.clone()).collect();
            let statements = app.store.statements_by_id(&ids).await?;
            Ok::<_, crate::storage::StoreError>((page, statements))
        };
        let ((page, statements), agency_line) =
            tokio::try_join!(clients_and_statements, app.store.agency_line(&admin.agency_id))?;
        let by_id: HashMap<&str, &Statement> = statements.iter().map(|s| (s.statement_id.as_str(), s)).collect();
        let clients = page
            .clients
            .iter()
            .map(|row| ClientView {
                account_id: &row.account.account_id,
                name: row.account.name.as_deref(),
                balances: BalancesView(&row.account.balances),
                credit_line: row.account.credit_line.as_ref().map(CreditLineView::of),
                hold_statement_id: row.account.hold_statement_id(),
                unbilled: UnbilledView::of(&row.unbilled),
                // The attribute it came from is this agency's.
                last_statement: row
                    .last_statement_id
                    .as_deref()
                    .and_then(|id| client_statement(&by_id, id, &row.account.account_id))
                    .map(LastStatementView::of),
            })
            .collect();
        let body = ClientsPage {
            agency_id: &admin.agency_id,
            currency: CURRENCY,
            agency_credit_line: agency_line.as_ref().map(CreditLineView::of),
            clients,
            next_cursor: paging.next_cursor(CursorList::AgencyClients, page.next.as_ref()),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// The statement `id` of a page's statements (read by id), only if it is a client statement of this very account:
/// the id names its owner, so another's never shows on a client's row. The clients page and the overview both.
pub(super) fn client_statement<'a>(
    by_id: &HashMap<&str, &'a Statement>,
    id: &str,
    account_id: &str,
) -> Option<&'a Statement> {
    by_id.get(id).copied().filter(|s| s.kind == StatementKind::Client && s.owner_id == account_id)
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
        Ok(json_response(
            StatusCode::OK,
            &CreditLimitView { account_id: &account_id, credit_line: CreditLineView::of(&line) },
        ))
    })
    .await
}
