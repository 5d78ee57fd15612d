//! DynamoDB calls per request, counted by an interceptor on the real SDK client.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared::api::{self, App, Settings};
use shared::domain::CreditType;
use testkit::{ApiEvent, COFFEE, PRICING_ROUTE, TestEnv, answer};

fn pricing_event() -> ApiEvent {
    ApiEvent::new("GET", PRICING_ROUTE, COFFEE).as_account(COFFEE)
}

async fn set_northwind_audience_price(env: &TestEnv, price: &str) {
    env.set_seeded_agency_price("agency-northwind", CreditType::Audience, price).await;
}

#[tokio::test]
async fn a_warm_purchase_is_one_transaction_plus_the_balances_read() {
    let env = TestEnv::seeded().await;
    env.operations.reset(); // forget the seeding
    let cold = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}})).request())
            .await,
    );
    assert_eq!(cold.status, 201);
    assert_eq!(env.operations.operations(), ["GetItem", "BatchGetItem", "TransactWriteItems", "GetItem"]);

    env.operations.reset();
    let warm = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}})).request())
            .await,
    );
    assert_eq!(warm.status, 201);
    assert_eq!(warm.body["balances"]["audience"], 2);
    assert_eq!(env.operations.operations(), ["TransactWriteItems", "GetItem"]);
}

#[tokio::test]
async fn a_warm_purchase_with_prefer_minimal_is_exactly_one_call() {
    let env = TestEnv::seeded().await;
    let _ = api::get_pricing(&env.app, pricing_event().request()).await; // warms the cache, as the dashboard does
    env.operations.reset();
    let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 2}, "expectedTotal": "20.00"}))
        .header("Prefer", "return=minimal");
    let a = answer(api::purchase_credits(&env.app, event.request()).await);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.header("preference-applied"), Some("return=minimal"));
    assert!(a.body.get("balances").is_none());
    assert_eq!(a.body["purchase"]["total"], "20.00");
    let calls = env.operations.operations();
    assert!(calls.len() <= 1, "a warm purchase made {} DynamoDB calls: {calls:?}", calls.len());
    assert_eq!(calls, ["TransactWriteItems"]);
    // The write really happened.
    assert_eq!(env.app.store.account(COFFEE).await.unwrap().unwrap().balances.get(CreditType::Pixel), 2);
}

#[tokio::test]
async fn warm_get_pricing_makes_no_call_and_shows_a_change_after_the_ttl() {
    let mut env = TestEnv::seeded().await;
    let ttl = Duration::from_millis(300);
    env.app = App::new(env.app.store.clone(), Settings { pricing_cache_ttl: ttl, ..Settings::default() });
    let first = answer(api::get_pricing(&env.app, pricing_event().request()).await);
    assert_eq!(first.body["prices"][0]["pricePerCredit"], "25.00");
    set_northwind_audience_price(&env, "26.00").await;
    env.operations.reset();
    let cached = answer(api::get_pricing(&env.app, pricing_event().request()).await);
    assert_eq!(cached.body["prices"][0]["pricePerCredit"], "25.00", "within the TTL the cached price is shown");
    assert!(env.operations.operations().is_empty());
    tokio::time::sleep(ttl).await;
    let fresh = answer(api::get_pricing(&env.app, pricing_event().request()).await);
    assert_eq!(fresh.body["prices"][0]["pricePerCredit"], "26.00", "after the TTL the new price is shown");
}

#[tokio::test]
async fn a_cached_price_that_changed_is_never_charged() {
    let env = TestEnv::seeded().await;
    let _ = api::get_pricing(&env.app, pricing_event().request()).await;
    set_northwind_audience_price(&env, "26.00").await;
    env.operations.reset();

    // The client still believes 25.00: 409 with the new prices, nothing written.
    let before = env.snapshot().await;
    let stale = answer(
        api::purchase_credits(
            &env.app,
            ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}, "expectedTotal": "50.00"})).request(),
        )
        .await,
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert_eq!(stale.body["total"], "52.00");
    assert_eq!(stale.body["currentPricing"]["prices"][0]["pricePerCredit"], "26.00");
    assert_eq!(env.snapshot().await, before);
    assert_eq!(env.operations.operations(), ["TransactWriteItems", "GetItem", "BatchGetItem"]);

    // Without expectedTotal the refreshed price is charged: one failed check, one refresh, one write.
    let _ = api::get_pricing(&env.app, pricing_event().request()).await;
    set_northwind_audience_price(&env, "27.00").await;
    env.operations.reset();
    let ok = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}})).request())
            .await,
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["purchase"]["lines"][0]["unitPrice"], "27.00");
    assert_eq!(ok.body["purchase"]["total"], "54.00");
    assert_eq!(
        env.operations.operations(),
        ["TransactWriteItems", "GetItem", "BatchGetItem", "TransactWriteItems", "GetItem"]
    );
    let records = env.app.store.all_purchases(COFFEE).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].lines[0].unit_price, "27.00".parse::<Decimal>().unwrap());
}
