//! Who may call the agency routes, and the client routes, against a real dynoxide server: every agency route
//! refuses a client token, a member of the agency without the admin role, and another agency's administrator,
//! and writes nothing; an agency administrator's token is refused on every client route.

use serde_json::{Value, json};
use shared::api::agency::AgencyRoute;
use shared::api::{self, App};
use testkit::{
    ApiEvent, BALANCES_ROUTE, COFFEE, PRICING_ROUTE, PURCHASES_ROUTE, STATEMENTS_ROUTE, TestEnv, answer, assert_problem,
};

const NORTHWIND: &str = "agency-northwind";
const BRIGHTSIDE: &str = "agency-brightside";

/// A well-formed request for `route` on `agency`'s data (so only the caller decides the answer).
fn agency_request(route: AgencyRoute, agency: &str) -> ApiEvent {
    let (method, path) = route.route_key().split_once(' ').expect("METHOD /path");
    let event = ApiEvent::agency(method, path, agency)
        .path_parameter("accountId", COFFEE)
        .path_parameter("purchaseId", "0190d5a0-0000-7000-8000-000000000000")
        .header("if-match", "\"1\"");
    match route {
        AgencyRoute::PutPricing => event.json(&json!({"prices": {"audience": "30.00"}})),
        AgencyRoute::PutCreditLimit => event.json(&json!({"creditLimit": "100.00"})),
        AgencyRoute::VoidPurchase => event.json(&json!({"accountId": COFFEE})),
        _ => event,
    }
}

async fn call(app: &App, route: AgencyRoute, event: ApiEvent) -> testkit::Answer {
    let request = event.request();
    answer(if route.writes() { api::agency_write(app, request).await } else { api::agency_read(app, request).await })
}

#[tokio::test]
async fn only_the_agencys_own_administrator_passes_the_door_of_any_agency_route() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    for route in AgencyRoute::ALL {
        let refusals: [(&str, ApiEvent, u16, &str); 5] = [
            ("no token", agency_request(route, NORTHWIND), 401, "unauthenticated"),
            ("a client's token", agency_request(route, NORTHWIND).as_account(COFFEE), 403, "agency_admin_required"),
            (
                "a client's token naming its agency",
                agency_request(route, NORTHWIND)
                    .claims(json!({"sub": "u", "custom:account_id": COFFEE, "custom:agency_id": NORTHWIND})),
                403,
                "agency_admin_required",
            ),
            (
                "the agency's member without the role",
                agency_request(route, NORTHWIND).as_agency_member(NORTHWIND),
                403,
                "agency_admin_required",
            ),
            (
                "another agency's administrator",
                agency_request(route, NORTHWIND).as_agency_admin(BRIGHTSIDE),
                403,
                "forbidden",
            ),
        ];
        for (who, event, status, code) in refusals {
            let a = call(&env.app, route, event).await;
            assert_eq!(a.status, status, "{route:?} with {who}: {}", a.body);
            assert_problem(&a, status, code);
        }
    }
    assert_eq!(env.snapshot().await, before, "a refused agency request wrote something");
}

/// The HTTP API's JWT authorizer hands a list claim over as `[a b c]` (the names joined by a space in brackets)
/// and a single-string claim as the string itself; those are the only forms read, and a name is never split.
#[tokio::test]
async fn the_groups_claim_is_read_in_the_forms_the_authorizer_hands_over_and_never_split_inside_a_name() {
    let env = TestEnv::seeded().await;
    let route = AgencyRoute::GetPricing;
    for groups in ["[agency-admin]", "[finance agency-admin]", "[agency-admin finance]", "agency-admin"] {
        let claims = json!({"sub": "a", "custom:agency_id": BRIGHTSIDE, "cognito:groups": groups});
        let a = call(&env.app, route, agency_request(route, NORTHWIND).claims(claims)).await;
        assert_problem(&a, 403, "forbidden"); // an admin, of another agency: past the role check
    }
    for groups in [
        "[agency-admins]",
        "[not-agency-admin]",
        "",
        "[]",
        // One group whose name holds a comma (Cognito allows punctuation in a name): not the admin group.
        "viewers,agency-admin",
        "[viewers,agency-admin]",
        "[finance viewers,agency-admin]",
        // Quotes and brackets are part of a name, never stripped from one.
        "[\"agency-admin\"]",
        "[\"finance\",\"agency-admin\"]",
        "[[agency-admin]]",
        "agency-admin]",
        "[agency-admin",
    ] {
        let claims = json!({"sub": "a", "custom:agency_id": NORTHWIND, "cognito:groups": groups});
        let a = call(&env.app, route, agency_request(route, NORTHWIND).claims(claims)).await;
        assert_problem(&a, 403, "agency_admin_required");
    }
}

#[tokio::test]
async fn an_agency_administrators_token_calls_no_client_route_and_writes_nothing() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    // Even a token that names the client's account as well: client routes act as the client, never for it.
    let admin = json!({"sub": "a", "custom:agency_id": "agency-northwind", "cognito:groups": "[agency-admin]", "custom:account_id": COFFEE});
    let purchase = json!({"quantities": {"audience": 1}});
    let calls: Vec<(&str, Value)> = vec![
        ("pricing", Value::Null),
        ("balances", Value::Null),
        ("purchases", Value::Null),
        ("purchase", purchase),
        ("statements", Value::Null),
    ];
    for (what, body) in calls {
        let event = match what {
            "pricing" => ApiEvent::new("GET", PRICING_ROUTE, COFFEE),
            "balances" => ApiEvent::new("GET", BALANCES_ROUTE, COFFEE),
            "purchases" => ApiEvent::new("GET", PURCHASES_ROUTE, COFFEE),
            "statements" => ApiEvent::new("GET", STATEMENTS_ROUTE, COFFEE),
            _ => ApiEvent::new("POST", PURCHASES_ROUTE, COFFEE).json(&body),
        }
        .claims(admin.clone());
        let request = event.request();
        let a = answer(match what {
            "pricing" => api::get_pricing(&env.app, request).await,
            "balances" => api::get_balances(&env.app, request).await,
            "purchases" => api::list_purchases(&env.app, request).await,
            "statements" => api::list_statements(&env.app, request).await,
            _ => api::purchase_credits(&env.app, request).await,
        });
        assert_problem(&a, 403, "forbidden");
    }
    assert_eq!(env.snapshot().await, before);
}
