//! The client's consumption rules: `GET/PUT /accounts/{accountId}/alerts` (a low-balance threshold per credit
//! type) and `GET/PUT /accounts/{accountId}/topups` (an auto top-up rule per type, with the daily cap and
//! today's count). A PUT replaces the whole map (`{}` removes them all) in one `UpdateItem` of the account item
//! that also moves `rulesVersion` up by one; a change applies to the next consumption.
//!
//! No function of their own (each costs a build and a deploy): served by the two client functions whose roles
//! already allow exactly what they do on the account item. The reads by `get-balances` (GetItem of the account,
//! the item they read), the changes by `purchase-credits` (UpdateItem of the account, which its purchase
//! transaction already holds): no role gains a permission, and the read-only function stays read-only.

use std::time::SystemTime;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::error::AppError;
use super::http::{authorize, json_body, json_response};
use super::routing::route_of;
use super::views::{AlertsView, TopupsView};
use super::{App, get_balances, load_account, respond};
use crate::domain::Account;
use crate::domain::rules::{RuleError, TopupsOnDay, parse_alert_thresholds, parse_topup_rules};

/// One rules route: its route key (as in `infra/template.yaml`) and whether it changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesRoute {
    GetAlerts,
    PutAlerts,
    GetTopups,
    PutTopups,
}

impl RulesRoute {
    pub const ALL: [RulesRoute; 4] =
        [RulesRoute::GetAlerts, RulesRoute::PutAlerts, RulesRoute::GetTopups, RulesRoute::PutTopups];

    pub fn route_key(self) -> &'static str {
        match self {
            RulesRoute::GetAlerts => "GET /accounts/{accountId}/alerts",
            RulesRoute::PutAlerts => "PUT /accounts/{accountId}/alerts",
            RulesRoute::GetTopups => "GET /accounts/{accountId}/topups",
            RulesRoute::PutTopups => "PUT /accounts/{accountId}/topups",
        }
    }

    /// Whether the route changes the rules (served by `purchase-credits`; the reads by `get-balances`).
    pub fn writes(self) -> bool {
        matches!(self, RulesRoute::PutAlerts | RulesRoute::PutTopups)
    }

    /// The rules route of a request, if it is one: by its route key, or without one by method and path.
    pub fn of(request: &Request) -> Option<RulesRoute> {
        route_of(request, &RulesRoute::ALL, RulesRoute::route_key)
    }
}

/// The `get-balances` function: `GET .../balances`, `GET .../alerts` and `GET .../topups`.
pub async fn balances_or_rules(app: &App, request: Request) -> Response<Body> {
    match RulesRoute::of(&request) {
        None => get_balances(app, request).await,
        Some(route) if !route.writes() => serve(app, route, request).await,
        Some(route) => misrouted(app, route).await,
    }
}

/// A rules route's handler. The function serving it decides which routes it takes ([`RulesRoute::writes`]).
pub async fn serve(app: &App, route: RulesRoute, request: Request) -> Response<Body> {
    match route {
        RulesRoute::GetAlerts => get_alerts(app, request).await,
        RulesRoute::PutAlerts => put_alerts(app, request).await,
        RulesRoute::GetTopups => get_topups(app, request).await,
        RulesRoute::PutTopups => put_topups(app, request).await,
    }
}

/// A route this function does not serve reached it: the template wires it wrong, our fault.
pub async fn misrouted(app: &App, route: RulesRoute) -> Response<Body> {
    respond(app, async { Err(AppError::Internal(format!("route {route:?} is not served by this function"))) }).await
}

/// `GET /accounts/{accountId}/alerts`
pub async fn get_alerts(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings)?;
        let account = load_account(app, &account_id).await?;
        Ok(json_response(StatusCode::OK, &AlertsView::of(&account_id, &account.rules.alert_thresholds)))
    })
    .await
}

/// `PUT /accounts/{accountId}/alerts` with `{"thresholds": {"audience": 100}}`: the whole map replaced.
pub async fn put_alerts(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        // Everything the request alone can tell is checked before the write.
        let account_id = authorize(&request, &app.settings)?;
        let thresholds = parse_alert_thresholds(&json_body(&request)?).map_err(invalid_field)?;
        let account =
            app.store.set_alert_thresholds(&account_id, &thresholds).await?.ok_or(AppError::AccountNotFound)?;
        tracing::info!(%account_id, version = account.rules.version, "alert thresholds set");
        Ok(json_response(StatusCode::OK, &AlertsView::of(&account_id, &account.rules.alert_thresholds)))
    })
    .await
}

/// `GET /accounts/{accountId}/topups`
pub async fn get_topups(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings)?;
        let account = load_account(app, &account_id).await?;
        Ok(json_response(StatusCode::OK, &topups_view(app, &account)))
    })
    .await
}

/// `PUT /accounts/{accountId}/topups` with `{"rules": {"audience": {"below": 50, "buy": 500}}}`: the whole map
/// replaced.
pub async fn put_topups(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings)?;
        let rules = parse_topup_rules(&json_body(&request)?).map_err(invalid_field)?;
        let account = app.store.set_topup_rules(&account_id, &rules).await?.ok_or(AppError::AccountNotFound)?;
        tracing::info!(%account_id, version = account.rules.version, "top-up rules set");
        Ok(json_response(StatusCode::OK, &topups_view(app, &account)))
    })
    .await
}

fn topups_view<'a>(app: &App, account: &'a Account) -> TopupsView<'a> {
    let now = crate::domain::time::timestamp(SystemTime::now());
    // The timestamp starts with its UTC day, `YYYY-MM-DD`: the day the count is kept for.
    let today = &now[..10];
    let count = TopupsOnDay::count_on(account.topups.as_ref(), today);
    TopupsView::of(&account.account_id, &account.rules.topups, app.settings.auto_topup_daily_cap, count)
}

fn invalid_field(error: RuleError) -> AppError {
    AppError::InvalidField { field: error.field, detail: error.message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routing::matches_template;

    #[test]
    fn rules_routes_match_their_own_paths_only() {
        assert!(matches_template(RulesRoute::PutAlerts.route_key(), "PUT", "/accounts/a/alerts"));
        assert!(!matches_template(RulesRoute::PutAlerts.route_key(), "GET", "/accounts/a/alerts"));
        assert!(!matches_template(RulesRoute::GetTopups.route_key(), "GET", "/accounts/a/balances"));
        assert_eq!(RulesRoute::ALL.iter().filter(|r| r.writes()).count(), 2);
    }
}
