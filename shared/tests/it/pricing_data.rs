//! Pricing data against a real dynoxide server: what the seed loader accepts and stores, and what the handlers
//! serve from it. Rates are stored and served in one canonical form (two to four places), capped at
//! `MAX_RATE`, never signed (`-0` included), and no agency sells below cost unless its seed entry says so.

use serde_json::{Value, json};
use shared::api;
use shared::domain::{CreditType, MAX_QUANTITY, MAX_RATE};
use testkit::{ApiEvent, DENTAL, PRICING_ROUTE, TestEnv, answer, assert_problem, d};

const BRIGHTSIDE_PK: &str = "AGENCY#agency-brightside";

async fn pricing(env: &TestEnv, account: &str) -> testkit::Answer {
    let event = ApiEvent::new("GET", PRICING_ROUTE, account).as_account(account);
    answer(api::get_pricing(&env.app, event.request()).await)
}

/// The served price of one type, after checking every served price has two to four places.
fn served_price(a: &testkit::Answer, credit_type: &str) -> String {
    assert_eq!(a.status, 200, "{}", a.body);
    for p in a.body["prices"].as_array().unwrap() {
        let text = p["pricePerCredit"].as_str().unwrap();
        let places = text.split_once('.').map_or(0, |(_, f)| f.len());
        assert!((2..=4).contains(&places), "{text} is served with {places} places: {}", a.body);
    }
    let entry = a.body["prices"].as_array().unwrap().iter().find(|p| p["creditType"] == credit_type).unwrap();
    entry["pricePerCredit"].as_str().unwrap().to_owned()
}

/// The text a pricing item holds for one rate field.
async fn stored_text(env: &TestEnv, pk: &str, credit_type: &str, field: &str) -> Value {
    let snapshot = env.snapshot().await;
    let item = snapshot.iter().find(|i| i["pk"]["S"] == pk && i["sk"]["S"] == "PRICING").expect("a pricing item");
    item["rates"]["M"][credit_type]["M"][field]["S"].clone()
}

#[tokio::test]
async fn a_seed_price_with_trailing_zeros_is_stored_and_served_canonically() {
    let env = TestEnv::seeded().await;
    let report = env
        .load_seed_json(&json!({"agencies": [{
            "agencyId": "agency-brightside",
            "rates": {
                "audience": {"price": "25", "cost": "16.00"},
                "enrichment": {"price": "0.01500", "cost": "0.01000"}
            }
        }]}))
        .await
        .unwrap();
    assert_eq!(report.agencies_changed, 1);

    assert_eq!(stored_text(&env, BRIGHTSIDE_PK, "enrichment", "price").await, "0.0150");
    assert_eq!(stored_text(&env, BRIGHTSIDE_PK, "enrichment", "cost").await, "0.0100");
    assert_eq!(stored_text(&env, BRIGHTSIDE_PK, "audience", "price").await, "25.00");

    let a = pricing(&env, DENTAL).await;
    let enrichment = served_price(&a, "enrichment");
    assert_eq!(enrichment, "0.0150");
    assert_eq!(d(&enrichment), d("0.015"));
    assert_eq!(served_price(&a, "audience"), "25.00");

    // A purchase is priced, recorded and shown with the same canonical rate.
    let bought = answer(
        api::purchase_credits(
            &env.app,
            ApiEvent::purchase(DENTAL, &json!({"quantities": {"enrichment": 100}, "expectedTotal": "1.50"})).request(),
        )
        .await,
    );
    assert_eq!(bought.status, 201, "{}", bought.body);
    assert_eq!(bought.body["purchase"]["lines"][0]["unitPrice"], "0.0150");
    assert_eq!(bought.body["purchase"]["lines"][0]["subtotal"], "1.50");
    let record = &env.app.store.all_purchases(DENTAL).await.unwrap()[0];
    assert_eq!(record.lines[0].unit_price.to_string(), "0.0150");
    assert_eq!(record.lines[0].unit_cost.to_string(), "0.0100");

    // Loading the same document again changes nothing.
    let again = env
        .load_seed_json(&json!({"agencies": [{
            "agencyId": "agency-brightside",
            "rates": {"audience": {"price": "25.00", "cost": "16.00"}, "enrichment": {"price": "0.0150", "cost": "0.0100"}}
        }]}))
        .await
        .unwrap();
    assert_eq!((again.agencies_changed, again.agencies_unchanged), (0, 1));
}

#[tokio::test]
async fn a_non_canonical_stored_rate_is_served_canonically_and_rewritten_by_the_next_load() {
    let env = TestEnv::seeded().await;
    // As an older loader stored it: five places.
    env.set_stored_rate_text(BRIGHTSIDE_PK, "enrichment", "price", "0.41500").await;
    assert_eq!(served_price(&pricing(&env, DENTAL).await, "enrichment"), "0.4150");

    // The bundled seeds say "0.4150": the same value, but not the same text, so the item is rewritten once.
    let report = env.reload_bundled_seeds().await.unwrap();
    assert_eq!((report.agencies_changed, report.agencies_unchanged), (1, 2));
    assert!(!report.default_pricing_changed);
    assert_eq!(stored_text(&env, BRIGHTSIDE_PK, "enrichment", "price").await, "0.4150");
    let report = env.reload_bundled_seeds().await.unwrap();
    assert_eq!((report.agencies_changed, report.agencies_unchanged), (0, 3));
}

#[tokio::test]
async fn negative_zero_is_refused_by_the_loader_and_by_price_resolution() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    for bad in ["-0", "-0.00", "-1.00"] {
        let err = env
            .load_seed_json(&json!({"agencies": [{
                "agencyId": "agency-brightside",
                "allowBelowCost": ["enrichment"],
                "rates": {"enrichment": {"price": bad}}
            }]}))
            .await
            .unwrap_err();
        assert!(err.contains("agency-brightside.enrichment.price is negative"), "{bad}: {err}");
    }
    assert_eq!(env.snapshot().await, before, "a refused seed wrote something");

    // Stored by hand: the agency's prices are a data error (500), never a free credit.
    env.set_stored_rate_text(BRIGHTSIDE_PK, "enrichment", "price", "-0").await;
    assert_problem(&pricing(&env, DENTAL).await, 500, "internal_error");
    let bought = answer(
        api::purchase_credits(
            &env.app,
            ApiEvent::purchase(DENTAL, &json!({"quantities": {"enrichment": 1}})).request(),
        )
        .await,
    );
    assert_problem(&bought, 500, "internal_error");
    assert!(env.app.store.all_purchases(DENTAL).await.unwrap().is_empty());

    // The same in the default pricing reaches every agency that falls back to it.
    env.set_stored_rate_text("PRICING#DEFAULT", "pixel", "cost", "-0.00").await;
    assert_problem(&pricing(&env, testkit::BAKERY).await, 500, "internal_error");

    // Loading good seeds over bad data repairs it.
    let report = env.reload_bundled_seeds().await.unwrap();
    assert!(report.default_pricing_changed);
    assert_eq!(served_price(&pricing(&env, DENTAL).await, "enrichment"), "0.4150");
    assert_eq!(served_price(&pricing(&env, testkit::BAKERY).await, "pixel"), "12.00");
}

#[tokio::test]
async fn rates_above_the_cap_are_refused_by_the_loader_and_by_price_resolution() {
    let env = TestEnv::seeded().await;
    let err = env
        .load_seed_json(&json!({"agencies": [{
            "agencyId": "agency-brightside",
            "rates": {"custom_model": {"price": "1000000.01", "cost": "80.00"}}
        }]}))
        .await
        .unwrap_err();
    assert!(err.contains("agency-brightside.custom_model.price is above the maximum of 1000000.00"), "{err}");

    env.set_stored_rate_text(BRIGHTSIDE_PK, "custom_model", "price", "1000000.01").await;
    assert_problem(&pricing(&env, DENTAL).await, 500, "internal_error");
}

#[tokio::test]
async fn the_largest_purchase_at_the_cap_is_exact_end_to_end() {
    let env = TestEnv::seeded().await;
    let cap = MAX_RATE.to_string();
    let rates: serde_json::Map<String, Value> =
        CreditType::ALL.iter().map(|t| (t.as_str().to_owned(), json!({"price": cap, "cost": cap}))).collect();
    env.load_seed_json(&json!({"agencies": [{"agencyId": "agency-brightside", "rates": rates}]})).await.unwrap();
    assert_eq!(served_price(&pricing(&env, DENTAL).await, "pixel"), "1000000.00");
    // Lines that can take it: the largest limit allowed is above the largest possible purchase.
    let largest = shared::domain::credit::MAX_CREDIT_LIMIT;
    env.app.store.set_credit_limit(DENTAL, largest).await.unwrap();
    env.app.store.set_agency_ceiling("agency-brightside", largest).await.unwrap();

    let quantities: serde_json::Map<String, Value> =
        CreditType::ALL.iter().map(|t| (t.as_str().to_owned(), json!(MAX_QUANTITY))).collect();
    let a = answer(
        api::purchase_credits(
            &env.app,
            ApiEvent::purchase(DENTAL, &json!({"quantities": quantities, "expectedTotal": "4000000000000.00"}))
                .request(),
        )
        .await,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["purchase"]["total"], "4000000000000.00");
    for line in a.body["purchase"]["lines"].as_array().unwrap() {
        assert_eq!(line["subtotal"], "1000000000000.00", "{line}");
    }
    let record = &env.app.store.all_purchases(DENTAL).await.unwrap()[0];
    assert_eq!(record.total_at_cost, d("4000000000000.00"));
}

#[tokio::test]
async fn an_agency_below_its_effective_cost_is_refused_unless_its_entry_allows_it() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    // The shipped seeds' old Brightside entry: an enrichment price under the default cost it falls back to.
    let cheap = json!({"agencyId": "agency-brightside", "rates": {
        "audience": {"price": "27.50", "cost": "16.00"},
        "enrichment": {"price": "0.0150"},
        "custom_model": {"price": "135.00"}
    }});
    let err = env.load_seed_json(&json!({"agencies": [cheap.clone()]})).await.unwrap_err();
    assert_eq!(
        err,
        "agency agency-brightside: enrichment price 0.0150 (the agency's) is below its cost 0.40 (the stored default \
         pricing); raise the price, set the agency's own cost, or add \"allowBelowCost\": [\"enrichment\"] to the \
         agency if selling below cost is intended"
    );
    assert_eq!(env.snapshot().await, before, "a refused seed wrote something");

    // Said explicitly in the agency's entry, it loads and is sold at that price.
    let mut allowed = cheap;
    allowed["allowBelowCost"] = json!(["enrichment"]);
    env.load_seed_json(&json!({"agencies": [allowed]})).await.unwrap();
    assert_eq!(served_price(&pricing(&env, DENTAL).await, "enrichment"), "0.0150");

    // New defaults in the same document are what the agencies in it are checked against.
    let empty = TestEnv::empty().await;
    let mut seed: Value = serde_json::from_str(
        &std::fs::read_to_string(testkit::repo_root().join("seeds/data/default-pricing.json")).unwrap(),
    )
    .unwrap();
    seed["agencies"] = json!([{"agencyId": "agency-x", "rates": {"pixel": {"cost": "12.50"}}}]);
    let err = empty.load_seed_json(&seed).await.unwrap_err();
    assert!(
        err.contains("agency agency-x: pixel price 12.00 (the seed's defaultPricing) is below its cost 12.50"),
        "{err}"
    );
    assert!(empty.snapshot().await.is_empty(), "nothing written");
}

#[tokio::test]
async fn the_shipped_seeds_sell_every_type_at_or_above_cost() {
    let env = TestEnv::seeded().await;
    for agency in ["agency-northwind", "agency-brightside", "agency-plainsail"] {
        let (default, overrides) = env.app.store.pricing(agency).await.unwrap();
        let resolved = shared::domain::resolve_pricing(agency, &default, overrides.as_ref()).unwrap();
        for rate in &resolved.rates {
            assert!(rate.price >= rate.cost, "{agency} {}: {} < {}", rate.credit_type, rate.price, rate.cost);
        }
    }
    // Brightside's enrichment keeps its own price with the default cost behind it.
    let (default, overrides) = env.app.store.pricing("agency-brightside").await.unwrap();
    let brightside = shared::domain::resolve_pricing("agency-brightside", &default, overrides.as_ref()).unwrap();
    let enrichment = brightside.rate(CreditType::Enrichment);
    assert_eq!((enrichment.price.to_string(), enrichment.cost.to_string()), ("0.4150".into(), "0.40".into()));
}
