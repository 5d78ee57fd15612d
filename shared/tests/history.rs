//! The purchase history and statements routes against a real dynoxide server through the real SDK.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::api;
use shared::billing::{self, BillingRun};
use shared::domain::billing::CycleEnd;
use testkit::{
    Answer, ApiEvent, BIKES, COFFEE, DENTAL, PURCHASES_ROUTE, STATEMENTS_ROUTE, TestEnv, answer, assert_problem,
    event_json, request_from_event,
};

async fn buy(env: &TestEnv, account: &str, quantities: Value) -> Value {
    let event = ApiEvent::purchase(account, &json!({"quantities": quantities}));
    let a = answer(api::purchase_credits(&env.app, event.request()).await);
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["purchase"].clone()
}

async fn list(env: &TestEnv, account: &str, query: Option<&str>) -> Answer {
    let mut event = ApiEvent::new("GET", PURCHASES_ROUTE, account).as_account(account);
    if let Some(query) = query {
        event = event.query(query);
    }
    answer(api::list_purchases(&env.app, event.request()).await)
}

async fn statements(env: &TestEnv, account: &str) -> Answer {
    let event = ApiEvent::new("GET", STATEMENTS_ROUTE, account).as_account(account);
    answer(api::list_statements(&env.app, event.request()).await)
}

fn assert_no_costs(a: &Answer) {
    let text = a.body.to_string().to_lowercase();
    assert!(!text.contains("cost"), "a client response mentions costs: {text}");
}

/// Every page from the first, following `nextCursor`.
async fn all_pages(env: &TestEnv, account: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut query = format!("limit={limit}");
    loop {
        let a = list(env, account, Some(&query)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("content-type"), Some("application/json"));
        assert_no_costs(&a);
        pages.push(a.body["purchases"].as_array().unwrap().clone());
        match &a.body["nextCursor"] {
            Value::String(cursor) => query = format!("limit={limit}&cursor={cursor}"),
            Value::Null => return pages,
            other => panic!("nextCursor {other}"),
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

fn ids(purchases: &[Value]) -> Vec<String> {
    purchases.iter().map(|p| p["purchaseId"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn history_pages_newest_first_and_covers_every_purchase_once() {
    let env = TestEnv::seeded().await;
    let mut bought = Vec::new();
    for i in 0..45u64 {
        bought.push(buy(&env, COFFEE, json!({"audience": 1 + i % 3, "enrichment": i * 11})).await);
    }
    buy(&env, BIKES, json!({"pixel": 2})).await;
    let newest_first: Vec<String> = bought.iter().rev().map(|p| p["purchaseId"].as_str().unwrap().to_owned()).collect();

    for limit in [1, 7, 20, 44, 45, 100] {
        let pages = all_pages(&env, COFFEE, limit).await;
        assert!(pages.iter().all(|p| p.len() <= limit));
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == limit), "only the last page is short");
        let seen: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
        assert_eq!(seen, newest_first, "limit {limit}: every purchase once, newest first");
        // No empty last page: the next cursor is only given when more purchases follow.
        assert_eq!(pages.len(), 45usize.div_ceil(limit), "limit {limit}");
    }

    // Default page size, and the purchase's shape is the one the purchase answered with.
    let first = list(&env, COFFEE, None).await;
    assert_eq!(first.status, 200);
    let page = first.body["purchases"].as_array().unwrap();
    assert_eq!(page.len(), 20);
    assert!(first.body["nextCursor"].is_string());
    assert_eq!(page[0], *bought.last().unwrap());
    assert_eq!(page[0]["billedToClient"], false);

    // Another account sees only its own.
    let bikes = list(&env, BIKES, None).await;
    assert_eq!(bikes.body["purchases"].as_array().unwrap().len(), 1);
    assert_eq!(bikes.body["nextCursor"], Value::Null);
    let dental = list(&env, DENTAL, None).await;
    assert_eq!(dental.body, json!({"purchases": [], "nextCursor": null}));

    // After a billing run the history shows the purchases billed.
    let cycle = CycleEnd::at(SystemTime::now() + Duration::from_secs(3600));
    billing::run_billing(&env.app.store, &BillingRun::new(cycle)).await.unwrap();
    let billed = list(&env, COFFEE, Some("limit=100")).await;
    let billed = billed.body["purchases"].as_array().unwrap();
    assert_eq!(billed.len(), 45);
    assert!(billed.iter().all(|p| p["billedToClient"] == true && p["billedToAgency"] == true));
}

#[tokio::test]
async fn bad_limits_and_cursors_are_refused_before_any_read() {
    let env = TestEnv::seeded().await;
    for _ in 0..3 {
        buy(&env, COFFEE, json!({"audience": 1})).await;
    }
    buy(&env, BIKES, json!({"pixel": 1})).await;

    for limit in ["0", "101", "abc", "", "-1", "1.5", "%2B5", "1e2", "007x"] {
        let a = list(&env, COFFEE, Some(&format!("limit={limit}"))).await;
        assert_problem(&a, 400, "invalid_query_parameter");
        assert_eq!(a.body["parameter"], "limit", "{limit}");
    }

    let cursor_of = |a: &Answer| a.body["nextCursor"].as_str().unwrap().to_owned();
    let coffee_cursor = cursor_of(&list(&env, COFFEE, Some("limit=1")).await);
    buy(&env, BIKES, json!({"pixel": 1})).await;
    let bikes_cursor = cursor_of(&list(&env, BIKES, Some("limit=1")).await);
    assert_eq!(list(&env, COFFEE, Some(&format!("limit=1&cursor={coffee_cursor}"))).await.status, 200);

    // One character changed where the cursor encodes `{"pk":"ACCOUNT#`.
    let mut tampered = coffee_cursor.clone().into_bytes();
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = |json: &str| {
        let text = json.as_bytes();
        // base64url without padding, written out here so the test does not trust the code under test.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in text.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            }
        }
        out
    };
    let bad_cursors = [
        bikes_cursor.clone(),                                   // another account's position
        tampered,                                               // edited
        format!("{coffee_cursor}="),                            // padded
        coffee_cursor.replace('-', "+").replace('_', "/") + "", // standard alphabet (if it has those chars)
        "not-a-cursor".into(),
        "A".into(),
        "A".repeat(600),
        forged(r#"{"pk":"ACCOUNT#acct-northwind-bikes","sk":"PURCHASE#0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#),
        forged(r#"{"pk":"ACCOUNT#acct-northwind-coffee","sk":"ACCOUNT"}"#),
        forged(r#"{"pk":"ACCOUNT#acct-northwind-coffee","sk":"STATEMENT#2026-12-01T00:00:00.000Z"}"#),
        forged(r#"{"pk":"ACCOUNT#acct-northwind-coffee","sk":"PURCHASE#x"}"#),
        forged(r#"{"pk":"IDEMPOTENCY#k","sk":"IDEMPOTENCY"}"#),
        forged(r#"["ACCOUNT#acct-northwind-coffee"]"#),
    ];
    for cursor in bad_cursors.iter().filter(|c| **c != coffee_cursor) {
        let a = list(&env, COFFEE, Some(&format!("cursor={cursor}"))).await;
        assert_problem(&a, 400, "invalid_query_parameter");
        assert_eq!(a.body["parameter"], "cursor", "{cursor}");
        assert_no_costs(&a);
    }
    // A position in the caller's own history that no purchase has is still just a position.
    let own = forged(r#"{"pk":"ACCOUNT#acct-northwind-coffee","sk":"PURCHASE#00000000-0000-7000-8000-000000000000"}"#);
    let a = list(&env, COFFEE, Some(&format!("cursor={own}"))).await;
    assert_eq!(a.body, json!({"purchases": [], "nextCursor": null}));
}

#[tokio::test]
async fn history_and_statements_are_tenant_scoped_and_need_claims() {
    let env = TestEnv::seeded().await;
    type Handler = fn(
        &api::App,
        lambda_http::Request,
    ) -> std::pin::Pin<Box<dyn Future<Output = lambda_http::Response<lambda_http::Body>> + '_>>;
    let routes: [(&str, Handler); 2] = [
        (PURCHASES_ROUTE, |app, r| Box::pin(api::list_purchases(app, r))),
        (STATEMENTS_ROUTE, |app, r| Box::pin(api::list_statements(app, r))),
    ];
    for (route, handler) in routes {
        for (event, status, code) in [
            (ApiEvent::new("GET", route, COFFEE), 401, "unauthenticated"),
            (ApiEvent::new("GET", route, COFFEE).claims(json!({"sub": "x"})), 401, "unauthenticated"),
            (ApiEvent::new("GET", route, DENTAL).as_account(COFFEE), 403, "forbidden"),
            // Forbidden wins over bad input: nothing about another account is even validated.
            (ApiEvent::new("GET", route, DENTAL).as_account(COFFEE).query("limit=0"), 403, "forbidden"),
            (ApiEvent::new("GET", route, "acct-ghost").as_account("acct-ghost"), 404, "account_not_found"),
            (ApiEvent::new("GET", route, "a#b").as_account("a#b"), 400, "invalid_account_id"),
        ] {
            let a = answer(handler(&env.app, event.request()).await);
            assert_problem(&a, status, code);
        }
    }
}

#[tokio::test]
async fn statements_show_the_clients_own_at_price_newest_cycle_first() {
    let env = TestEnv::seeded().await;
    assert_eq!(statements(&env, COFFEE).await.body, json!({"statements": []}));

    let mut first_cycle = Vec::new();
    for quantities in
        [json!({"audience": 10, "pixel": 5}), json!({"enrichment": 333}), json!({"audience": 1, "custom_model": 1})]
    {
        first_cycle.push(buy(&env, COFFEE, quantities).await);
    }
    buy(&env, BIKES, json!({"pixel": 4})).await;
    let store = &env.app.store;
    let cycle_a = CycleEnd::at(SystemTime::now() + Duration::from_secs(3600));
    billing::run_billing(store, &BillingRun::new(cycle_a.clone())).await.unwrap();
    let later = buy(&env, COFFEE, json!({"pixel": 1})).await;
    let cycle_b = CycleEnd::at(SystemTime::now() + Duration::from_secs(7200));
    billing::run_billing(store, &BillingRun::new(cycle_b.clone())).await.unwrap();

    let a = statements(&env, COFFEE).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_no_costs(&a);
    let list = a.body["statements"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", a.body);
    assert_eq!(list[0]["cycleEnd"], cycle_b.as_str(), "newest cycle first");
    assert_eq!(list[1]["cycleEnd"], cycle_a.as_str());

    // 10 × 25.00 + 5 × 10.00 = 300.00; 333 × 0.75 = 249.75; 25.00 + 120.00 = 145.00 (Northwind's prices).
    let older = &list[1];
    let mut purchase_ids: Vec<String> =
        first_cycle.iter().map(|p| p["purchaseId"].as_str().unwrap().to_owned()).collect();
    purchase_ids.sort();
    assert_eq!(
        *older,
        json!({
            "statementId": older["statementId"],
            "cycleEnd": cycle_a.as_str(),
            "status": "pending_payment",
            "currency": "USD",
            "lines": [
                {"creditType": "audience", "quantity": 11, "amount": "275.00"},
                {"creditType": "enrichment", "quantity": 333, "amount": "249.75"},
                {"creditType": "pixel", "quantity": 5, "amount": "50.00"},
                {"creditType": "custom_model", "quantity": 1, "amount": "120.00"},
            ],
            "total": "694.75",
            "purchaseCount": 3,
            "purchaseIds": purchase_ids,
            "createdAt": older["createdAt"],
        })
    );
    assert!(older["statementId"].as_str().unwrap().starts_with("client-"));
    assert_eq!(list[0]["purchaseIds"], json!([later["purchaseId"]]));
    assert_eq!(list[0]["total"], "10.00");

    // The agency's statement exists, at cost, and is not in the client's answer.
    let agency = store.agency_statements("agency-northwind").await.unwrap();
    assert_eq!(agency.len(), 2);
    let text = a.body.to_string();
    for statement in &agency {
        assert!(!text.contains(&statement.statement_id), "an agency statement leaked: {text}");
        assert!(!text.contains(&format!("\"{}\"", statement.total)), "an at-cost total leaked: {text}");
    }

    // Another client of the same agency sees only its own statement.
    let bikes = statements(&env, BIKES).await;
    let bikes = bikes.body["statements"].as_array().unwrap();
    assert_eq!(bikes.len(), 1);
    assert_eq!(bikes[0]["total"], "40.00");
}

#[tokio::test]
async fn sample_events_answer_as_documented() {
    let env = TestEnv::seeded().await;
    buy(&env, COFFEE, json!({"audience": 1})).await;
    for (file, status) in [
        ("list-purchases.json", 200),
        ("list-purchases-bad-input.json", 400),
        ("list-purchases-forbidden.json", 403),
        ("list-statements.json", 200),
        ("list-statements-bad-input.json", 400),
        ("list-statements-forbidden.json", 403),
    ] {
        let request = request_from_event(&event_json(file));
        let response = if file.starts_with("list-purchases") {
            api::list_purchases(&env.app, request).await
        } else {
            api::list_statements(&env.app, request).await
        };
        let a = answer(response);
        assert_eq!(a.status, status, "{file}: {}", a.body);
    }
    let purchases = answer(api::list_purchases(&env.app, request_from_event(&event_json("list-purchases.json"))).await);
    assert_eq!(purchases.body["purchases"].as_array().unwrap().len(), 1);
    let accounts: BTreeSet<&str> =
        purchases.body["purchases"].as_array().unwrap().iter().map(|p| p["accountId"].as_str().unwrap()).collect();
    assert_eq!(accounts, BTreeSet::from([COFFEE]));
}
