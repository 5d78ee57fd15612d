//! The handlers against a real dynoxide server through the real SDK: every route, every status.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::api::{self, Settings};
use shared::domain::CreditType;
use testkit::{
    ApiEvent, BAKERY, BALANCES_ROUTE, BIKES, COFFEE, DENTAL, PRICING_ROUTE, PURCHASES_ROUTE, TestEnv, answer,
    assert_problem, d, event_json, request_from_event,
};

async fn buy(env: &TestEnv, event: ApiEvent) -> testkit::Answer {
    answer(api::purchase_credits(&env.app, event.request()).await)
}

async fn pricing(env: &TestEnv, account: &str) -> testkit::Answer {
    let event = ApiEvent::new("GET", PRICING_ROUTE, account).as_account(account);
    answer(api::get_pricing(&env.app, event.request()).await)
}

async fn balances(env: &TestEnv, account: &str) -> Value {
    let event = ApiEvent::new("GET", BALANCES_ROUTE, account).as_account(account);
    let a = answer(api::get_balances(&env.app, event.request()).await);
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["balances"].clone()
}

#[tokio::test]
async fn sample_events_answer_as_documented() {
    let env = TestEnv::seeded().await;
    let cases = [
        ("get-pricing.json", 200),
        ("get-pricing-bad-input.json", 400),
        ("get-pricing-forbidden.json", 403),
        ("get-balances.json", 200),
        ("get-balances-bad-input.json", 400),
        ("get-balances-forbidden.json", 403),
        ("purchase-credits-bad-input.json", 400),
        ("purchase-credits-forbidden.json", 403),
        ("purchase-credits.json", 201),
    ];
    for (file, status) in cases {
        let request = request_from_event(&event_json(file));
        let response = if file.starts_with("get-pricing") {
            api::get_pricing(&env.app, request).await
        } else if file.starts_with("get-balances") {
            api::get_balances(&env.app, request).await
        } else {
            api::purchase_credits(&env.app, request).await
        };
        let a = answer(response);
        assert_eq!(a.status, status, "{file}: {}", a.body);
    }
    // The sample purchase is the example: 10 audience at 25.00 and 5 pixel at 10.00.
    assert_eq!(balances(&env, COFFEE).await, json!({"audience": 10, "enrichment": 0, "pixel": 5, "custom_model": 0}));
}

#[tokio::test]
async fn pricing_shows_agency_prices_over_defaults_and_never_costs() {
    let env = TestEnv::seeded().await;

    let coffee = pricing(&env, COFFEE).await;
    assert_eq!(coffee.status, 200);
    assert_eq!(coffee.body["currency"], "USD");
    let prices: Vec<(String, String, String)> = coffee.body["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["creditType"].as_str().unwrap().to_owned(),
                p["pricePerCredit"].as_str().unwrap().to_owned(),
                p["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        prices,
        vec![
            ("audience".into(), "25.00".into(), "agency".into()),
            ("enrichment".into(), "0.75".into(), "agency".into()),
            ("pixel".into(), "10.00".into(), "agency".into()),
            ("custom_model".into(), "120.00".into(), "agency".into()),
        ]
    );

    // Brightside overrides some prices; the rest fall back to the platform default.
    let dental = pricing(&env, DENTAL).await;
    let by_type = |body: &Value, t: &str| {
        body["prices"].as_array().unwrap().iter().find(|p| p["creditType"] == t).unwrap().clone()
    };
    assert_eq!(
        by_type(&dental.body, "enrichment"),
        json!({"creditType": "enrichment", "pricePerCredit": "0.4150", "minimumQuantity": 1, "source": "agency"})
    );
    assert_eq!(
        by_type(&dental.body, "pixel"),
        json!({"creditType": "pixel", "pricePerCredit": "12.00", "minimumQuantity": 1, "source": "default"})
    );

    // An agency that set nothing gets every default.
    let bakery = pricing(&env, BAKERY).await;
    assert!(bakery.body["prices"].as_array().unwrap().iter().all(|p| p["source"] == "default"));

    for body in [&coffee.body, &dental.body, &bakery.body] {
        let text = body.to_string().to_lowercase();
        assert!(!text.contains("cost"), "a pricing response leaks a cost: {text}");
        // Costs of the seeds that differ from every price must not appear either.
        for cost in ["17.50", "18.00", "6.25", "80.00", "16.00", "0.40"] {
            assert!(!text.contains(&format!("\"{cost}\"")), "cost {cost} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn purchase_records_unbilled_purchase_and_credits_atomically() {
    let env = TestEnv::seeded().await;
    let a = buy(
        &env,
        ApiEvent::purchase(
            DENTAL,
            &json!({"quantities": {"enrichment": 333, "audience": 2}, "expectedTotal": "193.20"}),
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let purchase = &a.body["purchase"];
    // 333 × 0.4150 = 138.195 → 138.20 (half away from zero); 2 × 27.50 = 55.00.
    assert_eq!(
        purchase["lines"],
        json!([
            {"creditType": "audience", "quantity": 2, "unitPrice": "27.50", "subtotal": "55.00"},
            {"creditType": "enrichment", "quantity": 333, "unitPrice": "0.4150", "subtotal": "138.20"},
        ])
    );
    assert_eq!(purchase["total"], "193.20");
    assert_eq!(purchase["currency"], "USD");
    assert_eq!(purchase["billedToClient"], false);
    assert_eq!(purchase["billedToAgency"], false);
    assert_eq!(a.body["balances"], json!({"audience": 2, "enrichment": 333, "pixel": 0, "custom_model": 0}));
    let id = purchase["purchaseId"].as_str().unwrap();
    assert_eq!(a.header("location"), Some(format!("/accounts/{DENTAL}/credit-purchases/{id}").as_str()));
    assert!(!a.body.to_string().to_lowercase().contains("cost"));

    // The stored record keeps costs for billing and sits in both unbilled indexes.
    let records = env.app.store.all_purchases(DENTAL).await.unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.purchase_id, id);
    assert_eq!(record.agency_id, "agency-brightside");
    assert_eq!(record.total_at_cost, d("165.20")); // 2 × 16.00 (agency cost) + 333 × 0.40 (default cost)
    assert!(!record.billed_to_client && !record.billed_to_agency);
    let snapshot = env.snapshot().await;
    let item = snapshot.iter().find(|i| i["sk"]["S"] == format!("PURCHASE#{id}")).unwrap();
    assert!(item["unbilledClientPk"]["S"].as_str().unwrap().starts_with("UNBILLED#"));
    assert!(item["unbilledAgencySk"]["S"].as_str().unwrap().ends_with(id));
}

#[tokio::test]
async fn costs_fall_back_to_defaults_independently_of_prices() {
    let env = TestEnv::seeded().await;
    let a = buy(&env, ApiEvent::purchase(DENTAL, &json!({"quantities": {"enrichment": 100}}))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let record = &env.app.store.all_purchases(DENTAL).await.unwrap()[0];
    let line = &record.lines[0];
    assert_eq!(line.credit_type, CreditType::Enrichment);
    assert_eq!(line.unit_price, d("0.4150")); // agency price
    assert_eq!(line.unit_cost, d("0.40")); // platform default cost: the agency set none
    assert_eq!(line.subtotal, d("41.50"));
    assert_eq!(line.subtotal_at_cost, d("40.00"));
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    let big = format!("{{\"quantities\": {{\"audience\": 1}}, \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    let base = || ApiEvent::new("POST", PURCHASES_ROUTE, COFFEE).as_account(COFFEE);
    let cases: Vec<(ApiEvent, u16, &str)> = vec![
        (base().header("content-type", "application/json").raw_body("{\"quantities\":"), 400, "malformed_json"),
        (base().header("content-type", "application/json").raw_body(""), 400, "malformed_json"),
        (base().json(&json!([1, 2])), 400, "invalid_body"),
        (base().json(&json!({"quantities": {"audience": 1}, "coupon": "FREE"})), 400, "unknown_field"),
        (base().json(&json!({"quantities": {"gold": 1}})), 400, "unknown_credit_type"),
        (base().json(&json!({"quantities": {"audience": -1}})), 400, "invalid_quantity"),
        (base().json(&json!({"quantities": {"audience": 2.5}})), 400, "invalid_quantity"),
        (base().json(&json!({"quantities": {"audience": "3"}})), 400, "invalid_quantity"),
        (base().json(&json!({"quantities": {"audience": null}})), 400, "invalid_quantity"),
        (base().json(&json!({"quantities": {"audience": 1_000_001}})), 400, "invalid_quantity"),
        (base().json(&json!({"quantities": {"audience": 0, "pixel": 0}})), 400, "empty_purchase"),
        (base().json(&json!({"quantities": {"audience": 1}, "expectedTotal": 25})), 400, "invalid_expected_total"),
        (
            base().json(&json!({"quantities": {"audience": 1}, "expectedTotal": "25.001"})),
            400,
            "invalid_expected_total",
        ),
        (base().header("content-type", "application/json").raw_body(&big), 413, "payload_too_large"),
        (
            base().header("content-type", "text/plain").raw_body("{\"quantities\": {\"audience\": 1}}"),
            415,
            "unsupported_media_type",
        ),
        (base().raw_body("{\"quantities\": {\"audience\": 1}}"), 415, "unsupported_media_type"),
        (
            base().header("idempotency-key", "").json(&json!({"quantities": {"audience": 1}})),
            400,
            "invalid_idempotency_key",
        ),
        (
            base().header("idempotency-key", &"k".repeat(256)).json(&json!({"quantities": {"audience": 1}})),
            400,
            "invalid_idempotency_key",
        ),
        (
            base().header("idempotency-key", "tab\there").json(&json!({"quantities": {"audience": 1}})),
            400,
            "invalid_idempotency_key",
        ),
        (
            ApiEvent::new("POST", PURCHASES_ROUTE, COFFEE).json(&json!({"quantities": {"audience": 1}})),
            401,
            "unauthenticated",
        ),
        (
            ApiEvent::new("POST", PURCHASES_ROUTE, DENTAL)
                .as_account(COFFEE)
                .json(&json!({"quantities": {"audience": 1}})),
            403,
            "forbidden",
        ),
        (
            ApiEvent::new("POST", PURCHASES_ROUTE, "acct-nobody")
                .as_account("acct-nobody")
                .json(&json!({"quantities": {"audience": 1}})),
            404,
            "account_not_found",
        ),
        (base().json(&json!({"quantities": {"audience": 1}, "expectedTotal": "24.99"})), 409, "price_changed"),
    ];
    for (event, status, code) in cases {
        let a = buy(&env, event).await;
        assert_problem(&a, status, code);
        assert_eq!(env.snapshot().await, before, "a refused request ({code}) changed the table");
    }
}

#[tokio::test]
async fn price_change_conflict_carries_current_prices() {
    let env = TestEnv::seeded().await;
    let a = buy(
        &env,
        ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 10, "pixel": 5}, "expectedTotal": "290.00"})),
    )
    .await;
    assert_problem(&a, 409, "price_changed");
    assert_eq!(a.body["total"], "300.00");
    assert_eq!(a.body["expectedTotal"], "290.00");
    assert_eq!(a.body["currentPricing"], pricing(&env, COFFEE).await.body);
    // The same total written differently is the same amount.
    let ok = buy(
        &env,
        ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 10, "pixel": 5}, "expectedTotal": "300"})),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[tokio::test]
async fn reads_are_tenant_scoped_and_need_claims() {
    let env = TestEnv::seeded().await;
    for (event, status, code) in [
        (ApiEvent::new("GET", BALANCES_ROUTE, COFFEE), 401, "unauthenticated"),
        (ApiEvent::new("GET", BALANCES_ROUTE, COFFEE).claims(json!({"sub": "x"})), 401, "unauthenticated"),
        (ApiEvent::new("GET", BALANCES_ROUTE, DENTAL).as_account(COFFEE), 403, "forbidden"),
        (ApiEvent::new("GET", BALANCES_ROUTE, "acct-ghost").as_account("acct-ghost"), 404, "account_not_found"),
        (ApiEvent::new("GET", BALANCES_ROUTE, "a#b").as_account("a#b"), 400, "invalid_account_id"),
    ] {
        assert_problem(&answer(api::get_balances(&env.app, event.request()).await), status, code);
    }
    for (event, status, code) in [
        (ApiEvent::new("GET", PRICING_ROUTE, COFFEE), 401, "unauthenticated"),
        (ApiEvent::new("GET", PRICING_ROUTE, DENTAL).as_account(COFFEE), 403, "forbidden"),
        (ApiEvent::new("GET", PRICING_ROUTE, "acct-ghost").as_account("acct-ghost"), 404, "account_not_found"),
    ] {
        assert_problem(&answer(api::get_pricing(&env.app, event.request()).await), status, code);
    }
}

#[tokio::test]
async fn account_claim_name_is_configurable() {
    let mut env = TestEnv::seeded().await;
    env.app = shared::api::App::new(
        env.app.store.clone(),
        Settings { account_claim: "tenant".into(), ..Settings::default() },
    );
    let default_claim = ApiEvent::new("GET", BALANCES_ROUTE, COFFEE).as_account(COFFEE);
    assert_problem(&answer(api::get_balances(&env.app, default_claim.request()).await), 401, "unauthenticated");
    let custom = ApiEvent::new("GET", BALANCES_ROUTE, COFFEE).claims(json!({"tenant": COFFEE}));
    assert_eq!(answer(api::get_balances(&env.app, custom.request()).await).status, 200);
}

#[tokio::test]
async fn fifty_concurrent_purchases_keep_balance_equal_to_records() {
    let env = TestEnv::seeded().await;
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let app = env.app.clone();
        tasks.push(tokio::spawn(async move {
            let quantities = json!({"audience": 1 + i % 3, "pixel": i % 4, "custom_model": i % 2});
            let event = ApiEvent::purchase(COFFEE, &json!({"quantities": quantities}));
            answer(api::purchase_credits(&app, event.request()).await).status
        }));
    }
    let mut created = 0;
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
        created += 1;
    }
    let records = env.app.store.all_purchases(COFFEE).await.unwrap();
    assert_eq!(records.len(), created);
    let balances = balances(&env, COFFEE).await;
    for t in CreditType::ALL {
        let sum: u64 = records.iter().flat_map(|r| &r.lines).filter(|l| l.credit_type == t).map(|l| l.quantity).sum();
        assert_eq!(balances[t.as_str()], sum, "{t}");
    }
    println!("concurrency: 50 purchases, {} records, balances {balances}", records.len());
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_and_writes_once() {
    let env = TestEnv::seeded().await;
    let body = json!({"quantities": {"audience": 2}, "expectedTotal": "50.00"});
    let first = buy(&env, ApiEvent::purchase(COFFEE, &body.clone()).header("Idempotency-Key", "click-1")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = buy(
        &env,
        ApiEvent::purchase(COFFEE, &json!({"expectedTotal": "50.00", "quantities": {"audience": 2, "pixel": 0}}))
            .header("Idempotency-Key", "click-1"),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["purchase"], first.body["purchase"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert_eq!(balances(&env, COFFEE).await["audience"], 2);

    // Same key, different body: 422 and nothing written.
    let before = env.snapshot().await;
    let other_body = buy(
        &env,
        ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 3}})).header("Idempotency-Key", "click-1"),
    )
    .await;
    assert_problem(&other_body, 422, "idempotency_key_reused");
    assert_eq!(env.snapshot().await, before);
    // Keys are per account: another account's "click-1" is its own, independent purchase.
    let other_account = buy(&env, ApiEvent::purchase(BIKES, &body.clone()).header("Idempotency-Key", "click-1")).await;
    assert_eq!(other_account.status, 201, "{}", other_account.body);
    assert_eq!(other_account.header("idempotent-replayed"), None);
    assert_ne!(other_account.body["purchase"]["purchaseId"], first.body["purchase"]["purchaseId"]);

    // Without a key every request is a new purchase.
    for _ in 0..2 {
        assert_eq!(buy(&env, ApiEvent::purchase(COFFEE, &body.clone())).await.status, 201);
    }
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 3);
}

#[tokio::test]
async fn same_key_at_the_same_moment_makes_one_purchase() {
    let env = TestEnv::seeded().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = env.app.clone();
        tasks.push(tokio::spawn(async move {
            let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 3}}))
                .header("Idempotency-Key", "double-click");
            answer(api::purchase_credits(&app, event.request()).await)
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let a = task.await.unwrap();
        assert_eq!(a.status, 201, "{}", a.body);
        ids.insert(a.body["purchase"]["purchaseId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert_eq!(balances(&env, COFFEE).await["pixel"], 3);
}

#[tokio::test]
async fn replay_after_a_price_change_still_returns_the_first_answer() {
    let env = TestEnv::seeded().await;
    let body = json!({"quantities": {"audience": 1}, "expectedTotal": "25.00"});
    let first = buy(&env, ApiEvent::purchase(COFFEE, &body.clone()).header("Idempotency-Key", "k-price")).await;
    assert_eq!(first.status, 201);
    change_northwind_audience_price(&env, "26.00").await;
    let replay = buy(&env, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "k-price")).await;
    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.body["purchase"], first.body["purchase"]);
}

async fn change_northwind_audience_price(env: &TestEnv, price: &str) {
    assert!(env.set_seeded_agency_price("agency-northwind", CreditType::Audience, price).await);
}

#[tokio::test]
async fn stale_prices_never_reach_a_purchase_record() {
    use shared::storage::RecordOutcome;
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let account = store.account(COFFEE).await.unwrap().unwrap();
    let (default, agency) = store.pricing(&account.agency_id).await.unwrap();
    let stale = shared::domain::resolve_pricing(&account.agency_id, &default, agency.as_ref()).unwrap();
    change_northwind_audience_price(&env, "26.00").await;

    let quote =
        shared::domain::quote(&stale, &shared::domain::Quantities::from_pairs([(CreditType::Audience, 1)])).unwrap();
    let record = shared::domain::PurchaseRecord::unbilled(
        uuid_like(),
        COFFEE,
        &account.agency_id,
        std::time::SystemTime::now(),
        quote,
        None,
    );
    let before = env.snapshot().await;
    assert_eq!(store.record_purchase(&record, &stale, None).await.unwrap(), RecordOutcome::PricingChanged);
    assert_eq!(env.snapshot().await, before);

    // Moving the account to another agency also invalidates the prices read for the old one.
    let (default, agency) = store.pricing(&account.agency_id).await.unwrap();
    let fresh = shared::domain::resolve_pricing(&account.agency_id, &default, agency.as_ref()).unwrap();
    store.upsert_account(COFFEE, "agency-plainsail", None, None).await.unwrap();
    let before = env.snapshot().await;
    assert_eq!(store.record_purchase(&record, &fresh, None).await.unwrap(), RecordOutcome::PricingChanged);
    assert_eq!(env.snapshot().await, before);

    // And the handler re-reads and charges the new agency's prices.
    let a = buy(&env, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}}))).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["purchase"]["lines"][0]["unitPrice"], "30.00");
}

fn uuid_like() -> String {
    format!("00000000-0000-7000-8000-{:012}", std::process::id())
}

#[tokio::test]
async fn outage_is_a_quick_503_with_retry_after_and_no_partial_write() {
    let mut env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    env.dynamo.stop().await;
    let started = Instant::now();
    let a = buy(&env, ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}}))).await;
    let took = started.elapsed();
    assert_problem(&a, 503, "service_unavailable");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(took < Settings::default().request_budget + Duration::from_secs(1), "took {took:?}");
    let pricing_down = pricing(&env, COFFEE).await;
    assert_problem(&pricing_down, 503, "service_unavailable");
    env.dynamo.restart().await;
    assert_eq!(env.snapshot().await, before);
    assert_eq!(pricing(&env, COFFEE).await.status, 200);
}

#[tokio::test]
async fn missing_default_pricing_is_our_fault_not_the_clients() {
    let env = TestEnv::empty().await;
    env.app.store.upsert_account(COFFEE, "agency-northwind", None, None).await.unwrap();
    assert_problem(&pricing(&env, COFFEE).await, 500, "internal_error");
}
