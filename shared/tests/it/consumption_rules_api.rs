//! The client's consumption rules through the real handlers and function routers against dynoxide: alert
//! thresholds and auto top-up rules set, read, replaced and cleared (the attribute removed), `rulesVersion` up by
//! one per change, bad bodies refused by field with nothing written, another tenant's account 403, a missing
//! account 404 (and never created); and what made a purchase (`trigger`) in the client's and the agency's views.

use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::api::{self, App, Settings};
use shared::domain::purchase::PurchaseTrigger;
use shared::domain::{self, CreditType, PurchaseRecord, Quantities};
use shared::storage::RecordOutcome;
use testkit::{ApiEvent, BIKES, COFFEE, TestEnv, answer, assert_problem};

const ALERTS_ROUTE: &str = "/accounts/{accountId}/alerts";
const TOPUPS_ROUTE: &str = "/accounts/{accountId}/topups";

/// A GET as the `get-balances` function serves it, signed in as `caller`.
async fn get(app: &App, route: &str, account: &str, caller: &str) -> testkit::Answer {
    let event = ApiEvent::new("GET", route, account).as_account(caller);
    answer(api::balances_or_rules(app, event.request()).await)
}

/// A PUT as the `purchase-credits` function serves it, signed in as `caller`.
async fn put(app: &App, route: &str, account: &str, caller: &str, body: &Value) -> testkit::Answer {
    let event = ApiEvent::new("PUT", route, account).as_account(caller).json(body);
    answer(shared::metrics::purchase_credits_or_rules(app, event.request()).await)
}

/// The account item as stored.
async fn account_item(env: &TestEnv, account: &str) -> Option<std::collections::HashMap<String, AttributeValue>> {
    env.client
        .get_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{account}")))
        .key("sk", AttributeValue::S("ACCOUNT".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

async fn version(env: &TestEnv, account: &str) -> u64 {
    env.app.store.account(account).await.unwrap().expect("the account").rules.version
}

#[tokio::test]
async fn alert_thresholds_are_set_read_replaced_and_cleared() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    let none = get(app, ALERTS_ROUTE, COFFEE, COFFEE).await;
    assert_eq!((none.status, &none.body), (200, &json!({"accountId": COFFEE, "thresholds": {}})));
    assert_eq!(version(&env, COFFEE).await, 0);

    let set = put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {"audience": 100, "pixel": 5}})).await;
    let expected = json!({"accountId": COFFEE, "thresholds": {"audience": 100, "pixel": 5}});
    assert_eq!((set.status, &set.body), (200, &expected));
    assert_eq!(set.header("content-type"), Some("application/json"));
    assert_eq!(get(app, ALERTS_ROUTE, COFFEE, COFFEE).await.body, expected);
    assert_eq!(version(&env, COFFEE).await, 1);

    // The whole map is replaced: a type left out loses its threshold.
    let replaced = put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {"enrichment": 7}})).await;
    assert_eq!(replaced.body["thresholds"], json!({"enrichment": 7}));
    assert_eq!(get(app, ALERTS_ROUTE, COFFEE, COFFEE).await.body["thresholds"], json!({"enrichment": 7}));
    assert_eq!(version(&env, COFFEE).await, 2);

    // The same map again is still a change: the version moves, so a consumption that read the old one re-reads.
    put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {"enrichment": 7}})).await;
    assert_eq!(version(&env, COFFEE).await, 3);

    let cleared = put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {}})).await;
    assert_eq!((cleared.status, &cleared.body["thresholds"]), (200, &json!({})));
    let item = account_item(&env, COFFEE).await.unwrap();
    assert!(!item.contains_key("alertThresholds"), "an empty map removes the attribute");
    assert_eq!(item.get("rulesVersion"), Some(&AttributeValue::N("4".into())));
    // The balances and the line are untouched by a rules change.
    let balances = answer(
        api::get_balances(app, ApiEvent::new("GET", testkit::BALANCES_ROUTE, COFFEE).as_account(COFFEE).request())
            .await,
    );
    assert_eq!(balances.status, 200);
    assert_eq!(balances.body["balances"], json!({"audience": 0, "enrichment": 0, "pixel": 0, "custom_model": 0}));
}

#[tokio::test]
async fn topup_rules_are_set_read_replaced_and_cleared_with_the_cap_and_todays_count() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    let none = get(app, TOPUPS_ROUTE, COFFEE, COFFEE).await;
    let empty = json!({"accountId": COFFEE, "rules": {}, "dailyCap": 3, "topupsToday": 0});
    assert_eq!((none.status, &none.body), (200, &empty));

    let rules = json!({"audience": {"below": 50, "buy": 500}, "custom_model": {"below": 1, "buy": 2}});
    let set = put(app, TOPUPS_ROUTE, COFFEE, COFFEE, &json!({ "rules": rules })).await;
    let expected = json!({"accountId": COFFEE, "rules": rules, "dailyCap": 3, "topupsToday": 0});
    assert_eq!((set.status, &set.body), (200, &expected));
    assert_eq!(get(app, TOPUPS_ROUTE, COFFEE, COFFEE).await.body, expected);
    assert_eq!(version(&env, COFFEE).await, 1);

    // Thresholds and top-up rules share the version: either change moves it.
    put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {"audience": 10}})).await;
    let replaced = put(app, TOPUPS_ROUTE, COFFEE, COFFEE, &json!({"rules": {"pixel": {"below": 3, "buy": 30}}})).await;
    assert_eq!(replaced.body["rules"], json!({"pixel": {"below": 3, "buy": 30}}));
    assert_eq!(version(&env, COFFEE).await, 3);
    assert_eq!(get(app, ALERTS_ROUTE, COFFEE, COFFEE).await.body["thresholds"], json!({"audience": 10}));

    // Today's count as the consumption keeps it (its day, its count); another day's count is not today's.
    let today = &domain::time::timestamp(SystemTime::now())[..10];
    for (day, shown) in [(today, 2), ("2020-01-01", 0)] {
        env.client
            .update_item()
            .table_name(&env.table)
            .key("pk", AttributeValue::S(format!("ACCOUNT#{COFFEE}")))
            .key("sk", AttributeValue::S("ACCOUNT".into()))
            .update_expression("SET topupDay = :day, topupCount = :count")
            .expression_attribute_values(":day", AttributeValue::S(day.to_owned()))
            .expression_attribute_values(":count", AttributeValue::N("2".into()))
            .send()
            .await
            .unwrap();
        assert_eq!(get(app, TOPUPS_ROUTE, COFFEE, COFFEE).await.body["topupsToday"], shown, "{day}");
    }

    // The cap is the function's setting (AUTO_TOPUP_DAILY_CAP).
    let capped = App::new(env.app.store.clone(), Settings { auto_topup_daily_cap: 7, ..Settings::default() });
    assert_eq!(get(&capped, TOPUPS_ROUTE, COFFEE, COFFEE).await.body["dailyCap"], 7);

    let cleared = put(app, TOPUPS_ROUTE, COFFEE, COFFEE, &json!({"rules": {}})).await;
    assert_eq!((cleared.status, &cleared.body["rules"]), (200, &json!({})));
    let item = account_item(&env, COFFEE).await.unwrap();
    assert!(!item.contains_key("topupRules"), "an empty map removes the attribute");
    assert!(item.contains_key("alertThresholds"), "the other map stays");
    assert_eq!(version(&env, COFFEE).await, 4);
}

#[tokio::test]
async fn bad_bodies_are_refused_by_field_and_write_nothing() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    put(app, ALERTS_ROUTE, COFFEE, COFFEE, &json!({"thresholds": {"audience": 100}})).await;
    put(app, TOPUPS_ROUTE, COFFEE, COFFEE, &json!({"rules": {"audience": {"below": 50, "buy": 500}}})).await;
    let before = env.snapshot().await;
    let max = shared::domain::ledger::MAX_QUANTITY;
    let cases = [
        (ALERTS_ROUTE, json!({"thresholds": {"gold": 5}}), "thresholds.gold"),
        (ALERTS_ROUTE, json!({"thresholds": {"audience": 1.5}}), "thresholds.audience"),
        (ALERTS_ROUTE, json!({"thresholds": {"audience": "100"}}), "thresholds.audience"),
        (ALERTS_ROUTE, json!({"thresholds": {"audience": 0}}), "thresholds.audience"),
        (ALERTS_ROUTE, json!({"thresholds": {"audience": -3}}), "thresholds.audience"),
        (ALERTS_ROUTE, json!({"thresholds": {"pixel": max + 1}}), "thresholds.pixel"),
        (ALERTS_ROUTE, json!({"thresholds": {}, "extra": true}), "extra"),
        (ALERTS_ROUTE, json!({}), "thresholds"),
        (ALERTS_ROUTE, json!({"thresholds": [1]}), "thresholds"),
        (ALERTS_ROUTE, json!([]), "body"),
        (TOPUPS_ROUTE, json!({"rules": {"gold": {"below": 1, "buy": 1}}}), "rules.gold"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": {"below": 1}}}), "rules.audience.buy"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": {"below": 1, "buy": 0}}}), "rules.audience.buy"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": {"below": 1.25, "buy": 1}}}), "rules.audience.below"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": {"below": max + 1, "buy": 1}}}), "rules.audience.below"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": {"below": 1, "buy": 1, "cap": 2}}}), "rules.audience.cap"),
        (TOPUPS_ROUTE, json!({"rules": {"audience": 500}}), "rules.audience"),
        (TOPUPS_ROUTE, json!({"thresholds": {}}), "thresholds"),
    ];
    for (route, body, field) in cases {
        let a = put(app, route, COFFEE, COFFEE, &body).await;
        assert_problem(&a, 400, "invalid_field");
        assert_eq!(a.body["field"], field, "{body}: {}", a.body);
    }
    // Not JSON, a key twice, not JSON at all by its media type.
    let raw = |route: &str, body: &str, content_type: &str| {
        ApiEvent::new("PUT", route, COFFEE).as_account(COFFEE).header("content-type", content_type).raw_body(body)
    };
    for (event, status, code) in [
        (raw(ALERTS_ROUTE, "{\"thresholds\":", "application/json"), 400, "malformed_json"),
        (raw(TOPUPS_ROUTE, "{\"rules\":{},\"rules\":{}}", "application/json"), 400, "duplicate_field"),
        (raw(ALERTS_ROUTE, "{\"thresholds\":{}}", "text/plain"), 415, "unsupported_media_type"),
    ] {
        let a = answer(shared::metrics::purchase_credits_or_rules(app, event.request()).await);
        assert_problem(&a, status, code);
    }
    assert_eq!(env.snapshot().await, before, "a refused change wrote something");
    assert_eq!(version(&env, COFFEE).await, 2);
}

#[tokio::test]
async fn another_tenants_account_is_403_and_a_missing_account_404_both_writing_nothing() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    let before = env.snapshot().await;
    for route in [ALERTS_ROUTE, TOPUPS_ROUTE] {
        assert_problem(&get(app, route, BIKES, COFFEE).await, 403, "forbidden");
        // Forbidden before the body is even read: a bad body on another's account is still 403.
        assert_problem(
            &put(app, route, BIKES, COFFEE, &json!({"thresholds": {}, "rules": {}})).await,
            403,
            "forbidden",
        );
        assert_problem(&get(app, route, "bad id!", COFFEE).await, 400, "invalid_account_id");
    }
    assert_problem(
        &put(app, ALERTS_ROUTE, BIKES, COFFEE, &json!({"thresholds": {"audience": 1}})).await,
        403,
        "forbidden",
    );
    assert_problem(&put(app, TOPUPS_ROUTE, BIKES, COFFEE, &json!({"rules": {}})).await, 403, "forbidden");

    // A token whose account does not exist (yet): 404 as on the other client routes, and no item is created.
    const GHOST: &str = "acct-ghost";
    for route in [ALERTS_ROUTE, TOPUPS_ROUTE] {
        assert_problem(&get(app, route, GHOST, GHOST).await, 404, "account_not_found");
    }
    let ghost_alerts = put(app, ALERTS_ROUTE, GHOST, GHOST, &json!({"thresholds": {"audience": 1}})).await;
    assert_problem(&ghost_alerts, 404, "account_not_found");
    let ghost_rules = put(app, TOPUPS_ROUTE, GHOST, GHOST, &json!({"rules": {}})).await;
    assert_problem(&ghost_rules, 404, "account_not_found");
    assert!(account_item(&env, GHOST).await.is_none());
    assert_eq!(env.snapshot().await, before, "a refused request wrote something");
}

#[tokio::test]
async fn each_function_serves_only_its_own_rules_routes_and_the_purchase_still_goes_through() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    // A change that reached get-balances, or a read that reached purchase-credits, is the template's mistake.
    let event = ApiEvent::new("PUT", ALERTS_ROUTE, COFFEE).as_account(COFFEE).json(&json!({"thresholds": {}}));
    assert_problem(&answer(api::balances_or_rules(app, event.request()).await), 500, "internal_error");
    let event = ApiEvent::new("GET", TOPUPS_ROUTE, COFFEE).as_account(COFFEE);
    assert_problem(
        &answer(shared::metrics::purchase_credits_or_rules(app, event.request()).await),
        500,
        "internal_error",
    );
    assert_eq!(version(&env, COFFEE).await, 0);
    // The functions' own first routes are unchanged.
    let purchase = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}}));
    let bought = answer(shared::metrics::purchase_credits_or_rules(app, purchase.request()).await);
    assert_eq!(bought.status, 201, "{}", bought.body);
    assert_eq!(bought.body["purchase"]["trigger"], "client");
    let balances = ApiEvent::new("GET", testkit::BALANCES_ROUTE, COFFEE).as_account(COFFEE);
    assert_eq!(answer(api::balances_or_rules(app, balances.request()).await).body["balances"]["audience"], 2);
}

#[tokio::test]
async fn purchases_and_their_ledger_entries_say_what_made_them() {
    let env = TestEnv::seeded().await;
    let app = &env.app;
    let bought = answer(
        api::purchase_credits(app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 1}})).request()).await,
    );
    assert_eq!(bought.status, 201, "{}", bought.body);
    // An auto top-up as the consumption writes it: an ordinary purchase marked `auto_topup`, with its entry.
    let store = &app.store;
    let agency = "agency-northwind";
    let (default, agency_pricing) = store.pricing(agency).await.unwrap();
    let pricing = domain::resolve_pricing(agency, &default, agency_pricing.as_ref()).unwrap();
    let quote = domain::quote(&pricing, &Quantities::from_pairs([(CreditType::Audience, 3)])).unwrap();
    let auto_id = uuid::Uuid::now_v7().to_string();
    let mut auto = PurchaseRecord::unbilled(auto_id.clone(), COFFEE, agency, SystemTime::now(), quote, None);
    auto.trigger = PurchaseTrigger::AutoTopup;
    assert_eq!(store.record_purchase(&auto, &pricing, None).await.unwrap(), RecordOutcome::Recorded);

    let history = answer(
        api::list_purchases_or_ledger(
            app,
            ApiEvent::new("GET", testkit::PURCHASES_ROUTE, COFFEE).as_account(COFFEE).request(),
        )
        .await,
    );
    let triggers: Vec<(&str, &str)> = history.body["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["purchaseId"].as_str().unwrap(), p["trigger"].as_str().unwrap()))
        .collect();
    let client_id = bought.body["purchase"]["purchaseId"].as_str().unwrap();
    assert_eq!(triggers, [(auto_id.as_str(), "auto_topup"), (client_id, "client")]);

    let ledger = answer(
        api::list_purchases_or_ledger(
            app,
            ApiEvent::new("GET", "/accounts/{accountId}/ledger", COFFEE).as_account(COFFEE).request(),
        )
        .await,
    );
    let entries = ledger.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", ledger.body);
    assert_eq!(
        (entries[0]["purchaseId"].as_str(), entries[0]["trigger"].as_str()),
        (Some(auto_id.as_str()), Some("auto_topup"))
    );
    assert_eq!(entries[1]["trigger"], "client");
    // Stored only when not the client's: the client's entry and record carry no attribute, and read as the client's.
    let stored = store.purchase(COFFEE, client_id).await.unwrap().unwrap();
    assert_eq!(stored.trigger, PurchaseTrigger::Client);
    assert_eq!(store.purchase(COFFEE, &auto_id).await.unwrap().unwrap().trigger, PurchaseTrigger::AutoTopup);
    let raw = env.snapshot().await;
    let stored_triggers: Vec<&Value> = raw.iter().filter_map(|item| item.get("trigger")).collect();
    assert_eq!(stored_triggers.len(), 2, "the auto purchase and its entry only: {stored_triggers:?}");

    // The agency sees the same trigger on its view of the purchase (it flattens the client's).
    let agency_page = ApiEvent::agency("GET", "/agencies/{agencyId}/purchases", agency).as_agency_admin(agency);
    let page = answer(api::agency_read(app, agency_page.request()).await);
    assert_eq!(page.status, 200, "{}", page.body);
    let of =
        |id: &str| page.body["purchases"].as_array().unwrap().iter().find(|p| p["purchaseId"] == id).cloned().unwrap();
    assert_eq!(of(&auto_id)["trigger"], "auto_topup");
    assert_eq!(of(client_id)["trigger"], "client");
}

#[tokio::test]
async fn the_rules_sample_events_answer_as_their_names_say() {
    let env = TestEnv::seeded().await;
    for route in ["alerts", "topups"] {
        for (function, suffix, status) in [
            ("get-balances", "", 200),
            ("get-balances", "-bad-input", 400),
            ("get-balances", "-forbidden", 403),
            ("purchase-credits", "", 200),
            ("purchase-credits", "-bad-input", 400),
            ("purchase-credits", "-forbidden", 403),
        ] {
            let file = format!("{function}-{route}{suffix}.json");
            let request = testkit::request_from_event(&testkit::event_json(&file));
            let response = match function {
                "get-balances" => api::balances_or_rules(&env.app, request).await,
                _ => shared::metrics::purchase_credits_or_rules(&env.app, request).await,
            };
            let a = answer(response);
            assert_eq!(a.status, status, "{file}: {}", a.body);
            if status == 400 && function == "purchase-credits" {
                assert_eq!(a.body["code"], "invalid_field", "{file}");
            }
        }
    }
    let bakery = env.app.store.account(testkit::BAKERY).await.unwrap().unwrap();
    assert_eq!((bakery.rules.alert_thresholds.len(), bakery.rules.topups.len(), bakery.rules.version), (2, 1, 2));
}
