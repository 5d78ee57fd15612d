//! The agency's routes, `/agencies/{agencyId}/...`: an agency administrator's token only (see
//! [`super::http::authorize_agency`]), acting on its own agency and its own clients. Costs and margins are
//! shown here and never on a client route.
//!
//! Two functions serve them, grouped by the access they need (least privilege against build time):
//! - `agency-read` ([`agency_read`]): the GET routes, reads only;
//! - `agency-write` ([`agency_write`]): the changes (prices, credit limits, voids), each one transaction
//!   with its audit entry or ledger entry.
//!
//! - [`pricing`]: prices, costs and margins, the audited price change with `If-Match`, the price history.
//! - [`clients`]: the clients with their balances, lines and unbilled amounts; the audited credit limit.
//! - [`purchases`]: the clients' purchases with cost and margin, the void, the agency's statements.
//! - [`overview`]: what needs attention (holds, lines near their limit, failed collections) and the cycle per day.

use lambda_http::{Body, Request, Response};

use super::error::AppError;
use super::routing::route_of;
use super::{App, respond};

pub mod clients;
pub mod overview;
pub mod pricing;
pub mod purchases;

/// One agency route: its method, its path template (as the route key names it) and where it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgencyRoute {
    GetPricing,
    PutPricing,
    PricingHistory,
    ListClients,
    PutCreditLimit,
    ListPurchases,
    VoidPurchase,
    ListStatements,
    Overview,
}

impl AgencyRoute {
    pub const ALL: [AgencyRoute; 9] = [
        AgencyRoute::GetPricing,
        AgencyRoute::PutPricing,
        AgencyRoute::PricingHistory,
        AgencyRoute::ListClients,
        AgencyRoute::PutCreditLimit,
        AgencyRoute::ListPurchases,
        AgencyRoute::VoidPurchase,
        AgencyRoute::ListStatements,
        AgencyRoute::Overview,
    ];

    /// The route key API Gateway sends (`METHOD /path/{param}`), as in `infra/template.yaml`.
    pub fn route_key(self) -> &'static str {
        match self {
            AgencyRoute::GetPricing => "GET /agencies/{agencyId}/pricing",
            AgencyRoute::PutPricing => "PUT /agencies/{agencyId}/pricing",
            AgencyRoute::PricingHistory => "GET /agencies/{agencyId}/pricing/history",
            AgencyRoute::ListClients => "GET /agencies/{agencyId}/clients",
            AgencyRoute::PutCreditLimit => "PUT /agencies/{agencyId}/clients/{accountId}/credit-limit",
            AgencyRoute::ListPurchases => "GET /agencies/{agencyId}/purchases",
            AgencyRoute::VoidPurchase => "POST /agencies/{agencyId}/purchases/{purchaseId}/void",
            AgencyRoute::ListStatements => "GET /agencies/{agencyId}/statements",
            AgencyRoute::Overview => "GET /agencies/{agencyId}/overview",
        }
    }

    /// Whether the route changes anything (served by `agency-write`).
    pub fn writes(self) -> bool {
        matches!(self, AgencyRoute::PutPricing | AgencyRoute::PutCreditLimit | AgencyRoute::VoidPurchase)
    }

    /// The route of a request: by its route key, or without one (a hand-made event) by method and path shape.
    pub fn of(request: &Request) -> Option<AgencyRoute> {
        route_of(request, &AgencyRoute::ALL, AgencyRoute::route_key)
    }
}

/// The `agency-read` function: every GET route of the agency.
pub async fn agency_read(app: &App, request: Request) -> Response<Body> {
    match AgencyRoute::of(&request) {
        Some(AgencyRoute::GetPricing) => pricing::get_pricing(app, request).await,
        Some(AgencyRoute::PricingHistory) => pricing::pricing_history(app, request).await,
        Some(AgencyRoute::ListClients) => clients::list_clients(app, request).await,
        Some(AgencyRoute::ListPurchases) => purchases::list_purchases(app, request).await,
        Some(AgencyRoute::ListStatements) => purchases::list_statements(app, request).await,
        Some(AgencyRoute::Overview) => overview::overview(app, request).await,
        other => misrouted(app, other).await,
    }
}

/// The `agency-write` function: the agency's changes.
pub async fn agency_write(app: &App, request: Request) -> Response<Body> {
    match AgencyRoute::of(&request) {
        Some(AgencyRoute::PutPricing) => pricing::put_pricing(app, request).await,
        Some(AgencyRoute::PutCreditLimit) => clients::put_credit_limit(app, request).await,
        Some(AgencyRoute::VoidPurchase) => purchases::void_purchase(app, request).await,
        other => misrouted(app, other).await,
    }
}

/// A route this function does not serve reached it: the template wires it wrong, our fault.
async fn misrouted(app: &App, route: Option<AgencyRoute>) -> Response<Body> {
    respond(app, async { Err(AppError::Internal(format!("route {route:?} is not served by this function"))) }).await
}
