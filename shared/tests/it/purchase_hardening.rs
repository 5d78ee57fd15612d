//! The holes an adversarial review found in the purchase route, each against the real dynoxide: duplicate JSON
//! keys, the request budget around a committed write, 409s from a stale cache, sub-cent lines, malformed
//! idempotency keys and query parameters, per-account keys, and replays that show the purchase as it is now.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::api::{self, Settings};
use shared::billing::{self, BillingRun};
use shared::domain::CreditType;
use shared::domain::billing::CycleEnd;
use testkit::faults::Fault;
use testkit::{Answer, ApiEvent, BIKES, COFFEE, PRICING_ROUTE, PURCHASES_ROUTE, TestEnv, answer, assert_problem};

async fn buy(app: &api::App, event: ApiEvent) -> Answer {
    answer(api::purchase_credits(app, event.request()).await)
}

async fn pricing(app: &api::App, account: &str) -> Answer {
    answer(api::get_pricing(app, ApiEvent::new("GET", PRICING_ROUTE, account).as_account(account).request()).await)
}

fn price_of<'a>(pricing: &'a Value, credit_type: &str) -> &'a Value {
    pricing["prices"].as_array().unwrap().iter().find(|p| p["creditType"] == credit_type).unwrap()
}

#[tokio::test]
async fn duplicate_keys_at_any_depth_are_refused_and_write_nothing() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    for (body, field) in [
        (r#"{"quantities":{"audience":1},"quantities":{"audience":1000000}}"#, "quantities"),
        (r#"{"quantities":{"audience":1,"audience":1000000}}"#, "audience"),
        (r#"{"quantities":{"audience":1},"expectedTotal":"25.00","expectedTotal":"0.00"}"#, "expectedTotal"),
    ] {
        let event = ApiEvent::new("POST", PURCHASES_ROUTE, COFFEE)
            .as_account(COFFEE)
            .header("content-type", "application/json")
            .raw_body(body);
        let a = buy(&env.app, event).await;
        assert_problem(&a, 400, "duplicate_field");
        assert_eq!(a.body["field"], field, "{body}");
    }
    assert_eq!(env.snapshot().await, before);
    // The same key in two different objects is no duplicate.
    let fine = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}}));
    assert_eq!(buy(&env.app, fine).await.status, 201);
}

#[tokio::test]
async fn a_write_still_in_flight_when_the_budget_ends_says_it_may_have_gone_through() {
    let mut env = TestEnv::seeded().await;
    env.app.settings = Settings { request_budget: Duration::from_millis(400), ..Settings::default() };
    // Warm the caches, so the budget is spent on the write alone.
    assert_eq!(pricing(&env.app, COFFEE).await.status, 200);
    env.faults.inject("TransactWriteItems", Fault::SlowResponse(Duration::from_millis(1500)), 1);

    let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 3}})).header("Idempotency-Key", "slow-1");
    let a = buy(&env.app, event).await;
    assert_problem(&a, 503, "service_unavailable");
    assert_eq!(a.body["outcome"], "unknown");
    let detail = a.body["detail"].as_str().unwrap();
    assert!(detail.contains("may have gone through"), "{detail}");
    assert!(!detail.contains("Nothing was charged"), "{detail}");

    // It had gone through: the retry with the same key gets that purchase back, and only one exists.
    let retry = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 3}})).header("Idempotency-Key", "slow-1");
    let again = buy(&env.app, retry).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert!(env.drift(COFFEE).await.is_empty());
}

#[tokio::test]
async fn a_committed_purchase_is_a_201_even_when_the_budget_ends_before_the_balances_read() {
    let mut env = TestEnv::seeded().await;
    env.app.settings = Settings { request_budget: Duration::from_millis(500), ..Settings::default() };
    assert_eq!(pricing(&env.app, COFFEE).await.status, 200);
    // The write answers in time; the balances read after it would outlive the budget.
    env.faults.inject("GetItem", Fault::SlowResponse(Duration::from_millis(2000)), 1);
    let a = buy(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}}))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body.get("balances").is_none(), "{}", a.body);
    assert_eq!(a.body["purchase"]["total"], "50.00");
    assert_eq!(env.faults.injected(), [("GetItem".to_owned(), Fault::SlowResponse(Duration::from_millis(2000)))]);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_budget_that_ends_before_the_write_says_nothing_was_charged() {
    let mut env = TestEnv::seeded().await;
    env.app.settings = Settings { request_budget: Duration::from_millis(300), ..Settings::default() };
    // Cold caches: the first read is slow, so the budget ends before anything is written.
    env.faults.inject("GetItem", Fault::SlowResponse(Duration::from_millis(1000)), 1);
    let before = env.snapshot().await;
    let a = buy(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}}))).await;
    assert_problem(&a, 503, "service_unavailable");
    assert!(a.body.get("outcome").is_none(), "{}", a.body);
    assert!(a.body["detail"].as_str().unwrap().contains("Nothing was charged"), "{}", a.body);
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn a_409_never_shows_an_instances_stale_cached_price() {
    let env = TestEnv::seeded().await;
    // This instance caches 25.00; then the agency raises the price to 27.00.
    assert_eq!(price_of(&pricing(&env.app, COFFEE).await.body, "audience")["pricePerCredit"], "25.00");
    env.set_seeded_agency_price("agency-northwind", CreditType::Audience, "27.00").await;

    // A client that already saw 27.00 (on another instance) confirms it: charged 27.00, no 409.
    let seen_new = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}, "expectedTotal": "27.00"}));
    let a = buy(&env.app, seen_new).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["purchase"]["lines"][0]["unitPrice"], "27.00");

    // Again with a stale cache and a client that saw the old price: the 409 shows what it would cost now.
    env.set_seeded_agency_price("agency-northwind", CreditType::Audience, "25.00").await;
    assert_eq!(price_of(&pricing(&env.app, COFFEE).await.body, "audience")["pricePerCredit"], "27.00");
    let before = env.snapshot().await;
    let old = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}, "expectedTotal": "27.00"}));
    let conflict = buy(&env.app, old).await;
    assert_problem(&conflict, 409, "price_changed");
    assert_eq!(price_of(&conflict.body["currentPricing"], "audience")["pricePerCredit"], "25.00");
    assert_eq!(conflict.body["total"], "25.00");
    assert_eq!(env.snapshot().await, before);
    // Confirming the price the 409 showed goes through at once.
    let confirmed = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}, "expectedTotal": "25.00"}));
    assert_eq!(buy(&env.app, confirmed).await.status, 201);
}

#[tokio::test]
async fn a_line_worth_less_than_a_cent_is_refused_with_its_minimum() {
    let env = TestEnv::seeded().await;
    // 0.0040 per credit: one credit would be 0.004, billed as 0.00.
    env.set_seeded_agency_price("agency-northwind", CreditType::Enrichment, "0.0040").await;
    let shown = pricing(&env.app, COFFEE).await;
    assert_eq!(price_of(&shown.body, "enrichment")["minimumQuantity"], 2, "{}", shown.body);
    assert_eq!(price_of(&shown.body, "audience")["minimumQuantity"], 1);

    let before = env.snapshot().await;
    let a = buy(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"enrichment": 1, "audience": 1}}))).await;
    assert_problem(&a, 400, "line_below_minimum");
    assert_eq!(a.body["creditType"], "enrichment");
    assert_eq!(a.body["minimumQuantity"], 2);
    assert_eq!(env.snapshot().await, before);

    let ok = buy(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"enrichment": 2}}))).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["purchase"]["total"], "0.01");
}

#[tokio::test]
async fn idempotency_keys_that_would_not_survive_http_are_refused() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    for key in ["   ", " click", "click ", "click-1,click-2", ","] {
        let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}})).header("Idempotency-Key", key);
        let a = buy(&env.app, event).await;
        assert_problem(&a, 400, "invalid_idempotency_key");
    }
    assert_eq!(env.snapshot().await, before);
    let inner_space =
        ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}})).header("Idempotency-Key", "a b");
    assert_eq!(buy(&env.app, inner_space).await.status, 201);
}

#[tokio::test]
async fn repeated_or_comma_joined_query_parameters_are_refused() {
    let env = TestEnv::seeded().await;
    for query in ["limit=5&limit=500", "limit=5,6", "cursor=a&cursor=b"] {
        let event = ApiEvent::new("GET", PURCHASES_ROUTE, COFFEE).as_account(COFFEE).query(query);
        let a = answer(api::list_purchases(&env.app, event.request()).await);
        assert_problem(&a, 400, "invalid_query_parameter");
    }
    let event = ApiEvent::new("GET", PURCHASES_ROUTE, COFFEE).as_account(COFFEE).query("limit=5");
    assert_eq!(answer(api::list_purchases(&env.app, event.request()).await).status, 200);
}

#[tokio::test]
async fn keys_are_per_account_and_a_replay_reveals_nothing_of_other_accounts() {
    let env = TestEnv::seeded().await;
    let body = json!({"quantities": {"pixel": 1}});
    let coffee = buy(&env.app, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "shared-key")).await;
    // Another tenant uses the same key, even with another body: its own purchase, not a 422.
    let bikes_body = json!({"quantities": {"pixel": 2}});
    let bikes = buy(&env.app, ApiEvent::purchase(BIKES, &bikes_body).header("Idempotency-Key", "shared-key")).await;
    assert_eq!((coffee.status, bikes.status), (201, 201), "{} {}", coffee.body, bikes.body);
    assert_eq!(bikes.header("idempotent-replayed"), None);
    // And each account's replay returns its own purchase.
    let coffee_again = buy(&env.app, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "shared-key")).await;
    let bikes_again =
        buy(&env.app, ApiEvent::purchase(BIKES, &bikes_body).header("Idempotency-Key", "shared-key")).await;
    assert_eq!(coffee_again.body["purchase"]["purchaseId"], coffee.body["purchase"]["purchaseId"]);
    assert_eq!(bikes_again.body["purchase"]["purchaseId"], bikes.body["purchase"]["purchaseId"]);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert_eq!(env.app.store.all_purchases(BIKES).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_replay_after_billing_shows_the_purchase_as_it_is_now() {
    let env = TestEnv::seeded().await;
    let body = json!({"quantities": {"audience": 1}});
    let first = buy(&env.app, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "billed-later")).await;
    assert_eq!(first.body["purchase"]["billedToClient"], false);

    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let summary = billing::run_billing(&env.app.store, &BillingRun::new(cycle_end)).await.unwrap();
    assert_eq!(summary.purchases_billed_to_client, 1);

    for minimal in [false, true] {
        let mut event = ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "billed-later");
        if minimal {
            event = event.header("Prefer", "return=minimal");
        }
        let replay = buy(&env.app, event).await;
        assert_eq!(replay.status, 201, "{}", replay.body);
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        assert_eq!(replay.body["purchase"]["purchaseId"], first.body["purchase"]["purchaseId"]);
        assert_eq!(replay.body["purchase"]["billedToClient"], true);
        assert_eq!(replay.body["purchase"]["billedToAgency"], true);
        assert_eq!(replay.body["purchase"]["lines"], first.body["purchase"]["lines"]);
    }
}
