//! `GET /agencies/{agencyId}/overview` against a real dynoxide: the day sums the purchase and void transactions
//! keep equal the purchases per day at price and at cost; the attention lists hold exactly the right clients and
//! nothing of another agency; the read's DynamoDB calls are bounded, with `truncated` past the cap.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::api;
use shared::domain::overview::{Month, date_of};
use shared::domain::{self, CreditType, PurchaseRecord, Quantities};
use shared::storage::RecordOutcome;
use testkit::{ApiEvent, BIKES, COFFEE, DENTAL, TestEnv, answer, assert_problem, d};

const NORTHWIND: &str = "agency-northwind";
const BRIGHTSIDE: &str = "agency-brightside";
const OVERVIEW: &str = "/agencies/{agencyId}/overview";
const VOID: &str = "/agencies/{agencyId}/purchases/{purchaseId}/void";

async fn overview(env: &TestEnv, agency: &str, query: Option<&str>) -> testkit::Answer {
    let mut event = ApiEvent::agency("GET", OVERVIEW, agency).as_agency_admin(agency);
    if let Some(query) = query {
        event = event.query(query);
    }
    answer(api::agency_read(&env.app, event.request()).await)
}

fn money(value: &Value) -> Decimal {
    d(value.as_str().unwrap_or_else(|| panic!("not a money string: {value}")))
}

fn at(date: &str, hour: u64) -> SystemTime {
    let midnight = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).unwrap();
    midnight + Duration::from_secs(hour * 3600)
}

/// A purchase of `account` at `when`, at its agency's prices, through the purchase transaction.
async fn purchase_at(
    env: &TestEnv,
    account: &str,
    when: SystemTime,
    quantities: &[(CreditType, u64)],
) -> PurchaseRecord {
    let store = &env.app.store;
    let agency_id = store.account(account).await.unwrap().unwrap().agency_id;
    let (default, agency) = store.pricing(&agency_id).await.unwrap();
    let pricing = domain::resolve_pricing(&agency_id, &default, agency.as_ref()).unwrap();
    let quote = domain::quote(&pricing, &Quantities::from_pairs(quantities.iter().copied())).unwrap();
    let record = PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), account, &agency_id, when, quote, None);
    assert_eq!(store.record_purchase(&record, &pricing, None).await.unwrap(), RecordOutcome::Recorded);
    record
}

async fn buy(env: &TestEnv, account: &str, quantities: Value) {
    let a = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(account, &json!({"quantities": quantities})).request())
            .await,
    );
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Per day: (purchases, at price, at cost) of the agency's purchases not voided, summed from the records.
async fn expected_days(env: &TestEnv, agency: &str, accounts: &[&str]) -> BTreeMap<String, (i64, Decimal, Decimal)> {
    let mut days = BTreeMap::new();
    for account in accounts {
        for p in env.app.store.all_purchases(account).await.unwrap() {
            if p.agency_id != agency || p.voided_at.is_some() {
                continue;
            }
            let day = days.entry(p.created_at[..10].to_owned()).or_insert((0, Decimal::ZERO, Decimal::ZERO));
            day.0 += 1;
            day.1 += p.total;
            day.2 += p.total_at_cost;
        }
    }
    days
}

#[tokio::test]
async fn the_day_sums_equal_the_purchases_per_day_after_purchases_and_a_void_across_two_days() {
    let env = TestEnv::seeded().await;
    let (first, second) = ("2026-10-05", "2026-10-06");
    let a = purchase_at(&env, COFFEE, at(first, 9), &[(CreditType::Audience, 2), (CreditType::Enrichment, 3)]).await;
    let b = purchase_at(&env, BIKES, at(first, 23), &[(CreditType::Pixel, 1)]).await;
    let c = purchase_at(&env, COFFEE, at(second, 0), &[(CreditType::CustomModel, 1)]).await;
    let voided = purchase_at(&env, BIKES, at(second, 12), &[(CreditType::Audience, 1), (CreditType::Pixel, 4)]).await;
    // Another agency's purchase on the same day is never in northwind's sums.
    purchase_at(&env, DENTAL, at(first, 10), &[(CreditType::Audience, 1)]).await;
    // The void (the real handler) takes the purchase out of its own day's sums.
    let event = ApiEvent::agency("POST", VOID, NORTHWIND)
        .as_agency_admin(NORTHWIND)
        .path_parameter("purchaseId", &voided.purchase_id)
        .json(&json!({"accountId": BIKES}));
    let v = answer(api::agency_write(&env.app, event.request()).await);
    assert_eq!(v.status, 200, "{}", v.body);

    let o = overview(&env, NORTHWIND, Some("cycle=2026-10")).await;
    assert_eq!(o.status, 200, "{}", o.body);
    let cycle = &o.body["cycle"];
    assert_eq!(
        (cycle["month"].as_str(), cycle["start"].as_str(), cycle["end"].as_str()),
        (Some("2026-10"), Some("2026-10-01"), Some("2026-10-31"))
    );
    let days = cycle["days"].as_array().unwrap();
    assert_eq!(days.len(), 31, "a past cycle shows all its days");
    let expected = expected_days(&env, NORTHWIND, &[COFFEE, BIKES]).await;
    assert_eq!(expected.keys().cloned().collect::<Vec<_>>(), [first, second], "{expected:?}");
    let (mut count, mut total, mut cost) = (0, Decimal::ZERO, Decimal::ZERO);
    for day in days {
        let date = day["date"].as_str().unwrap();
        let (n, price, at_cost) = expected.get(date).copied().unwrap_or_default();
        assert_eq!(day["purchases"], n, "{date}");
        assert_eq!(money(&day["total"]), price, "{date}");
        assert_eq!(money(&day["totalAtCost"]), at_cost, "{date}");
        assert_eq!(money(&day["margin"]), price - at_cost, "{date}");
        (count, total, cost) = (count + n, total + price, cost + at_cost);
    }
    // By hand, too: the first day is a + b; the second only c (the void came back out of its own day).
    assert_eq!(days[4]["total"], (a.total + b.total).to_string());
    assert_eq!(days[5]["total"], c.total.to_string());
    assert_eq!(days[5]["purchases"], 1);
    let totals = &cycle["totals"];
    assert_eq!(
        (totals["purchases"].as_i64(), money(&totals["total"]), money(&totals["totalAtCost"])),
        (Some(count), total, cost)
    );
    assert_eq!(money(&totals["margin"]), total - cost);
    assert_eq!(count, 3);

    // Brightside's own overview has its own purchase only.
    let other = overview(&env, BRIGHTSIDE, Some("cycle=2026-10")).await;
    assert_eq!(other.body["cycle"]["totals"]["purchases"], 1);
    assert_eq!(other.body["cycle"]["days"][4]["purchases"], 1);
}

/// A purchase recorded before the day sums existed (no `inDaySums` on its item, not in its day's sums): its void
/// leaves the day alone instead of driving it below zero.
#[tokio::test]
async fn a_void_of_a_purchase_recorded_before_the_day_sums_leaves_them_alone() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = TestEnv::seeded().await;
    let day = "2026-10-07";
    let kept = purchase_at(&env, COFFEE, at(day, 8), &[(CreditType::Audience, 1)]).await;
    let old = purchase_at(&env, BIKES, at(day, 9), &[(CreditType::Pixel, 2)]).await;
    // As it was before the day sums: the item without the mark, the day without the purchase.
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{BIKES}")))
        .key("sk", AttributeValue::S(format!("PURCHASE#{}", old.purchase_id)))
        .update_expression("REMOVE inDaySums")
        .condition_expression("inDaySums = :yes")
        .expression_attribute_values(":yes", AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("AGENCYLINE#{NORTHWIND}")))
        .key("sk", AttributeValue::S(format!("DAY#{day}")))
        .update_expression("ADD purchases :minus, #total :total, totalAtCost :cost")
        .expression_attribute_names("#total", "total")
        .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
        .expression_attribute_values(":total", AttributeValue::N((-old.total).to_string()))
        .expression_attribute_values(":cost", AttributeValue::N((-old.total_at_cost).to_string()))
        .send()
        .await
        .unwrap();
    let event = ApiEvent::agency("POST", VOID, NORTHWIND)
        .as_agency_admin(NORTHWIND)
        .path_parameter("purchaseId", &old.purchase_id)
        .json(&json!({"accountId": BIKES}));
    let v = answer(api::agency_write(&env.app, event.request()).await);
    assert_eq!(v.status, 200, "{}", v.body);
    let o = overview(&env, NORTHWIND, Some("cycle=2026-10")).await;
    let seventh = &o.body["cycle"]["days"][6];
    assert_eq!(seventh["date"], day);
    assert_eq!((seventh["purchases"].as_i64(), money(&seventh["total"])), (Some(1), kept.total), "{seventh}");
}

#[tokio::test]
async fn the_running_cycle_shows_its_days_through_today_with_todays_purchase() {
    let env = TestEnv::seeded().await;
    buy(&env, COFFEE, json!({"pixel": 2})).await;
    let o = overview(&env, NORTHWIND, None).await;
    assert_eq!(o.status, 200, "{}", o.body);
    let now = SystemTime::now();
    let today = date_of(now);
    let days = o.body["cycle"]["days"].as_array().unwrap();
    assert_eq!(o.body["cycle"]["month"], Month::containing(now).to_string());
    assert_eq!(days.len(), today[8..].parse::<usize>().unwrap(), "every day from the 1st through today");
    let last = days.last().unwrap();
    assert_eq!(
        (last["date"].as_str(), last["purchases"].as_i64(), last["total"].as_str()),
        (Some(today.as_str()), Some(1), Some("20.00"))
    );
    assert_eq!(o.body["cycle"]["totals"]["total"], "20.00");
    // A cycle not begun shows no day and reads none.
    env.operations.reset();
    let future = overview(&env, NORTHWIND, Some("cycle=2999-01")).await;
    assert_eq!(future.body["cycle"]["days"], json!([]));
    assert!(!env.operations.operations().is_empty(), "the attention lists are still read");
}

/// Clients of northwind: one on hold with a declined collection, one at 81% of its line, one at exactly 80%; and
/// brightside's DENTAL on hold and near its limit, which northwind never sees.
#[tokio::test]
async fn the_lists_hold_exactly_the_clients_that_need_attention_and_nothing_of_another_agency() {
    let env = TestEnv::seeded().await;
    env.load_seed_json(&json!({"accounts": [
        {"accountId": "acct-northwind-above", "agencyId": NORTHWIND, "name": "Above 80", "creditLimit": "1000.00"},
        {"accountId": "acct-northwind-at", "agencyId": NORTHWIND, "name": "At 80", "creditLimit": "1000.00"},
        {"accountId": DENTAL, "agencyId": BRIGHTSIDE, "creditLimit": "30.00"},
    ]}))
    .await
    .unwrap();
    // BIKES declined (held, collection failed), COFFEE paid; DENTAL declined under brightside.
    let held = [BIKES, COFFEE].map(str::to_owned);
    let now = SystemTime::now();
    let seeded = testkit::seed_loader::seed_settled_statements(&env.app.store, &held, BIKES, now).await.unwrap();
    assert_eq!(seeded.declined.len(), 1);
    let declined = seeded.declined[0].clone();
    testkit::seed_loader::seed_settled_statements(&env.app.store, &[DENTAL.to_owned()], DENTAL, now).await.unwrap();
    buy(&env, "acct-northwind-above", json!({"pixel": 81})).await; // 810.00 of 1000.00: 81%
    buy(&env, "acct-northwind-at", json!({"pixel": 80})).await; // 800.00 of 1000.00: exactly 80%, not above

    let o = overview(&env, NORTHWIND, None).await;
    assert_eq!(o.status, 200, "{}", o.body);
    let body = &o.body;
    assert_eq!(
        (body["agencyId"].as_str(), body["clientsRead"].as_u64(), body["truncated"].as_bool()),
        (Some(NORTHWIND), Some(4), Some(false))
    );
    let held_statement = env.app.store.statement(&declined).await.unwrap().unwrap();
    let due = api::views::money(held_statement.amount_due);
    assert_eq!(
        body["onHold"],
        json!([{
            "accountId": BIKES, "name": "Northside Bikes", "holdStatementId": declined, "heldStatements": 1,
            "amountDue": due,
            "statement": {
                "statementId": declined, "cycleEnd": held_statement.cycle_end, "status": "payment_failed",
                "amountDue": due, "dueAt": held_statement.due_at,
                "paidAt": null, "collection": body["onHold"][0]["statement"]["collection"].clone(),
            },
        }])
    );
    assert_eq!(body["onHold"][0]["statement"]["collection"]["state"], "failed");
    assert_eq!(
        body["nearLimit"],
        json!([{
            "accountId": "acct-northwind-above", "name": "Above 80", "usedPercent": "81.00",
            "creditLine": {"limit": "1000.00", "outstanding": "810.00", "available": "190.00"},
        }])
    );
    let next_at = held_statement.collection.as_ref().and_then(|c| c.next_at.clone());
    assert!(next_at.is_some());
    assert_eq!(
        body["failedCollections"],
        json!([{
            "accountId": BIKES, "name": "Northside Bikes", "statementId": declined, "cycleEnd": held_statement.cycle_end,
            "status": "payment_failed", "amountDue": due, "dueAt": held_statement.due_at,
            "attempt": 1, "reason": "card_declined", "nextAttemptAt": next_at,
        }])
    );
    assert!(!body.to_string().contains(DENTAL), "another agency's client never shows: {body}");

    // Brightside sees its own: DENTAL held, failed, and near its 30.00 line (27.50 owed).
    let other = overview(&env, BRIGHTSIDE, None).await;
    let ids = |list: &str| -> Vec<String> {
        other.body[list].as_array().unwrap().iter().map(|c| c["accountId"].as_str().unwrap().to_owned()).collect()
    };
    let dental = vec![DENTAL.to_owned()];
    assert_eq!((ids("onHold"), ids("nearLimit"), ids("failedCollections")), (dental.clone(), dental.clone(), dental));
    assert!(!other.body.to_string().contains(BIKES));
}

#[tokio::test]
async fn only_the_agencys_own_administrator_may_read_it_and_a_bad_cycle_is_refused_before_any_read() {
    let env = TestEnv::seeded().await;
    env.operations.reset();
    let other = ApiEvent::agency("GET", OVERVIEW, NORTHWIND).as_agency_admin(BRIGHTSIDE);
    assert_problem(&answer(api::agency_read(&env.app, other.request()).await), 403, "forbidden");
    let member = ApiEvent::agency("GET", OVERVIEW, NORTHWIND).as_agency_member(NORTHWIND);
    assert_problem(&answer(api::agency_read(&env.app, member.request()).await), 403, "agency_admin_required");
    let client = ApiEvent::agency("GET", OVERVIEW, NORTHWIND).as_account(COFFEE);
    assert_eq!(answer(api::agency_read(&env.app, client.request()).await).status, 403);
    for bad in ["cycle=2026-13", "cycle=2026-1", "cycle=", "cycle=1999-12", "cycle=2026-10&cycle=2026-11"] {
        assert_problem(&overview(&env, NORTHWIND, Some(bad)).await, 400, "invalid_query_parameter");
    }
    assert!(env.operations.operations().is_empty(), "refused before any read: {:?}", env.operations.operations());
}

#[tokio::test]
async fn the_read_is_bounded_pages_of_one_hundred_clients_up_to_five_hundred_then_truncated() {
    let env = TestEnv::seeded().await;
    let held = [BIKES.to_owned()];
    testkit::seed_loader::seed_settled_statements(&env.app.store, &held, BIKES, SystemTime::now()).await.unwrap();
    // A small agency: one page of clients, one BatchGetItem (the held statement), one Query of the days.
    env.operations.reset();
    let o = overview(&env, NORTHWIND, None).await;
    assert_eq!(o.status, 200, "{}", o.body);
    let mut calls = env.operations.operations();
    calls.sort();
    assert_eq!(calls, ["BatchGetItem", "Query", "Query"], "{calls:?}");

    // 510 clients: five pages of 100 and no more; the answer says it stopped.
    let accounts: Vec<Value> = (0..508)
        .map(|i| json!({"accountId": format!("acct-northwind-{i:04}"), "agencyId": NORTHWIND, "creditLimit": "10.00"}))
        .collect();
    env.load_seed_json(&json!({ "accounts": accounts })).await.unwrap();
    env.operations.reset();
    let o = overview(&env, NORTHWIND, None).await;
    assert_eq!(o.status, 200, "{}", o.body);
    assert_eq!((o.body["clientsRead"].as_u64(), o.body["truncated"].as_bool()), (Some(500), Some(true)));
    let calls = env.operations.operations();
    let queries = calls.iter().filter(|c| *c == "Query").count();
    assert_eq!(queries, 5 + 1, "5 pages of clients and the days: {calls:?}");
    assert!(calls.len() <= 7, "at most 7 DynamoDB calls: {calls:?}");
    let items = env.operations.items_read();
    assert!(items <= 5 * 101 + 100 + 31, "{items} items read");
}

#[test]
fn the_day_of_a_purchase_is_its_utc_date() {
    // 23:59:59.999 UTC on the 5th is the 5th, whatever the reader's zone.
    let late = at("2026-10-05", 0) + Duration::from_millis(86_399_999);
    assert_eq!(date_of(late), "2026-10-05");
    assert_eq!(date_of(UNIX_EPOCH), "1970-01-01");
}

/// The sample events answer what their names promise (`scripts/invoke-events.sh` sends them to `agency-read`).
#[tokio::test]
async fn the_sample_events_answer_as_named() {
    let env = TestEnv::seeded().await;
    for (file, status, code) in [
        ("agency-read-overview.json", 200, None),
        ("agency-read-overview-bad-input.json", 400, Some("invalid_query_parameter")),
        ("agency-read-overview-forbidden.json", 403, Some("forbidden")),
    ] {
        let request = testkit::request_from_event(&testkit::event_json(file));
        let a = answer(api::agency_read(&env.app, request).await);
        assert_eq!(a.status, status, "{file}: {}", a.body);
        assert_eq!(a.body["code"].as_str(), code, "{file}");
    }
}

/// The dev stack's seeds leave one client near its limit (with the declined statement, the overview has all three
/// lists to show): above 80%, once however often the loader runs.
#[tokio::test]
async fn the_dev_seeds_leave_a_client_above_eighty_percent_once() {
    let env = TestEnv::seeded().await;
    let now = SystemTime::now();
    let used = testkit::seed_loader::seed_near_limit(&env.app.store, BIKES, now).await.unwrap();
    assert!(used.is_some_and(|p| p > d("80") && p <= d("90")), "{used:?}");
    assert_eq!(
        testkit::seed_loader::seed_near_limit(&env.app.store, BIKES, now).await.unwrap(),
        None,
        "again: nothing"
    );
    let o = overview(&env, NORTHWIND, None).await;
    let near: Vec<&str> =
        o.body["nearLimit"].as_array().unwrap().iter().map(|c| c["accountId"].as_str().unwrap()).collect();
    assert_eq!(near, [BIKES]);
    assert_eq!(o.body["cycle"]["totals"]["purchases"], 1, "today's purchase is in the chart");
}
