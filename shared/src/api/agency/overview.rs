//! `GET /agencies/{agencyId}/overview?cycle=YYYY-MM`: what needs the agency's attention (clients on hold, clients
//! above 80% of their line, failed collections) and its cycle's purchases and margin per day.
//!
//! Every read is bounded: the clients come from the same pages as the clients route
//! ([`crate::storage::Store::agency_clients_page`], pages of 100, at most
//! [`OVERVIEW_MAX_CLIENTS`]), their held statements from one BatchGetItem (at most [`OVERVIEW_MAX_STATEMENTS`]),
//! the days from one Query of the agency's day sums (at most 31 items; written by the purchase and void
//! transactions, so no purchase is read). At most 7 DynamoDB calls; past a bound the answer says `truncated`.

use std::collections::HashMap;
use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::super::error::AppError;
use super::super::http::{authorize_agency, json_response, query_parameter};
use super::super::views::{
    CreditLineView, CycleView, FailedCollectionView, HeldClientView, LastStatementView, NearLimitView, OverviewView,
    money,
};
use super::super::{App, respond};
use super::clients::client_statement;
use crate::domain::CURRENCY;
use crate::domain::billing::Statement;
use crate::domain::overview::{
    Month, OVERVIEW_CLIENTS_PAGE, OVERVIEW_MAX_CLIENTS, OVERVIEW_MAX_STATEMENTS, collection_failed, cycle_series,
    date_of, near_limit,
};
use crate::storage::{ClientRow, StoreError};

/// `GET /agencies/{agencyId}/overview`
pub async fn overview(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before any read.
        let admin = authorize_agency(&request, &app.settings)?;
        let now = SystemTime::now();
        let month = match query_parameter(&request, "cycle")? {
            Some(text) => Month::parse(&text).ok_or_else(|| AppError::InvalidQuery {
                parameter: "cycle",
                detail: format!("`cycle` must be a month as YYYY-MM, 2000-01 or later (got {text:?})."),
            })?,
            None => Month::containing(now),
        };
        let today = date_of(now);
        let agency_id = admin.agency_id.as_str();

        let attention = async {
            let (clients, more) = clients_up_to_cap(app, agency_id).await?;
            let (ids, all_read) = held_statement_ids(&clients);
            let statements = app.store.statements_by_id(&ids).await?;
            Ok::<_, StoreError>((clients, more || !all_read, statements))
        };
        let days = async {
            let first = month.first_date();
            if first > today {
                return Ok(Vec::new()); // a cycle not begun: nothing to read
            }
            let last = month.last_date().min(today.clone());
            let count = month.days().min(last[8..].parse().unwrap_or(31));
            app.store.agency_days(agency_id, &first, &last, count).await
        };
        let ((clients, truncated, statements), days) = tokio::try_join!(attention, days)?;
        let by_id: HashMap<&str, &Statement> = statements.iter().map(|s| (s.statement_id.as_str(), s)).collect();

        let mut on_hold = Vec::new();
        let mut near = Vec::new();
        let mut failed = Vec::new();
        for row in &clients {
            let account = &row.account;
            if let Some(hold_statement_id) = account.hold_statement_id() {
                let held: Vec<&Statement> = account
                    .held_statement_ids
                    .iter()
                    .filter_map(|id| client_statement(&by_id, id, &account.account_id))
                    .collect();
                let all_read = held.len() == account.held_statement_ids.len();
                on_hold.push(HeldClientView {
                    account_id: &account.account_id,
                    name: account.name.as_deref(),
                    hold_statement_id,
                    held_statements: account.held_statement_ids.len(),
                    amount_due: all_read.then(|| money(held.iter().map(|s| s.amount_due).sum())),
                    statement: client_statement(&by_id, hold_statement_id, &account.account_id)
                        .map(LastStatementView::of),
                });
                failed.extend(
                    held.into_iter().filter(|s| collection_failed(s)).map(|s| FailedCollectionView::of(account, s)),
                );
            }
            if let Some(line) = &account.credit_line
                && let Some(percent) = near_limit(line)
            {
                near.push((
                    percent,
                    NearLimitView {
                        account_id: &account.account_id,
                        name: account.name.as_deref(),
                        credit_line: CreditLineView::of(line),
                        used_percent: percent.map(|p| p.to_string()),
                    },
                ));
            }
        }
        // Most used first (a zero limit with something owed first of all), then by account id.
        near.sort_by(|(a, x), (b, y)| {
            let a = a.unwrap_or(rust_decimal::Decimal::MAX);
            let b = b.unwrap_or(rust_decimal::Decimal::MAX);
            b.cmp(&a).then_with(|| x.account_id.cmp(y.account_id))
        });
        let body = OverviewView {
            agency_id,
            currency: CURRENCY,
            clients_read: clients.len(),
            truncated,
            on_hold,
            near_limit: near.into_iter().map(|(_, view)| view).collect(),
            failed_collections: failed,
            cycle: CycleView::of(&cycle_series(month, &today, &days)),
        };
        Ok(json_response(StatusCode::OK, &body))
    })
    .await
}

/// The agency's clients, by account id, in pages of the clients route, up to [`OVERVIEW_MAX_CLIENTS`]; and
/// whether more were left unread.
async fn clients_up_to_cap(app: &App, agency_id: &str) -> Result<(Vec<ClientRow>, bool), StoreError> {
    let mut clients = Vec::new();
    let mut after = None;
    while clients.len() < OVERVIEW_MAX_CLIENTS {
        let page = app.store.agency_clients_page(agency_id, OVERVIEW_CLIENTS_PAGE, after.as_ref()).await?;
        clients.extend(page.clients);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((clients, false)),
        }
    }
    Ok((clients, true))
}

/// The held statements to read, client by client, while they fit in one BatchGetItem; and whether all did.
fn held_statement_ids(clients: &[ClientRow]) -> (Vec<String>, bool) {
    let mut ids = Vec::new();
    for row in clients {
        let held = &row.account.held_statement_ids;
        if ids.len() + held.len() > OVERVIEW_MAX_STATEMENTS {
            return (ids, false);
        }
        ids.extend(held.iter().cloned());
    }
    (ids, true)
}
