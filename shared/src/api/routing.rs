//! Which route a request is for, for a function that serves several: by the route key API Gateway sends
//! (`GET /accounts/{accountId}/ledger`), or, without one (a hand-made event, or `$default`), by method and path
//! against each route key's template.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The route of `request` among `routes`, each named by its route key (`key`), as in `infra/template.yaml`.
pub fn route_of<R: Copy>(request: &Request, routes: &[R], key: impl Fn(R) -> &'static str) -> Option<R> {
    let route_key = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.as_deref(),
        _ => None,
    };
    match route_key {
        Some(sent) if sent != "$default" => routes.iter().copied().find(|route| key(*route) == sent),
        _ => {
            let method = request.method().as_str();
            let path = request.uri().path().trim_end_matches('/');
            routes.iter().copied().find(|route| matches_template(key(*route), method, path))
        }
    }
}

/// `GET /agencies/{agencyId}/pricing` matches method `GET` and path `/agencies/x/pricing`.
pub fn matches_template(route_key: &str, method: &str, path: &str) -> bool {
    let Some((route_method, template)) = route_key.split_once(' ') else { return false };
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    route_method == method
        && loop {
            match (template.next(), path.next()) {
                (None, None) => break true,
                (Some(t), Some(p)) if t.starts_with('{') || t == p => {}
                _ => break false,
            }
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agency::AgencyRoute;

    #[test]
    fn paths_match_their_templates_only() {
        let put_limit = AgencyRoute::PutCreditLimit.route_key();
        assert!(matches_template(put_limit, "PUT", "/agencies/a/clients/b/credit-limit"));
        assert!(!matches_template(put_limit, "GET", "/agencies/a/clients/b/credit-limit"));
        assert!(!matches_template(put_limit, "PUT", "/agencies/a/clients/b"));
        assert!(!matches_template(AgencyRoute::GetPricing.route_key(), "GET", "/agencies/a/pricing/history"));
        assert!(matches_template(AgencyRoute::PricingHistory.route_key(), "GET", "/agencies/a/pricing/history"));
    }
}
