//! Low-balance alerts and auto top-ups decided inside the consumption's own transaction (issue #25), against a
//! real dynoxide: concurrent consumptions around a threshold emit one `credits.low` per crossing; top-ups stay
//! within the rule, the cap and the lines, to the cent; a top-up racing a price change is wholly at one price;
//! refusals by the line or the cap; `credits.consumed` / `credits.released` once each, schema-valid.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::consumption::{Consumer, ConsumptionAnswer, ConsumptionError, ConsumptionSettings, consumption_event};
use shared::domain::CreditType::{self, Audience, Pixel};
use shared::domain::rules::{AlertThresholds, ConsumptionRules, TopupRule, TopupRules};
use shared::domain::{PurchaseTrigger, ledger, time};
use testkit::{COFFEE, TestEnv, d};

const NORTHWIND: &str = "agency-northwind";

fn consume(id: &str, quantities: Value) -> Value {
    json!({"accountId": COFFEE, "consumptionId": id, "quantities": quantities, "reason": "build"})
}

/// Consumes until answered: `StorageUnavailable` (the account kept changing) is retried with the same id, as a
/// calling service does.
async fn consume_answered(consumer: &Consumer, event: &Value) -> Result<ConsumptionAnswer, ConsumptionError> {
    loop {
        match consumption_event(consumer, event).await {
            Err(error) if error.error_type() == "StorageUnavailable" => continue,
            other => return other,
        }
    }
}

async fn give(env: &TestEnv, credit_type: CreditType, quantity: i64) {
    let at = time::timestamp(SystemTime::now());
    let deltas = ledger::Deltas::from([(credit_type, quantity)]);
    env.app.store.adjust(COFFEE, &deltas, "test funds", "test", &uuid::Uuid::now_v7().to_string(), &at).await.unwrap();
}

async fn set_rules(env: &TestEnv, alerts: &[(CreditType, u64)], topups: &[(CreditType, u64, u64)]) {
    let rules = ConsumptionRules {
        alert_thresholds: alerts.iter().copied().collect::<AlertThresholds>(),
        topups: topups
            .iter()
            .map(|(t, below, buy)| (*t, TopupRule { below: *below, buy: *buy }))
            .collect::<TopupRules>(),
        version: 0,
    };
    env.app.store.set_consumption_rules_for_test(COFFEE, &rules).await.unwrap();
}

async fn balance(env: &TestEnv, credit_type: CreditType) -> u64 {
    env.app.store.account(COFFEE).await.unwrap().unwrap().balances.get(credit_type)
}

/// Every item of COFFEE's partition under a sort key prefix, in key order (strongly consistent).
async fn coffee_items(env: &TestEnv, prefix: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    env.client
        .query()
        .table_name(&env.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("ACCOUNT#{COFFEE}")))
        .expression_attribute_values(":prefix", AttributeValue::S(prefix.into()))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
}

/// Every event in the account's outbox, oldest first, each validated against its schema.
async fn outbox(env: &TestEnv) -> Vec<Value> {
    let items = coffee_items(env, "OUTBOX#").await;
    let events: Vec<Value> =
        items.iter().map(|item| serde_json::from_str(item["event"].as_s().unwrap()).unwrap()).collect();
    crate::events::validate(&events.iter().map(Value::to_string).collect::<Vec<_>>()).unwrap();
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    events
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == event_type).collect()
}

/// Four containers, each with its own remembered facts, as a scaled-out function has.
fn containers(env: &TestEnv, settings: ConsumptionSettings) -> Vec<Consumer> {
    (0..4).map(|_| Consumer::new(env.app.store.clone(), settings)).collect()
}

async fn race(consumers: &[Consumer], prefix: &str, count: usize, quantities: Value) -> Vec<Value> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let consumer = consumers[i % consumers.len()].clone();
        let event = consume(&format!("{prefix}-{i}"), quantities.clone());
        tasks.push(tokio::spawn(async move { consume_answered(&consumer, &event).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(serde_json::to_value(task.await.unwrap().expect("consumed")).unwrap());
    }
    answers
}

#[tokio::test]
async fn sixty_four_concurrent_consumptions_around_a_threshold_emit_one_alert_per_crossing() {
    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 100 - start as i64).await;
    set_rules(&env, &[(Audience, 80)], &[]).await;
    let consumers = containers(&env, ConsumptionSettings::default());

    let answers = race(&consumers, "a", 64, json!({"audience": 1})).await;
    assert_eq!(balance(&env, Audience).await, 36);
    let low = of_type(&outbox(&env).await, "credits.low").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(low.len(), 1, "one crossing, one alert: {low:?}");
    assert_eq!((low[0]["detail"]["threshold"].as_u64(), low[0]["detail"]["balance"].as_u64()), (Some(80), Some(79)));
    assert_eq!(answers.iter().filter(|a| a["alerts"] == json!(["audience"])).count(), 1);

    // Back at or above the threshold re-arms it: the next crossing alerts once more, and only once.
    give(&env, Audience, 60).await;
    race(&consumers, "b", 32, json!({"audience": 1})).await;
    assert_eq!(balance(&env, Audience).await, 64);
    assert_eq!(of_type(&outbox(&env).await, "credits.low").len(), 2);
    assert_eq!(of_type(&outbox(&env).await, "credits.consumed").len(), 96);
    assert!(env.drift(COFFEE).await.is_empty(), "{:?}", env.drift(COFFEE).await);
}

#[tokio::test]
async fn sixty_four_concurrent_consumptions_top_up_as_the_rule_and_the_cap_allow_exact_to_the_cent() {
    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 40 - start as i64).await;
    set_rules(&env, &[], &[(Audience, 20, 10)]).await;
    let client_line = env.app.store.account(COFFEE).await.unwrap().unwrap().credit_line.unwrap().available;
    let agency_line = env.app.store.agency_line(NORTHWIND).await.unwrap().unwrap().available;
    let purchases_before = env.app.store.all_purchases(COFFEE).await.unwrap().len();
    let today = time::timestamp(SystemTime::now())[..10].to_owned();
    let day_before = day_sums(&env, &today).await;
    let consumers = containers(&env, ConsumptionSettings::default());

    let answers = race(&consumers, "t", 64, json!({"audience": 1})).await;
    // 40 → 20 by 20 consumptions, then every 10th tops up by 10 until the cap of 3: 40 + 30 − 64.
    assert_eq!(balance(&env, Audience).await, 6);
    let topups: Vec<_> =
        env.app.store.all_purchases(COFFEE).await.unwrap().into_iter().skip(purchases_before).collect();
    assert_eq!(topups.len(), 3, "the cap allows three");
    assert!(topups.iter().all(|p| p.trigger == PurchaseTrigger::AutoTopup && p.lines.len() == 1));
    assert!(topups.iter().all(|p| p.lines[0].quantity == 10 && p.total == d("250.00")));
    let total: Decimal = topups.iter().map(|p| p.total).sum();
    let at_cost: Decimal = topups.iter().map(|p| p.total_at_cost).sum();
    let account = env.app.store.account(COFFEE).await.unwrap().unwrap();
    assert_eq!(account.credit_line.unwrap().available, client_line - total);
    assert_eq!(env.app.store.agency_line(NORTHWIND).await.unwrap().unwrap().available, agency_line - at_cost);
    assert_eq!(account.topups.map(|t| t.count), Some(3));
    // The agency's day sums (its overview's chart) count the top-ups as any purchase.
    assert!(topups.iter().all(|p| p.created_at.starts_with(&today)));
    let day_after = day_sums(&env, &today).await;
    assert_eq!(day_after.purchases - day_before.purchases, 3);
    assert_eq!(
        (day_after.total - day_before.total, day_after.total_at_cost - day_before.total_at_cost),
        (total, at_cost)
    );
    // Each top-up is a ledger entry of its own; the ledger sums to the balances (none negative), the line matches.
    let ledger = answer_ledger(&env).await;
    for purchase in &topups {
        assert_eq!(ledger.iter().filter(|e| e["purchaseId"] == purchase.purchase_id.as_str()).count(), 1);
    }
    assert!(env.drift(COFFEE).await.is_empty(), "{:?}", env.drift(COFFEE).await);
    let events = outbox(&env).await;
    let purchased = of_type(&events, "credits.purchased");
    assert_eq!(purchased.len(), 3);
    assert!(purchased.iter().all(|e| e["detail"]["trigger"] == "auto_topup"));
    assert_eq!(of_type(&events, "auto_topup.succeeded").len(), 3);
    // After the cap every consumption that would leave it below 20 says so: 19 down to 6.
    let refused = of_type(&events, "auto_topup.refused");
    assert_eq!(refused.len(), 14);
    assert!(refused.iter().all(|e| e["detail"]["reason"] == "daily_cap"));
    assert_eq!(answers.iter().filter(|a| a.get("topup").is_some()).count(), 3);
    assert_eq!(answers.iter().filter(|a| a["topupRefused"] == "daily_cap").count(), 14);
}

/// The agency's overview sums of one UTC day (zero before its first purchase).
async fn day_sums(env: &TestEnv, day: &str) -> shared::domain::overview::DaySums {
    let days = env.app.store.agency_days(NORTHWIND, day, day, 1).await.unwrap();
    days.into_iter().next().map(|(_, sums)| sums).unwrap_or_default()
}

/// Both seeded prices of the agency set at once (one pricing version).
async fn set_prices(env: &TestEnv, audience: &str, pixel: &str) {
    let (_, agency) = env.app.store.pricing(NORTHWIND).await.unwrap();
    let mut rates = agency.unwrap().rates;
    rates.entry(Audience).or_default().price = Some(audience.parse().unwrap());
    rates.entry(Pixel).or_default().price = Some(pixel.parse().unwrap());
    env.app.store.upsert_agency_pricing(NORTHWIND, &rates).await.unwrap();
}

#[tokio::test]
async fn a_topup_racing_a_price_change_is_wholly_at_the_old_or_the_new_prices() {
    let env = TestEnv::seeded().await;
    set_rules(&env, &[], &[(Audience, 10, 10), (Pixel, 10, 10)]).await;
    let consumer = Consumer::new(env.app.store.clone(), ConsumptionSettings { auto_topup_daily_cap: 100 });
    for credit_type in [Audience, Pixel] {
        let now = balance(&env, credit_type).await;
        give(&env, credit_type, 5 - now as i64).await;
    }
    // A remembered price that changed is never charged: the price check fails, the prices are read again.
    let first = consume_answered(&consumer, &consume("p-0", json!({"audience": 1, "pixel": 1}))).await.unwrap();
    let first = serde_json::to_value(first).unwrap();
    assert_eq!(first["topup"]["lines"][0]["unitPrice"], "25.00", "{first}");
    set_prices(&env, "26.00", "11.00").await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 10 - start as i64).await;
    env.operations.reset();
    let second =
        serde_json::to_value(consume_answered(&consumer, &consume("p-1", json!({"audience": 1}))).await.unwrap())
            .unwrap();
    assert_eq!(second["topup"]["lines"][0]["unitPrice"], "26.00", "{second}");
    assert!(env.operations.operations().contains(&"BatchGetItem".to_owned()));

    // Racing: each round's top-up buys both types at one version's prices.
    let mut prices = vec![("26.00", "11.00")];
    for round in 0..6 {
        let new = (format!("{}.00", 27 + round), format!("{}.00", 12 + round));
        let (audience, pixel) = (balance(&env, Audience).await, balance(&env, Pixel).await);
        give(&env, Audience, 10 - audience as i64).await;
        give(&env, Pixel, 10 - pixel as i64).await;
        let event = consume(&format!("race-{round}"), json!({"audience": 1, "pixel": 1}));
        let (answer, ()) = tokio::join!(consume_answered(&consumer, &event), set_prices(&env, &new.0, &new.1));
        let answer = serde_json::to_value(answer.unwrap()).unwrap();
        let lines = answer["topup"]["lines"].as_array().unwrap();
        let bought: (String, String) =
            (lines[0]["unitPrice"].as_str().unwrap().to_owned(), lines[1]["unitPrice"].as_str().unwrap().to_owned());
        let last = prices.last().unwrap();
        assert!(
            bought == (last.0.to_owned(), last.1.to_owned()) || bought == new,
            "round {round}: bought at {bought:?}, prices were {last:?} then {new:?}"
        );
        prices.push((new.0.clone().leak(), new.1.clone().leak()));
    }
    assert!(env.drift(COFFEE).await.is_empty(), "{:?}", env.drift(COFFEE).await);
}

#[tokio::test]
async fn a_topup_the_client_line_refuses_fails_the_consumption_only_when_the_balance_does_not_suffice() {
    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 15 - start as i64).await;
    set_rules(&env, &[], &[(Audience, 10, 10)]).await;
    env.app.store.set_credit_limit(COFFEE, d("100.00")).await.unwrap();
    // 15 − 6 = 9 is below 10, and 10 × 25.00 does not fit the line: consumed, the top-up refused.
    let answer = serde_json::to_value(
        consume_answered(&env.consumer, &consume("line-1", json!({"audience": 6}))).await.unwrap(),
    )
    .unwrap();
    assert_eq!(answer["topupRefused"], "credit_limit", "{answer}");
    assert!(answer.get("topup").is_none());
    assert_eq!(balance(&env, Audience).await, 9);
    let refused = of_type(&outbox(&env).await, "auto_topup.refused").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0]["detail"]["reason"].as_str(), refused[0]["detail"]["quantity"].as_u64()),
        (Some("credit_limit"), Some(10))
    );
    // Not enough without the top-up: refused as before, nothing written.
    let before = env.snapshot().await;
    let error = consume_answered(&env.consumer, &consume("line-2", json!({"audience": 20}))).await.unwrap_err();
    assert_eq!(error.error_type(), "InsufficientCredits");
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn the_daily_cap_refuses_the_next_topup_and_the_consumption_goes_on() {
    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 5 - start as i64).await;
    set_rules(&env, &[], &[(Audience, 10, 10)]).await;
    let consumer = Consumer::new(env.app.store.clone(), ConsumptionSettings { auto_topup_daily_cap: 1 });
    let bought =
        serde_json::to_value(consume_answered(&consumer, &consume("cap-1", json!({"audience": 1}))).await.unwrap())
            .unwrap();
    assert_eq!(bought["topup"]["total"], "250.00", "{bought}");
    assert_eq!(balance(&env, Audience).await, 14);
    let capped =
        serde_json::to_value(consume_answered(&consumer, &consume("cap-2", json!({"audience": 6}))).await.unwrap())
            .unwrap();
    assert_eq!(capped["topupRefused"], "daily_cap", "{capped}");
    assert_eq!(balance(&env, Audience).await, 8);
    let events = outbox(&env).await;
    assert_eq!(of_type(&events, "auto_topup.refused")[0]["detail"]["reason"], "daily_cap");
    // A replay answers what happened the first time, and writes nothing more, even from a container that never
    // saw the account and with the credits gone since.
    give(&env, Audience, -8).await;
    let cold = Consumer::new(env.app.store.clone(), ConsumptionSettings { auto_topup_daily_cap: 1 });
    let replay = consume_answered(&cold, &consume("cap-2", json!({"audience": 6}))).await.unwrap();
    assert!(matches!(replay, ConsumptionAnswer::Consumed { replayed: true, .. }), "{replay:?}");
    let reused = consume_answered(&cold, &consume("cap-2", json!({"audience": 7}))).await.unwrap_err();
    assert_eq!(reused.error_type(), "ConsumptionIdReused");
    give(&env, Audience, 8).await;
    let replay =
        serde_json::to_value(consume_answered(&consumer, &consume("cap-2", json!({"audience": 6}))).await.unwrap())
            .unwrap();
    assert_eq!((replay["replayed"].as_bool(), &replay["topupRefused"]), (Some(true), &json!("daily_cap")));
    assert_eq!(outbox(&env).await.len(), events.len());
}

#[tokio::test]
async fn a_consumption_and_its_release_emit_one_event_each_and_their_replays_none() {
    let env = TestEnv::seeded().await;
    give(&env, Pixel, 5).await;
    let event = consume("ev-1", json!({"pixel": 3}));
    consume_answered(&env.consumer, &event).await.unwrap();
    consume_answered(&env.consumer, &event).await.unwrap();
    let release = json!({"accountId": COFFEE, "release": "ev-1", "reason": "job failed"});
    consumption_event(&env.consumer, &release).await.unwrap();
    consumption_event(&env.consumer, &release).await.unwrap();
    let events = outbox(&env).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["credits.consumed", "credits.released"]);
    for event in &events {
        let detail = &event["detail"];
        assert_eq!((detail["accountId"].as_str(), detail["agencyId"].as_str()), (Some(COFFEE), Some(NORTHWIND)));
        assert_eq!((detail["consumptionId"].as_str(), &detail["quantities"]), (Some("ev-1"), &json!({"pixel": 3})));
        assert!(detail.get("balancesAfter").is_none());
    }
}

#[tokio::test]
async fn what_a_consumption_costs_in_calls_with_and_without_rules() {
    let env = TestEnv::seeded().await;
    give(&env, Audience, 100).await;
    let consumer = Consumer::new(env.app.store.clone(), ConsumptionSettings::default());
    env.operations.reset();
    consume_answered(&consumer, &consume("c-0", json!({"audience": 1}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["GetItem", "TransactWriteItems"], "cold: the account read once");
    env.operations.reset();
    consume_answered(&consumer, &consume("c-1", json!({"audience": 1}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["TransactWriteItems"], "warm, no rules");

    // Rules set elsewhere: the first consumption learns them from its failed condition and plans again.
    let now = balance(&env, Audience).await;
    set_rules(&env, &[(Audience, 10)], &[(Audience, now - 3, 5)]).await;
    env.operations.reset();
    consume_answered(&consumer, &consume("c-2", json!({"audience": 1}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["TransactWriteItems", "TransactWriteItems"]);
    env.operations.reset();
    consume_answered(&consumer, &consume("c-3", json!({"audience": 1}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["TransactWriteItems"], "warm, with rules, far from them");
    // The first top-up reads the prices; the next one remembers them.
    env.operations.reset();
    consume_answered(&consumer, &consume("c-4", json!({"audience": 2}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["BatchGetItem", "TransactWriteItems"]);
}

/// Every ledger entry item of the account, as JSON.
async fn answer_ledger(env: &TestEnv) -> Vec<Value> {
    let items = coffee_items(env, "LEDGER#").await;
    items
        .iter()
        .map(|item| {
            item.iter()
                .filter_map(|(k, v)| v.as_s().ok().map(|text| (k.clone(), Value::String(text.clone()))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect()
}

#[tokio::test]
async fn a_topup_the_agency_ceiling_refuses_is_learned_from_its_line_and_the_consumption_goes_on() {
    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 15 - start as i64).await;
    set_rules(&env, &[], &[(Audience, 10, 10)]).await;
    env.app.store.set_agency_ceiling(NORTHWIND, d("0.00")).await.unwrap();
    let agency_line = env.app.store.agency_line(NORTHWIND).await.unwrap().unwrap().available;
    let answer = serde_json::to_value(
        consume_answered(&env.consumer, &consume("ceiling-1", json!({"audience": 6}))).await.unwrap(),
    )
    .unwrap();
    assert_eq!(answer["topupRefused"], "agency_ceiling", "{answer}");
    assert_eq!(balance(&env, Audience).await, 9);
    assert_eq!(env.app.store.agency_line(NORTHWIND).await.unwrap().unwrap().available, agency_line);
    let refused = of_type(&outbox(&env).await, "auto_topup.refused").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["detail"]["reason"], "agency_ceiling");
}

/// A refusal by the agency's ceiling is decided on a line seen short in an earlier attempt; it commits only while
/// the line still lacks the top-up's cost. With room there now (a ceiling raised, a void in between), the attempt
/// writes nothing and says so, and the consumer's next plan buys the top-up.
#[tokio::test]
async fn a_refusal_by_the_agency_ceiling_commits_only_while_its_line_still_lacks_the_cost() {
    use shared::domain::consumption_plan::{AccountFacts, Decision, PlanInputs, plan};
    use shared::domain::events::TopupRefusal;
    use shared::storage::{AttemptOutcome, ConsumeAttempt};

    let env = TestEnv::seeded().await;
    let start = balance(&env, Audience).await;
    give(&env, Audience, 15 - start as i64).await;
    set_rules(&env, &[], &[(Audience, 10, 10)]).await;
    let account = env.app.store.account(COFFEE).await.unwrap().unwrap();
    let (default, agency) = env.app.store.pricing(NORTHWIND).await.unwrap();
    let pricing = shared::domain::resolve_pricing(NORTHWIND, &default, agency.as_ref()).unwrap();
    let consumption = ledger::Consumption {
        account_id: COFFEE.into(),
        consumption_id: "ceiling-lifted".into(),
        quantities: ledger::Quantities::from([(Audience, 6)]),
        reason: "build".into(),
        reference: None,
    };
    let created_at = time::timestamp(SystemTime::now());
    let today = created_at[..10].to_owned();
    // Planned as after an attempt the agency's line refused; the seeded line has room for the top-up.
    let inputs = PlanInputs {
        today: &today,
        daily_cap: 3,
        pricing: Some(&pricing),
        agency_ceiling_refused: true,
        balances_exact: true,
    };
    let Decision::Commit(refusing) = plan(&AccountFacts::of(&account), &consumption.quantities, inputs) else {
        panic!("the balance suffices: the plan commits");
    };
    assert_eq!(refusing.topup_refused.as_ref().map(|r| r.reason), Some(TopupRefusal::AgencyCeiling));
    let attempt = ConsumeAttempt {
        consumption: &consumption,
        agency_id: NORTHWIND,
        entry_id: &uuid::Uuid::now_v7().to_string(),
        created_at: &created_at,
        today: &today,
        plan: &refusing,
        pricing: Some(&pricing),
        topup: None,
    };
    assert_eq!(env.app.store.consume_planned(attempt).await.unwrap(), AttemptOutcome::AgencyCeilingLifted);
    assert_eq!(balance(&env, Audience).await, 15, "nothing was written");
    assert!(of_type(&outbox(&env).await, "auto_topup.refused").is_empty());

    // The consumer itself, with that line: the top-up is bought.
    let answer = serde_json::to_value(
        consume_answered(&env.consumer, &consume("ceiling-lifted", json!({"audience": 6}))).await.unwrap(),
    )
    .unwrap();
    assert!(answer.get("topup").is_some(), "{answer}");
    assert_eq!(balance(&env, Audience).await, 19);
}
