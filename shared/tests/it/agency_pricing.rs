//! The agency's prices, price history, clients and client credit limits against a real dynoxide server: the
//! views (prices, costs, margins, sources, unbilled sums), the audited changes (one audit entry per change, in
//! the change's own transaction), every refusal writing nothing, and a price change racing 32 purchases.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::api::agency::AgencyRoute;
use shared::api::{self, App};
use shared::billing::{self, BillingRun};
use shared::domain::PurchaseRecord;
use shared::domain::billing::CycleEnd;
use testkit::{Answer, ApiEvent, BALANCES_ROUTE, BIKES, COFFEE, DENTAL, TestEnv, answer, assert_problem, d};

const NORTHWIND: &str = "agency-northwind";
const BRIGHTSIDE: &str = "agency-brightside";
const PLAINSAIL: &str = "agency-plainsail";

const PRICING: &str = "/agencies/{agencyId}/pricing";
const HISTORY: &str = "/agencies/{agencyId}/pricing/history";
const CLIENTS: &str = "/agencies/{agencyId}/clients";
const CREDIT_LIMIT: &str = "/agencies/{agencyId}/clients/{accountId}/credit-limit";

async fn read(app: &App, route: AgencyRoute, path: &str, agency: &str, query: Option<&str>) -> Answer {
    let mut event = ApiEvent::agency("GET", path, agency).as_agency_admin(agency);
    if let Some(query) = query {
        event = event.query(query);
    }
    let a = answer(api::agency_read(app, event.request()).await);
    assert_eq!(AgencyRoute::of(&event.request()), Some(route));
    a
}

async fn get_pricing(app: &App, agency: &str) -> Answer {
    let a = read(app, AgencyRoute::GetPricing, PRICING, agency, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a
}

async fn history(app: &App, agency: &str, query: Option<&str>) -> Answer {
    read(app, AgencyRoute::PricingHistory, HISTORY, agency, query).await
}

async fn clients(app: &App, agency: &str, query: Option<&str>) -> Answer {
    read(app, AgencyRoute::ListClients, CLIENTS, agency, query).await
}

/// `PUT .../pricing` by `agency`'s administrator, with `If-Match` if given.
async fn put_pricing(app: &App, agency: &str, if_match: Option<&str>, body: &Value) -> Answer {
    put_pricing_raw(app, agency, if_match, &body.to_string(), Some("application/json")).await
}

async fn put_pricing_raw(
    app: &App,
    agency: &str,
    if_match: Option<&str>,
    body: &str,
    content_type: Option<&str>,
) -> Answer {
    let mut event = ApiEvent::agency("PUT", PRICING, agency).as_agency_admin(agency).raw_body(body);
    if let Some(value) = if_match {
        event = event.header("if-match", value);
    }
    if let Some(value) = content_type {
        event = event.header("content-type", value);
    }
    answer(api::agency_write(app, event.request()).await)
}

async fn put_limit(app: &App, agency: &str, account: &str, body: &Value) -> Answer {
    let event = ApiEvent::agency("PUT", CREDIT_LIMIT, agency)
        .path_parameter("accountId", account)
        .as_agency_admin(agency)
        .json(body);
    answer(api::agency_write(app, event.request()).await)
}

async fn buy(app: &App, account: &str, body: Value) -> Answer {
    answer(api::purchase_credits(app, ApiEvent::purchase(account, &body).request()).await)
}

fn version_of(a: &Answer) -> u64 {
    a.body["version"].as_u64().expect("a version")
}

/// The pricing body's rate of one type.
fn rate<'a>(body: &'a Value, credit_type: &str) -> &'a Value {
    body["rates"].as_array().unwrap().iter().find(|r| r["creditType"] == credit_type).expect("the type's rate")
}

/// `(creditType, price, priceSource, defaultPrice, cost, margin, marginPercent)` per type, in order.
fn rows(body: &Value) -> Vec<[String; 7]> {
    body["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            ["creditType", "price", "priceSource", "defaultPrice", "cost", "margin", "marginPercent"]
                .map(|k| r[k].as_str().unwrap_or("null").to_owned())
        })
        .collect()
}

fn row(t: &str, price: &str, source: &str, default: &str, cost: &str, margin: &str, pct: &str) -> [String; 7] {
    [t, price, source, default, cost, margin, pct].map(str::to_owned)
}

#[tokio::test]
async fn the_agency_sees_each_types_price_source_cost_and_margin_under_its_version() {
    let env = TestEnv::seeded().await;

    let northwind = get_pricing(&env.app, NORTHWIND).await;
    assert_eq!(northwind.body["agencyId"], NORTHWIND);
    assert_eq!(northwind.body["currency"], "USD");
    assert_eq!(
        rows(&northwind.body),
        vec![
            row("audience", "25.00", "agency", "30.00", "17.50", "7.50", "30.00"),
            row("enrichment", "0.75", "agency", "1.00", "0.40", "0.35", "46.67"),
            row("pixel", "10.00", "agency", "12.00", "6.00", "4.00", "40.00"),
            row("custom_model", "120.00", "agency", "150.00", "80.00", "40.00", "33.33"),
        ]
    );
    // The ETag is the version, quoted (strong), and never cached.
    assert_eq!(northwind.header("etag"), Some(format!("\"{}\"", version_of(&northwind)).as_str()));
    assert_eq!(northwind.header("cache-control"), Some("no-store"));

    let brightside = get_pricing(&env.app, BRIGHTSIDE).await;
    assert_eq!(
        rows(&brightside.body),
        vec![
            row("audience", "27.50", "agency", "30.00", "16.00", "11.50", "41.82"),
            row("enrichment", "0.4150", "agency", "1.00", "0.40", "0.0150", "3.61"),
            row("pixel", "12.00", "default", "12.00", "6.25", "5.75", "47.92"),
            row("custom_model", "135.00", "agency", "150.00", "80.00", "55.00", "40.74"),
        ]
    );
    assert_eq!(brightside.header("etag"), Some(format!("\"{}\"", version_of(&brightside)).as_str()));

    // Plainsail's seed entry sets no rate: everything is the default (its empty pricing item has a version).
    let plainsail = get_pricing(&env.app, PLAINSAIL).await;
    let all_default = vec![
        row("audience", "30.00", "default", "30.00", "18.00", "12.00", "40.00"),
        row("enrichment", "1.00", "default", "1.00", "0.40", "0.60", "60.00"),
        row("pixel", "12.00", "default", "12.00", "6.25", "5.75", "47.92"),
        row("custom_model", "150.00", "default", "150.00", "80.00", "70.00", "46.67"),
    ];
    assert_eq!(rows(&plainsail.body), all_default);
    assert_eq!(plainsail.header("etag"), Some(format!("\"{}\"", version_of(&plainsail)).as_str()));

    // An agency that never had a pricing item: version 0, all defaults; its first change creates the item.
    let fresh = get_pricing(&env.app, "agency-fresh").await;
    assert_eq!(version_of(&fresh), 0);
    assert_eq!(fresh.header("etag"), Some("\"0\""));
    assert_eq!(rows(&fresh.body), all_default);
    let first = put_pricing(&env.app, "agency-fresh", Some("\"0\""), &json!({"prices": {"pixel": "13.00"}})).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(version_of(&first), 1);
    assert_eq!(first.header("etag"), Some("\"1\""));
    assert_eq!(rate(&first.body, "pixel")["priceSource"], "agency");
}

#[tokio::test]
async fn a_price_change_bumps_the_version_and_writes_its_audit_entry() {
    let env = TestEnv::seeded().await;
    let before = get_pricing(&env.app, NORTHWIND).await;
    let v = version_of(&before);

    let a = put_pricing(&env.app, NORTHWIND, Some(&format!("\"{v}\"")), &json!({"prices": {"audience": "26"}})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(version_of(&a), v + 1);
    assert_eq!(a.header("etag"), Some(format!("\"{}\"", v + 1).as_str()));
    assert_eq!(rows(&a.body)[0], row("audience", "26.00", "agency", "30.00", "17.50", "8.50", "32.69"));
    assert_eq!(rows(&a.body)[1..], rows(&before.body)[1..], "the other types are untouched");
    assert_eq!(get_pricing(&env.app, NORTHWIND).await.body, a.body);

    // Back to the default (null) with a bare If-Match: the agency's own cost stays.
    let cleared =
        put_pricing(&env.app, NORTHWIND, Some(&format!("{}", v + 1)), &json!({"prices": {"pixel": null}})).await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(rows(&cleared.body)[2], row("pixel", "12.00", "default", "12.00", "6.00", "6.00", "50.00"));

    let h = history(&env.app, NORTHWIND, None).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.body["agencyId"], NORTHWIND);
    assert_eq!(h.body["nextCursor"], Value::Null);
    let entries = h.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", h.body);
    assert_eq!(entries[0]["changedBy"], "admin-of-agency-northwind");
    assert_eq!((entries[0]["versionBefore"].as_u64(), entries[0]["versionAfter"].as_u64()), (Some(v + 1), Some(v + 2)));
    assert_eq!(entries[0]["changes"], json!([{"creditType": "pixel", "oldPrice": "10.00", "newPrice": null}]));
    assert_eq!((entries[1]["versionBefore"].as_u64(), entries[1]["versionAfter"].as_u64()), (Some(v), Some(v + 1)));
    assert_eq!(entries[1]["changes"], json!([{"creditType": "audience", "oldPrice": "25.00", "newPrice": "26.00"}]));
    let changed_at = entries[1]["changedAt"].as_str().unwrap();
    assert!(changed_at.len() == 24 && changed_at.ends_with('Z'), "{changed_at}");

    // Clients buy at the new price at once.
    let bought = buy(&env.app, COFFEE, json!({"quantities": {"audience": 1, "pixel": 1}})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    assert_eq!(bought.body["purchase"]["total"], "38.00");
}

#[tokio::test]
async fn a_refused_price_change_writes_nothing() {
    let env = TestEnv::seeded().await;
    let v = version_of(&get_pricing(&env.app, NORTHWIND).await);
    let current = format!("\"{v}\"");
    let stale = format!("\"{}\"", v - 1);
    let ok = json!({"prices": {"audience": "26.00"}});
    let before = env.snapshot().await;

    let cases: Vec<(&str, Option<&str>, Value, u16, &str)> = vec![
        ("no If-Match", None, ok.clone(), 428, "precondition_required"),
        ("If-Match *", Some("*"), ok.clone(), 428, "precondition_required"),
        ("a stale version", Some(&stale), ok.clone(), 412, "precondition_failed"),
        ("a version that never was", Some("\"9999999999999999999\""), ok.clone(), 412, "precondition_failed"),
        // Outside the contract's If-Match pattern (^("[0-9]{1,19}"|[0-9]{1,19})$): not a stale tag, no tag at all.
        ("a weak ETag", Some("W/\"1\""), ok.clone(), 400, "invalid_header"),
        ("letters", Some("\"abc\""), ok.clone(), 400, "invalid_header"),
        ("two tags", Some("\"1\", \"2\""), ok.clone(), 400, "invalid_header"),
        ("twenty digits", Some("99999999999999999999"), ok.clone(), 400, "invalid_header"),
        ("half quoted", Some("\"1"), ok.clone(), 400, "invalid_header"),
        ("empty quotes", Some("\"\""), ok.clone(), 400, "invalid_header"),
        ("below cost", Some(&current), json!({"prices": {"audience": "17.49"}}), 422, "price_below_cost"),
        (
            "default below the agency's cost",
            Some(&current),
            json!({"prices": {"custom_model": "79.99"}}),
            422,
            "price_below_cost",
        ),
        ("five places", Some(&current), json!({"prices": {"enrichment": "0.41001"}}), 422, "invalid_price"),
        ("above the cap", Some(&current), json!({"prices": {"audience": "1000000.01"}}), 422, "invalid_price"),
        ("negative", Some(&current), json!({"prices": {"audience": "-26.00"}}), 422, "invalid_price"),
        ("minus zero", Some(&current), json!({"prices": {"audience": "-0"}}), 422, "invalid_price"),
        ("not a decimal", Some(&current), json!({"prices": {"audience": "26,00"}}), 422, "invalid_price"),
        ("an unknown type", Some(&current), json!({"prices": {"gold": "1.00"}}), 400, "invalid_field"),
        (
            "an unknown field",
            Some(&current),
            json!({"prices": {"audience": "26.00"}, "costs": {}}),
            400,
            "invalid_field",
        ),
        (
            "a cost",
            Some(&current),
            json!({"prices": {"audience": {"price": "26.00", "cost": "1.00"}}}),
            400,
            "invalid_field",
        ),
        ("a number", Some(&current), json!({"prices": {"audience": 26}}), 400, "invalid_field"),
        ("nothing to change", Some(&current), json!({"prices": {}}), 400, "invalid_field"),
        ("no prices", Some(&current), json!({}), 400, "invalid_field"),
    ];
    for (what, if_match, body, status, code) in cases {
        let a = put_pricing(&env.app, NORTHWIND, if_match, &body).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_problem(&a, status, code);
        assert_eq!(env.snapshot().await, before, "{what} wrote something");
        match code {
            "precondition_failed" => {
                assert_eq!(a.body["currentPricing"]["version"].as_u64(), Some(v), "{what}");
                assert_eq!(a.body["currentPricing"], get_pricing(&env.app, NORTHWIND).await.body, "{what}");
            }
            "price_below_cost" if what == "below cost" => {
                assert_eq!(
                    (&a.body["creditType"], &a.body["price"], &a.body["cost"]),
                    (&json!("audience"), &json!("17.49"), &json!("17.50"))
                );
            }
            "invalid_price" => {
                let named = body["prices"].as_object().and_then(|p| p.keys().next().cloned());
                assert_eq!(a.body["creditType"].as_str(), named.as_deref(), "{what}");
            }
            "invalid_field" => assert!(a.body["field"].is_string(), "{what}: {}", a.body),
            "invalid_header" => assert_eq!(a.body["header"], "If-Match", "{what}"),
            _ => {}
        }
    }
    for (what, body, content_type, status, code) in [
        ("malformed JSON", "{\"prices\":", Some("application/json"), 400, "malformed_json"),
        (
            "a duplicate key",
            "{\"prices\":{\"audience\":\"26.00\",\"audience\":\"1.00\"}}",
            Some("application/json"),
            400,
            "duplicate_field",
        ),
        ("no content type", "{\"prices\":{\"audience\":\"26.00\"}}", None, 415, "unsupported_media_type"),
    ] {
        let a = put_pricing_raw(&env.app, NORTHWIND, Some(&current), body, content_type).await;
        assert_problem(&a, status, code);
        assert_eq!(env.snapshot().await, before, "{what} wrote something");
    }

    // Asking for the prices already set changes nothing: 200, the same version, no audit entry.
    let same =
        put_pricing(&env.app, NORTHWIND, Some(&current), &json!({"prices": {"audience": "25", "pixel": "10.0000"}}))
            .await;
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(version_of(&same), v);
    assert_eq!(same.header("etag"), Some(current.as_str()));
    assert_eq!(env.snapshot().await, before, "a no-op PUT wrote something");
    assert_eq!(history(&env.app, NORTHWIND, None).await.body["entries"], json!([]));
}

#[tokio::test]
async fn the_audit_trail_has_one_entry_per_change_newest_first_and_pages() {
    let env = TestEnv::seeded().await;
    let mut v = version_of(&get_pricing(&env.app, NORTHWIND).await);
    let prices = ["26.00", "27.00", "28.00", "28.00", "29.00"]; // the fourth is a no-op
    for price in prices {
        let a =
            put_pricing(&env.app, NORTHWIND, Some(&format!("\"{v}\"")), &json!({"prices": {"audience": price}})).await;
        assert_eq!(a.status, 200, "{}", a.body);
        v = version_of(&a);
    }
    let all = history(&env.app, NORTHWIND, None).await;
    let entries = all.body["entries"].as_array().unwrap();
    let new_prices: Vec<&str> = entries.iter().map(|e| e["changes"][0]["newPrice"].as_str().unwrap()).collect();
    assert_eq!(new_prices, ["29.00", "28.00", "27.00", "26.00"], "one entry per change, newest first");
    let afters: Vec<u64> = entries.iter().map(|e| e["versionAfter"].as_u64().unwrap()).collect();
    assert_eq!(afters, [v, v - 1, v - 2, v - 3]);

    // Pages of two, then the rest.
    let first = history(&env.app, NORTHWIND, Some("limit=2")).await;
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 2);
    let cursor = first.body["nextCursor"].as_str().expect("more follow").to_owned();
    let second = history(&env.app, NORTHWIND, Some(&format!("limit=2&cursor={cursor}"))).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        [&first.body["entries"].as_array().unwrap()[..], &second.body["entries"].as_array().unwrap()[..]].concat(),
        *entries
    );
    assert_eq!(second.body["nextCursor"], Value::Null);
    // Another agency's cursor, a bad limit: 400 before any read.
    let theirs = history(&env.app, BRIGHTSIDE, Some(&format!("cursor={cursor}"))).await;
    assert_problem(&theirs, 400, "invalid_query_parameter");
    for bad in ["limit=0", "limit=101", "cursor=abc", "cursor=%%%"] {
        assert_problem(&history(&env.app, NORTHWIND, Some(bad)).await, 400, "invalid_query_parameter");
    }

    // Eight administrators change prices against the same version at once: one wins, seven see 412.
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..8 {
        let app = env.app.clone();
        let if_match = format!("\"{v}\"");
        racing.spawn(async move {
            put_pricing(&app, NORTHWIND, Some(&if_match), &json!({"prices": {"pixel": format!("11.0{i}")}})).await
        });
    }
    let mut statuses = Vec::new();
    while let Some(a) = racing.join_next().await {
        let a = a.unwrap();
        if a.status == 412 {
            assert_problem(&a, 412, "precondition_failed");
            assert_eq!(a.body["currentPricing"]["version"].as_u64(), Some(v + 1));
        }
        statuses.push(a.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
    let after = history(&env.app, NORTHWIND, None).await;
    assert_eq!(after.body["entries"].as_array().unwrap().len(), entries.len() + 1, "exactly one new entry");
    assert_eq!(after.body["entries"][0]["versionAfter"].as_u64(), Some(v + 1));
}

/// The unit prices of a purchase record's lines, by type.
fn unit_prices(record: &PurchaseRecord) -> Vec<(String, String)> {
    record.lines.iter().map(|l| (l.credit_type.as_str().to_owned(), l.unit_price.to_string())).collect()
}

/// Which of two price lists every line of `record` was charged at: never a mix.
fn charged_at(record: &PurchaseRecord, old: &[(&str, &str)], new: &[(&str, &str)]) -> &'static str {
    let prices = unit_prices(record);
    let is = |list: &[(&str, &str)]| {
        prices.len() == list.len() && prices.iter().all(|(t, p)| list.iter().any(|(lt, lp)| lt == t && d(lp) == d(p)))
    };
    match (is(old), is(new)) {
        (true, false) => "old",
        (false, true) => "new",
        _ => {
            panic!("purchase {} charged at {prices:?}: neither all old {old:?} nor all new {new:?}", record.purchase_id)
        }
    }
}

async fn purchases_of(env: &TestEnv) -> Vec<PurchaseRecord> {
    let mut all = env.app.store.all_purchases(COFFEE).await.unwrap();
    all.extend(env.app.store.all_purchases(BIKES).await.unwrap());
    all
}

/// How one racing purchase stood to the price change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Started while the change had not been answered yet: before it or in flight with it.
    Racing,
    /// Started once the change had been answered: decided after it, whatever its instance has cached.
    AfterChange,
}

/// Runs `count` purchases of one audience and two pixel credits (alternating Northwind's two clients) against a
/// change of both prices to `new` by Northwind's administrator. The first three quarters start 40 ms apart and
/// the change is sent once a quarter have been answered, so some are decided before it and some race it; the
/// last quarter start once it has been answered. The administrator runs on an instance of its own (as
/// `agency-write` does), so the purchases' instance keeps its cached prices and learns of the change only from
/// its transaction's version check. Returns each purchase's start and answer, in order.
async fn race(env: &TestEnv, count: usize, expected_total: Option<&str>, new: (&str, &str)) -> Vec<(Start, Answer)> {
    let admin_app = App::new(env.app.store.clone(), env.app.settings.clone());
    let v = version_of(&get_pricing(&admin_app, NORTHWIND).await);
    warm_up(env, count).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let (changed, _) = tokio::sync::watch::channel(false);
    let mut purchases = tokio::task::JoinSet::new();
    for i in 0..count {
        let (app, answered, mut changed) = (env.app.clone(), answered.clone(), changed.subscribe());
        let mut body = json!({"quantities": {"audience": 1, "pixel": 2}});
        if let Some(total) = expected_total {
            body["expectedTotal"] = json!(total);
        }
        let start = if i < count * 3 / 4 { Start::Racing } else { Start::AfterChange };
        purchases.spawn(async move {
            match start {
                Start::Racing => tokio::time::sleep(Duration::from_millis(40 * i as u64)).await,
                Start::AfterChange => drop(changed.wait_for(|c| *c).await.expect("the change is answered")),
            }
            let a = buy(&app, if i % 2 == 0 { COFFEE } else { BIKES }, body).await;
            answered.fetch_add(1, Ordering::SeqCst);
            (i, start, a)
        });
    }
    let change = json!({"prices": {"audience": new.0, "pixel": new.1}});
    while answered.load(Ordering::SeqCst) < count / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let put = put_pricing(&admin_app, NORTHWIND, Some(&format!("\"{v}\"")), &change).await;
    assert_eq!(put.status, 200, "{}", put.body);
    changed.send_replace(true);
    let mut answers = Vec::new();
    while let Some(joined) = purchases.join_next().await {
        answers.push(joined.unwrap());
    }
    answers.sort_by_key(|(i, _, _)| *i);
    answers.into_iter().map(|(_, start, a)| (start, a)).collect()
}

/// Opens as many connections as the race will use and caches the clients' agency and prices, so the race
/// measures purchases, not connection set-up.
async fn warm_up(env: &TestEnv, count: usize) {
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..count {
        let app = env.app.clone();
        reads.spawn(async move {
            let account = if i % 2 == 0 { COFFEE } else { BIKES };
            let event = ApiEvent::new("GET", testkit::PRICING_ROUTE, account).as_account(account);
            assert_eq!(answer(api::get_pricing(&app, event.request()).await).status, 200);
        });
    }
    while let Some(done) = reads.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_price_change_racing_32_purchases_charges_each_wholly_at_the_old_or_the_new_price() {
    let env = TestEnv::seeded().await;
    assert!(purchases_of(&env).await.is_empty());
    let credits = |env: &TestEnv| {
        let store = env.app.store.clone();
        async move {
            let mut sum = (0, 0);
            for account in [COFFEE, BIKES] {
                let a = store.account(account).await.unwrap().unwrap();
                sum.0 += a.balances.get(shared::domain::CreditType::Audience);
                sum.1 += a.balances.get(shared::domain::CreditType::Pixel);
            }
            sum
        }
    };

    // Round 1: every purchase confirms the total at the old prices (1 × 25.00 + 2 × 10.00 = 45.00).
    let old = [("audience", "25.00"), ("pixel", "10.00")];
    let new = [("audience", "26.00"), ("pixel", "11.00")];
    let answers = race(&env, 32, Some("45.00"), ("26.00", "11.00")).await;
    let (mut created, mut refused, mut refused_racing) = (0, 0, 0);
    for (start, a) in &answers {
        match a.status {
            // Committed with the old total: its transaction saw the old version, so it came before the change.
            201 => {
                assert_eq!(*start, Start::Racing, "a purchase started after the change was charged the old total");
                assert_eq!(a.body["purchase"]["total"], "45.00", "{}", a.body);
                created += 1;
            }
            409 => {
                assert_problem(a, 409, "price_changed");
                assert_eq!(a.body["total"], "48.00", "the 409 shows the new total: {}", a.body);
                assert_eq!(a.body["expectedTotal"], "45.00");
                refused += 1;
                refused_racing += usize::from(*start == Start::Racing);
            }
            other => panic!("a racing purchase answered {other}: {}", a.body),
        }
    }
    let records = purchases_of(&env).await;
    assert_eq!(records.len(), created, "every 201 is one record, every 409 wrote none");
    let (mut at_old, mut at_new) = (0, 0);
    for record in &records {
        match charged_at(record, &old, &new) {
            "old" => at_old += 1,
            _ => at_new += 1,
        }
    }
    assert_eq!((at_old, at_new), (created, 0), "the old expectedTotal is never charged at the new price");
    assert!(refused >= 8, "the 8 purchases started after the change are all refused");
    assert_eq!(credits(&env).await, (created as u64, 2 * created as u64), "credits only for committed purchases");
    println!(
        "price change racing 32 purchases, all with the old expectedTotal: committed at the old price {at_old}, \
         committed at the new price {at_new}, refused 409 price_changed {refused} ({refused_racing} of the 24 \
         started before the change was answered, 8 of the 8 started after)"
    );

    // Round 2: the same race without expectedTotal: each purchase is charged wholly at one price or the other.
    let newer = [("audience", "27.00"), ("pixel", "12.00")];
    let answers = race(&env, 32, None, ("27.00", "12.00")).await;
    for (start, a) in &answers {
        assert_eq!(a.status, 201, "{}", a.body);
        let total = a.body["purchase"]["total"].as_str().unwrap();
        match start {
            Start::Racing => assert!(total == "48.00" || total == "51.00", "{total}"),
            Start::AfterChange => assert_eq!(total, "51.00", "started after the change: the new prices"),
        }
    }
    let records = purchases_of(&env).await;
    assert_eq!(records.len(), created + 32);
    let (mut round2_old, mut round2_new) = (0, 0);
    for record in records.iter().filter(|r| !charged_at_is(r, &old)) {
        let (counter, total) = match charged_at(record, &new, &newer) {
            "old" => (&mut round2_old, "48.00"),
            _ => (&mut round2_new, "51.00"),
        };
        *counter += 1;
        assert_eq!(record.total, d(total));
    }
    assert_eq!(round2_old + round2_new, 32);
    assert_eq!(credits(&env).await, (created as u64 + 32, 2 * (created as u64 + 32)));
    println!(
        "price change racing 32 purchases without expectedTotal: committed at the old price {round2_old}, \
         committed at the new price {round2_new} (8 of them started after the change), refused 0"
    );
    assert!(env.drift(COFFEE).await.is_empty() && env.drift(BIKES).await.is_empty());
}

fn charged_at_is(record: &PurchaseRecord, list: &[(&str, &str)]) -> bool {
    let prices = unit_prices(record);
    prices.iter().all(|(t, p)| list.iter().any(|(lt, lp)| lt == t && d(lp) == d(p)))
}

/// A client of the clients page, by account id.
fn client<'a>(body: &'a Value, account: &str) -> &'a Value {
    body["clients"].as_array().unwrap().iter().find(|c| c["accountId"] == account).expect("the client is listed")
}

#[tokio::test]
async fn the_clients_page_shows_balances_lines_and_what_each_owes_this_cycle() {
    let env = TestEnv::seeded().await;
    let empty = clients(&env.app, NORTHWIND, None).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    let ids: Vec<&str> =
        empty.body["clients"].as_array().unwrap().iter().map(|c| c["accountId"].as_str().unwrap()).collect();
    assert_eq!(ids, [BIKES, COFFEE], "Northwind's two clients by account id, not Brightside's");
    assert_eq!(client(&empty.body, COFFEE)["name"], "Harbor Coffee Roasters");
    assert_eq!(
        client(&empty.body, COFFEE)["unbilled"],
        json!({"purchases": 0, "atPrice": "0.00", "atCost": "0.00", "margin": "0.00"})
    );
    assert_eq!(empty.body["nextCursor"], Value::Null);

    // Coffee: 2 audience (50.00 at price, 35.00 at cost). Bikes: 3 pixel + 10 enrichment (37.50, 22.00).
    assert_eq!(buy(&env.app, COFFEE, json!({"quantities": {"audience": 2}})).await.status, 201);
    assert_eq!(buy(&env.app, BIKES, json!({"quantities": {"pixel": 3, "enrichment": 10}})).await.status, 201);
    let page = clients(&env.app, NORTHWIND, None).await;
    assert_eq!(page.body["agencyId"], NORTHWIND);
    assert_eq!(page.body["currency"], "USD");
    let coffee = client(&page.body, COFFEE);
    assert_eq!(coffee["balances"], json!({"audience": 2, "enrichment": 0, "pixel": 0, "custom_model": 0}));
    assert_eq!(coffee["creditLine"], json!({"limit": "25000.00", "outstanding": "50.00", "available": "24950.00"}));
    assert_eq!(coffee["holdStatementId"], Value::Null);
    assert_eq!(coffee["unbilled"], json!({"purchases": 1, "atPrice": "50.00", "atCost": "35.00", "margin": "15.00"}));
    let bikes = client(&page.body, BIKES);
    assert_eq!(bikes["balances"], json!({"audience": 0, "enrichment": 10, "pixel": 3, "custom_model": 0}));
    assert_eq!(bikes["creditLine"], json!({"limit": "15000.00", "outstanding": "37.50", "available": "14962.50"}));
    assert_eq!(bikes["unbilled"], json!({"purchases": 1, "atPrice": "37.50", "atCost": "22.00", "margin": "15.50"}));
    assert_eq!(
        page.body["agencyCreditLine"],
        json!({"limit": "500000.00", "outstanding": "57.00", "available": "499943.00"})
    );
    assert_eq!(buy(&env.app, COFFEE, json!({"quantities": {"custom_model": 1}})).await.status, 201);
    let page = clients(&env.app, NORTHWIND, None).await;
    assert_eq!(
        client(&page.body, COFFEE)["unbilled"],
        json!({"purchases": 2, "atPrice": "170.00", "atCost": "115.00", "margin": "55.00"})
    );

    // The billing run bills them: nothing is unbilled any more, while the lines still carry what is owed.
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    billing::run_billing(&env.app.store, &BillingRun::new(cycle_end)).await.unwrap();
    let billed = clients(&env.app, NORTHWIND, None).await;
    for account in [COFFEE, BIKES] {
        let c = client(&billed.body, account);
        assert_eq!(c["unbilled"], json!({"purchases": 0, "atPrice": "0.00", "atCost": "0.00", "margin": "0.00"}));
    }
    assert_eq!(client(&billed.body, COFFEE)["creditLine"]["outstanding"], "170.00");

    // Brightside sees only its own client; Plainsail's agency has no line of its own.
    let brightside = clients(&env.app, BRIGHTSIDE, None).await;
    let ids: Vec<&str> =
        brightside.body["clients"].as_array().unwrap().iter().map(|c| c["accountId"].as_str().unwrap()).collect();
    assert_eq!(ids, [DENTAL]);

    // Pages of one: both clients, once each; a cursor moves only within its own agency's clients.
    let first = clients(&env.app, NORTHWIND, Some("limit=1")).await;
    assert_eq!(first.body["clients"].as_array().unwrap().len(), 1);
    let cursor = first.body["nextCursor"].as_str().expect("a second page").to_owned();
    let second = clients(&env.app, NORTHWIND, Some(&format!("limit=1&cursor={cursor}"))).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.body["clients"][0]["accountId"], BIKES);
    assert_eq!(second.body["clients"][0]["accountId"], COFFEE);
    assert_eq!(second.body["nextCursor"], Value::Null);
    let before = env.snapshot().await;
    assert_problem(
        &clients(&env.app, BRIGHTSIDE, Some(&format!("cursor={cursor}"))).await,
        400,
        "invalid_query_parameter",
    );
    for bad in ["limit=0", "limit=x", "cursor=Zm9v", "limit=1&limit=2"] {
        assert_problem(&clients(&env.app, NORTHWIND, Some(bad)).await, 400, "invalid_query_parameter");
    }
    assert_eq!(env.snapshot().await, before);
}

/// The limit audit entries in the agency's partition.
async fn limit_audit(env: &TestEnv, agency: &str) -> Vec<Value> {
    let items = env
        .client
        .query()
        .table_name(&env.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("AGENCY#{agency}")))
        .expression_attribute_values(":prefix", AttributeValue::S("AUDIT#LIMIT#".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    items
        .iter()
        .map(|item| {
            let text = |name: &str| match item.get(name) {
                Some(AttributeValue::S(s)) => json!(s),
                _ => Value::Null,
            };
            json!({"accountId": text("accountId"), "changedBy": text("changedBy"), "oldLimit": text("oldLimit"), "newLimit": text("newLimit"), "changedAt": text("changedAt")})
        })
        .collect()
}

async fn client_line(env: &TestEnv, account: &str) -> Value {
    let event = ApiEvent::new("GET", BALANCES_ROUTE, account).as_account(account);
    answer(api::get_balances(&env.app, event.request()).await).body["creditLine"].clone()
}

#[tokio::test]
async fn an_agency_sets_its_clients_limit_with_an_audit_entry_and_nobody_elses() {
    let env = TestEnv::seeded().await;
    let a = put_limit(&env.app, NORTHWIND, COFFEE, &json!({"creditLimit": "20000"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"accountId": COFFEE, "creditLine": {"limit": "20000.00", "outstanding": "0.00", "available": "20000.00"}})
    );
    assert_eq!(client_line(&env, COFFEE).await, a.body["creditLine"]);
    let audit = limit_audit(&env, NORTHWIND).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["accountId"], COFFEE);
    assert_eq!(audit[0]["changedBy"], "admin-of-agency-northwind");
    assert_eq!(
        (d(audit[0]["oldLimit"].as_str().unwrap()), d(audit[0]["newLimit"].as_str().unwrap())),
        (d("25000"), d("20000"))
    );
    assert!(audit[0]["changedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let listed = clients(&env.app, NORTHWIND, None).await;
    assert_eq!(client(&listed.body, COFFEE)["creditLine"]["limit"], "20000.00");

    // The same limit again: 200, nothing written.
    let before = env.snapshot().await;
    let same = put_limit(&env.app, NORTHWIND, COFFEE, &json!({"creditLimit": "20000.00"})).await;
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(env.snapshot().await, before);

    // Another agency's client and an unknown account look the same; bad limits and bodies are refused; none writes.
    let refusals: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("Brightside's client", DENTAL, json!({"creditLimit": "1.00"}), 404, "client_not_found"),
        ("an unknown account", "acct-nobody", json!({"creditLimit": "1.00"}), 404, "client_not_found"),
        ("a malformed account id", "acct nobody!", json!({"creditLimit": "1.00"}), 400, "invalid_account_id"),
        ("negative", COFFEE, json!({"creditLimit": "-1.00"}), 422, "invalid_credit_limit"),
        ("three places", COFFEE, json!({"creditLimit": "1.001"}), 422, "invalid_credit_limit"),
        ("above the maximum", COFFEE, json!({"creditLimit": "10000000000000.01"}), 422, "invalid_credit_limit"),
        ("not a decimal", COFFEE, json!({"creditLimit": "lots"}), 422, "invalid_credit_limit"),
        ("a number", COFFEE, json!({"creditLimit": 100}), 400, "invalid_field"),
        ("no limit", COFFEE, json!({}), 400, "invalid_field"),
        ("an unknown field", COFFEE, json!({"creditLimit": "1.00", "available": "1.00"}), 400, "invalid_field"),
    ];
    for (what, account, body, status, code) in refusals {
        let a = put_limit(&env.app, NORTHWIND, account, &body).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_problem(&a, status, code);
        assert_eq!(env.snapshot().await, before, "{what} wrote something");
    }

    // Lowered below what is owed: nothing is available (shown as 0.00) and purchases are refused until paid.
    let bought = buy(&env.app, BIKES, json!({"quantities": {"audience": 4}})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    let lowered = put_limit(&env.app, NORTHWIND, BIKES, &json!({"creditLimit": "50.00"})).await;
    assert_eq!(lowered.status, 200, "{}", lowered.body);
    assert_eq!(lowered.body["creditLine"], json!({"limit": "50.00", "outstanding": "100.00", "available": "0.00"}));
    assert_eq!(client_line(&env, BIKES).await, lowered.body["creditLine"]);
    let stored = env.app.store.account(BIKES).await.unwrap().unwrap().credit_line.unwrap();
    assert_eq!(stored.available, d("-50.00"), "the line keeps what is owed: available is below zero");
    assert_problem(&buy(&env.app, BIKES, json!({"quantities": {"pixel": 1}})).await, 402, "credit_limit_exceeded");
    assert_eq!(limit_audit(&env, NORTHWIND).await.len(), 2);
    assert!(limit_audit(&env, BRIGHTSIDE).await.is_empty());
}

#[tokio::test]
async fn the_sample_events_answer_as_their_names_say_and_change_nothing() {
    let env = TestEnv::seeded().await;
    let before = env.snapshot().await;
    let mut checked = 0;
    for kind in ["pricing", "pricing-history", "clients", "credit-limit"] {
        for function in ["agency-read", "agency-write"] {
            for (suffix, status) in [("", 200), ("-bad-input", 400), ("-forbidden", 403)] {
                let file = format!("{function}-{kind}{suffix}.json");
                if !testkit::repo_root().join("events").join(&file).exists() {
                    continue;
                }
                let request = testkit::request_from_event(&testkit::event_json(&file));
                let response = match function {
                    "agency-read" => api::agency_read(&env.app, request).await,
                    _ => api::agency_write(&env.app, request).await,
                };
                let a = answer(response);
                assert_eq!(a.status, status, "{file}: {}", a.body);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 15, "three events per route");
    // The valid changes set what the seeds set: a fresh stack is left as it was.
    assert_eq!(env.snapshot().await, before);
}

/// Issue 22.2: after a client moves to another agency, each agency sees only what was bought under it: the new
/// agency's clients page never shows the old agency's cost or margin, the old agency keeps listing and may still
/// void its own unbilled purchases of the client, and billing takes each agency's figures out of its own sums.
#[tokio::test]
async fn a_moved_client_shows_each_agency_only_its_own_unbilled_sums() {
    let env = TestEnv::seeded().await;
    // Under Northwind: 1 audience at 25.00 (cost 17.50).
    let bought = buy(&env.app, COFFEE, json!({"quantities": {"audience": 1}})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    let old_purchase = bought.body["purchase"]["purchaseId"].as_str().unwrap().to_owned();
    env.load_seed_json(&json!({"accounts": [{"accountId": COFFEE, "agencyId": BRIGHTSIDE}]})).await.unwrap();

    let zero = json!({"purchases": 0, "atPrice": "0.00", "atCost": "0.00", "margin": "0.00"});
    let page = clients(&env.app, BRIGHTSIDE, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(client(&page.body, COFFEE)["unbilled"], zero, "none of Northwind's figures");
    let northwind = clients(&env.app, NORTHWIND, None).await;
    assert!(northwind.body["clients"].as_array().unwrap().iter().all(|c| c["accountId"] != COFFEE), "it left");

    // Under Brightside, at Brightside's prices: only that purchase counts for Brightside.
    let under_new = buy(&env.app, COFFEE, json!({"quantities": {"pixel": 1}})).await;
    assert_eq!(under_new.status, 201, "{}", under_new.body);
    let purchase = env
        .app
        .store
        .purchase(COFFEE, under_new.body["purchase"]["purchaseId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(purchase.agency_id, BRIGHTSIDE);
    let page = clients(&env.app, BRIGHTSIDE, None).await;
    let expected = json!({
        "purchases": 1,
        "atPrice": purchase.total.to_string(),
        "atCost": purchase.total_at_cost.to_string(),
        "margin": (purchase.total - purchase.total_at_cost).to_string(),
    });
    assert_eq!(client(&page.body, COFFEE)["unbilled"], expected);

    // The old agency may still void what it sold; Brightside's figures do not move.
    let void = ApiEvent::agency("POST", "/agencies/{agencyId}/purchases/{purchaseId}/void", NORTHWIND)
        .path_parameter("purchaseId", &old_purchase)
        .as_agency_admin(NORTHWIND)
        .json(&json!({"accountId": COFFEE}));
    let voided = answer(api::agency_write(&env.app, void.request()).await);
    assert_eq!(voided.status, 200, "{}", voided.body);
    assert_eq!(client(&clients(&env.app, BRIGHTSIDE, None).await.body, COFFEE)["unbilled"], expected);

    // Billing empties Brightside's sums; Brightside never saw Northwind's.
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    billing::run_billing(&env.app.store, &BillingRun::new(cycle_end)).await.unwrap();
    assert_eq!(client(&clients(&env.app, BRIGHTSIDE, None).await.body, COFFEE)["unbilled"], zero);
}

/// The running sums equal the purchases still unbilled after purchases, a void and a billing run that bills
/// purchases of two agencies on one client statement (a client moved mid-cycle).
#[tokio::test]
async fn running_unbilled_sums_follow_purchases_voids_and_billing() {
    let env = TestEnv::seeded().await;
    for quantities in [json!({"audience": 1}), json!({"pixel": 2}), json!({"enrichment": 3})] {
        assert_eq!(buy(&env.app, BIKES, json!({ "quantities": quantities })).await.status, 201);
    }
    let page = clients(&env.app, NORTHWIND, None).await;
    let records = purchases_of(&env).await;
    let bikes: Vec<&PurchaseRecord> = records.iter().filter(|p| p.account_id == BIKES).collect();
    assert_eq!(bikes.len(), 3);
    let price: rust_decimal::Decimal = bikes.iter().map(|p| p.total).sum();
    let cost: rust_decimal::Decimal = bikes.iter().map(|p| p.total_at_cost).sum();
    assert_eq!(
        client(&page.body, BIKES)["unbilled"],
        json!({"purchases": 3, "atPrice": price.to_string(), "atCost": cost.to_string(), "margin": (price - cost).to_string()})
    );
    // Move mid-cycle, buy under the new agency, then bill the one client statement with both agencies' purchases.
    env.load_seed_json(&json!({"accounts": [{"accountId": BIKES, "agencyId": BRIGHTSIDE}]})).await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"quantities": {"pixel": 1}})).await.status, 201);
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    billing::run_billing(&env.app.store, &BillingRun::new(cycle_end)).await.unwrap();
    let item = env
        .client
        .get_item()
        .table_name(&env.table)
        .key("pk", AttributeValue::S(format!("ACCOUNT#{BIKES}")))
        .key("sk", AttributeValue::S("ACCOUNT".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    for agency in [NORTHWIND, BRIGHTSIDE] {
        for attribute in ["unbilledCount", "unbilledAtPrice", "unbilledAtCost"] {
            let value = item.get(&format!("{attribute}#{agency}")).and_then(|v| v.as_n().ok()).unwrap();
            assert_eq!(d(value), d("0"), "{attribute}#{agency} after billing");
        }
    }
}
