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
    statements_page(env, account, None).await
}

async fn statements_page(env: &TestEnv, account: &str, query: Option<&str>) -> Answer {
    let mut event = ApiEvent::new("GET", STATEMENTS_ROUTE, account).as_account(account);
    if let Some(query) = query {
        event = event.query(query);
    }
    answer(api::list_statements(&env.app, event.request()).await)
}

const STATEMENT_PURCHASES_ROUTE: &str = "/accounts/{accountId}/statements/{statementId}/purchases";

/// `GET /accounts/{path_account}/statements/{statement_id}/purchases`, as API Gateway sends it.
fn statement_purchases_event(
    path_account: &str,
    statement_id: &str,
    claims: Option<&str>,
    query: Option<&str>,
) -> Value {
    let mut event = ApiEvent::new("GET", STATEMENT_PURCHASES_ROUTE, path_account);
    if let Some(account) = claims {
        event = event.as_account(account);
    }
    if let Some(query) = query {
        event = event.query(query);
    }
    let mut json = event.to_json();
    let path = format!("/accounts/{path_account}/statements/{statement_id}/purchases");
    json["rawPath"] = json!(path);
    json["requestContext"]["http"]["path"] = json!(path);
    json["pathParameters"]["statementId"] = json!(statement_id);
    json
}

async fn statement_purchases(env: &TestEnv, account: &str, statement_id: &str, query: Option<&str>) -> Answer {
    let event = statement_purchases_event(account, statement_id, Some(account), query);
    answer(api::list_statements(&env.app, request_from_event(&event)).await)
}

/// Every purchase id of a statement, page by page from the first, following `nextCursor`.
async fn all_statement_purchase_pages(
    env: &TestEnv,
    account: &str,
    statement_id: &str,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut query = format!("limit={limit}");
    loop {
        let a = statement_purchases(env, account, statement_id, Some(&query)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["statementId"], statement_id);
        assert_eq!(a.body.as_object().unwrap().len(), 3, "{}", a.body);
        let ids: Vec<String> =
            a.body["purchaseIds"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
        pages.push(ids);
        match &a.body["nextCursor"] {
            Value::String(cursor) => query = format!("limit={limit}&cursor={cursor}"),
            Value::Null => return pages,
            other => panic!("nextCursor {other}"),
        }
        assert!(pages.len() < 1000, "pagination does not end");
    }
}

/// Every statement, page by page from the first, following `nextCursor`.
async fn all_statement_pages(env: &TestEnv, account: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut query = format!("limit={limit}");
    loop {
        let a = statements_page(env, account, Some(&query)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_no_costs(&a);
        pages.push(a.body["statements"].as_array().unwrap().clone());
        match &a.body["nextCursor"] {
            Value::String(cursor) => query = format!("limit={limit}&cursor={cursor}"),
            Value::Null => return pages,
            other => panic!("nextCursor {other}"),
        }
        assert!(pages.len() < 1000, "pagination does not end");
    }
}

/// base64url without padding, written out here so the tests do not trust the code under test.
fn forged(json: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in json.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
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
    // Even a well-formed position in the caller's own history is refused unless the API issued it (signed).
    let own = forged(r#"{"pk":"ACCOUNT#acct-northwind-coffee","sk":"PURCHASE#00000000-0000-7000-8000-000000000000"}"#);
    env.operations.reset();
    let a = list(&env, COFFEE, Some(&format!("cursor={own}"))).await;
    assert_problem(&a, 400, "invalid_query_parameter");
    assert_eq!(env.operations.operations(), Vec::<String>::new(), "refused before any read");
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
    let id = |account: &str| format!("client-20261101T000000.000Z-{account}");
    for (event, status, code) in [
        (statement_purchases_event(COFFEE, &id(COFFEE), None, None), 401, "unauthenticated"),
        (statement_purchases_event(DENTAL, &id(DENTAL), Some(COFFEE), None), 403, "forbidden"),
        (statement_purchases_event(DENTAL, "nonsense", Some(COFFEE), Some("limit=0")), 403, "forbidden"),
        (
            statement_purchases_event("acct-ghost", &id("acct-ghost"), Some("acct-ghost"), None),
            404,
            "account_not_found",
        ),
        (statement_purchases_event("a#b", &id("a#b"), Some("a#b"), None), 400, "invalid_account_id"),
        (statement_purchases_event(COFFEE, &id(DENTAL), Some(COFFEE), None), 404, "statement_not_found"),
    ] {
        let a = answer(api::list_statements(&env.app, request_from_event(&event)).await);
        assert_problem(&a, status, code);
    }
}

#[tokio::test]
async fn statements_show_the_clients_own_at_price_newest_cycle_first() {
    let env = TestEnv::seeded().await;
    assert_eq!(statements(&env, COFFEE).await.body, json!({"statements": [], "nextCursor": null}));

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
            "amountPaid": "0.00",
            "amountDue": "694.75",
            "dueAt": older["dueAt"],
            "purchaseCount": 3,
            "createdAt": older["createdAt"],
            // Issue 24's settlement fields (additive): neither paid nor ever collected.
            "paidAt": null,
            "collection": null,
        })
    );
    assert_eq!(a.body["nextCursor"], Value::Null);
    // Due at the end of the 30th day after it became payable (today, or the cycle end if later), anywhere.
    let due = older["dueAt"].as_str().unwrap();
    let made_payable_today = shared::domain::billing::due_at(&cycle_a, SystemTime::now(), 30);
    assert!(due.ends_with("T12:00:00.000Z") && due <= made_payable_today.as_str(), "{due}");
    let older_id = older["statementId"].as_str().unwrap();
    assert_eq!(older_id, format!("client-{}-{COFFEE}", cycle_a.as_str().replace(['-', ':'], "")));
    // The purchase ids are served by the statement's own route.
    let ids = statement_purchases(&env, COFFEE, older_id, None).await;
    assert_eq!(ids.header("content-type"), Some("application/json"));
    assert_eq!(ids.body, json!({"statementId": older_id, "purchaseIds": purchase_ids, "nextCursor": null}));
    let newer = statement_purchases(&env, COFFEE, list[0]["statementId"].as_str().unwrap(), None).await;
    assert_eq!(newer.body["purchaseIds"], json!([later["purchaseId"]]));
    assert_eq!(list[0]["total"], "10.00");

    // The agency's statement exists, at cost, and is not in the client's answer.
    let agency = store.agency_statements("agency-northwind").await.unwrap();
    assert_eq!(agency.len(), 2);
    let text = a.body.to_string();
    for statement in &agency {
        assert!(!text.contains(&statement.statement_id), "an agency statement leaked: {text}");
        assert!(!text.contains(&format!("\"{}\"", statement.total)), "an at-cost total leaked: {text}");
        // Nor can its id be asked for: a client never sees an agency statement.
        assert_problem(
            &statement_purchases(&env, COFFEE, &statement.statement_id, None).await,
            404,
            "statement_not_found",
        );
    }

    // Another client of the same agency sees only its own statement.
    let bikes = statements(&env, BIKES).await;
    let bikes = bikes.body["statements"].as_array().unwrap();
    assert_eq!(bikes.len(), 1);
    assert_eq!(bikes[0]["total"], "40.00");
}

/// Statements of many cycles, several parts each (one per purchase), paged newest first without purchase ids.
#[tokio::test]
async fn statements_page_newest_first_without_purchase_ids() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let mut cycles = Vec::new();
    for cycle in 0..23u64 {
        for i in 0..=(cycle % 4) {
            buy(&env, COFFEE, json!({"audience": 1 + i})).await;
        }
        if cycle % 5 == 0 {
            buy(&env, BIKES, json!({"pixel": 1})).await;
        }
        let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(1 + cycle));
        // One purchase per step: a statement of n purchases has n parts between it and the next header.
        let run = BillingRun { purchases_per_transaction: 1, ..BillingRun::new(cycle_end.clone()) };
        billing::run_billing(store, &run).await.unwrap();
        cycles.push((cycle_end, cycle % 4 + 1));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let newest_first: Vec<String> = cycles.iter().rev().map(|(c, _)| c.as_str().to_owned()).collect();
    for limit in [1, 2, 5, 20, 22, 23, 100] {
        let pages = all_statement_pages(&env, COFFEE, limit).await;
        assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == limit), "only the last page is short");
        assert_eq!(pages.len(), 23usize.div_ceil(limit), "limit {limit}: no empty last page");
        let seen: Vec<String> = pages.iter().flatten().map(|s| s["cycleEnd"].as_str().unwrap().to_owned()).collect();
        assert_eq!(seen, newest_first, "limit {limit}: every statement once, newest first");
        for statement in pages.iter().flatten() {
            assert!(statement.get("purchaseIds").is_none(), "{statement}");
            let (_, count) = cycles.iter().find(|(c, _)| c.as_str() == statement["cycleEnd"]).unwrap();
            assert_eq!(statement["purchaseCount"], *count);
        }
    }
    let first = statements(&env, COFFEE).await;
    assert_eq!(first.body["statements"].as_array().unwrap().len(), 20, "default page size");
    assert!(first.body["nextCursor"].is_string());
    assert_eq!(all_statement_pages(&env, BIKES, 2).await.concat().len(), 5, "another account sees only its own");
}

/// A statement of 250 purchases in steps of 7 (36 parts, ids interleaved between parts), paged.
#[tokio::test]
async fn statement_purchases_page_through_every_id_once() {
    let env = TestEnv::seeded().await;
    let mut bought = BTreeSet::new();
    for i in 0..250u64 {
        let purchase = buy(&env, COFFEE, json!({"enrichment": 1 + i})).await;
        bought.insert(purchase["purchaseId"].as_str().unwrap().to_owned());
    }
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    let run = BillingRun { purchases_per_transaction: 7, ..BillingRun::new(cycle_end) };
    billing::run_billing(&env.app.store, &run).await.unwrap();
    let list = statements(&env, COFFEE).await;
    let statement_id = list.body["statements"][0]["statementId"].as_str().unwrap().to_owned();
    assert_eq!(list.body["statements"][0]["purchaseCount"], 250);

    let mut orders = Vec::new();
    for limit in [1, 6, 7, 20, 97, 98, 99, 100] {
        let pages = all_statement_purchase_pages(&env, COFFEE, &statement_id, limit).await;
        assert!(
            pages[..pages.len() - 1].iter().all(|p| p.len() == limit),
            "limit {limit}: only the last page is short"
        );
        assert_eq!(pages.len(), 250usize.div_ceil(limit), "limit {limit}: no empty last page");
        let seen: Vec<String> = pages.concat();
        assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), bought, "limit {limit}: every purchase");
        assert_eq!(seen.len(), 250, "limit {limit}: each once");
        orders.push(seen);
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order whatever the page size");
    let first = statement_purchases(&env, COFFEE, &statement_id, None).await;
    assert_eq!(first.body["purchaseIds"].as_array().unwrap().len(), 20, "default page size");
}

#[tokio::test]
async fn statement_reads_refuse_bad_ids_cursors_and_foreign_statements_before_any_read() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    for _ in 0..3 {
        buy(&env, COFFEE, json!({"audience": 1})).await;
    }
    buy(&env, BIKES, json!({"pixel": 1})).await;
    let first = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    billing::run_billing(store, &BillingRun { purchases_per_transaction: 1, ..BillingRun::new(first) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    buy(&env, COFFEE, json!({"audience": 1})).await;
    buy(&env, COFFEE, json!({"audience": 2})).await;
    let second = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    billing::run_billing(store, &BillingRun::new(second.clone())).await.unwrap();

    let listed = statements(&env, COFFEE).await;
    let coffee_ids: Vec<String> = listed.body["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["statementId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(coffee_ids.len(), 2);
    let (newer, older) = (coffee_ids[0].clone(), coffee_ids[1].clone());
    let bikes_id = statements(&env, BIKES).await.body["statements"][0]["statementId"].as_str().unwrap().to_owned();
    let agency_id = store.agency_statements("agency-northwind").await.unwrap()[0].statement_id.clone();
    let cursor_of = |a: &Answer| a.body["nextCursor"].as_str().unwrap().to_owned();
    let statements_cursor = cursor_of(&statements_page(&env, COFFEE, Some("limit=1")).await);
    let bikes_history_cursor = {
        buy(&env, BIKES, json!({"pixel": 1})).await;
        cursor_of(&list(&env, BIKES, Some("limit=1")).await)
    };
    let history_cursor = cursor_of(&list(&env, COFFEE, Some("limit=1")).await);
    let older_cursor = cursor_of(&statement_purchases(&env, COFFEE, &older, Some("limit=1")).await);
    let newer_cursor = cursor_of(&statement_purchases(&env, COFFEE, &newer, Some("limit=1")).await);
    assert_eq!(statement_purchases(&env, COFFEE, &older, Some(&format!("cursor={older_cursor}"))).await.status, 200);
    assert_eq!(statements_page(&env, COFFEE, Some(&format!("cursor={statements_cursor}"))).await.status, 200);
    assert_eq!(statement_purchases(&env, COFFEE, &newer, Some(&format!("cursor={newer_cursor}"))).await.status, 200);

    let before = env.snapshot().await;
    let refused = |a: &Answer, status: u16, code: &str| {
        assert_problem(a, status, code);
        assert_no_costs(a);
        let operations = env.operations.operations();
        assert!(operations.is_empty(), "{code}: read before refusing: {operations:?}");
    };

    // Statement ids: malformed → 400, never read.
    let cycle = newer.strip_prefix("client-").unwrap()[..20].to_owned();
    let long = format!("client-{cycle}-{}", "a".repeat(80));
    for bad in [
        "x".to_owned(),
        "client".into(),
        "client-".into(),
        format!("client-{cycle}"),
        format!("client-{cycle}-"),
        format!("CLIENT-{cycle}-{COFFEE}"),
        format!("client-{}-{COFFEE}", cycle.replace('T', "t")),
        format!("client-{}-{COFFEE}", cycle.replace(".", "")),
        format!("client-2026-11-01T00:00:00.000Z-{COFFEE}"),
        format!("client-{cycle}-acct#x"),
        format!("client-{cycle}_{COFFEE}"),
        format!("statement-{cycle}-{COFFEE}"),
        format!("client-{cycle}-{COFFEE}\u{e9}"),
        long,
        format!("{newer} "),
    ] {
        env.operations.reset();
        refused(&statement_purchases(&env, COFFEE, &bad, None).await, 400, "invalid_statement_id");
    }
    // Well-formed but not one of the caller's client statements → 404, also without a read. That includes an
    // instant that cannot exist: the contract's pattern describes the shape, so the shape decides 400.
    for foreign in [
        format!("client-20261301T000000.000Z-{COFFEE}"),
        bikes_id.clone(),
        agency_id.clone(),
        format!("agency-{cycle}-{COFFEE}"),
        format!("client-{cycle}-{COFFEE}-"), // another account's id form
    ] {
        env.operations.reset();
        refused(&statement_purchases(&env, COFFEE, &foreign, None).await, 404, "statement_not_found");
    }
    // The caller's own form, for a cycle that was never billed: read, then 404.
    let unknown = statement_purchases(&env, COFFEE, &format!("client-20261101T000000.000Z-{COFFEE}"), None).await;
    assert_problem(&unknown, 404, "statement_not_found");

    // Limits and cursors of the purchase ids route.
    let tampered = {
        let mut bytes = older_cursor.clone().into_bytes();
        bytes[4] = if bytes[4] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let part_of = |cycle_end: &str, first: &str, after: &str| {
        forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#{cycle_end}#PART#{first}","after":"{after}"}}"#))
    };
    let uuid = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for query in [
        "limit=0".to_owned(),
        "limit=101".into(),
        "limit=abc".into(),
        format!("cursor={older_cursor}"), // another statement's position
        format!("cursor={statements_cursor}"),
        format!("cursor={history_cursor}"),
        format!("cursor={tampered}"),
        format!("cursor={older_cursor}="),
        "cursor=A".into(),
        format!("cursor={}", "A".repeat(600)),
        format!("cursor={}", part_of(second.as_str(), uuid, "not-a-uuid")),
        format!("cursor={}", part_of(second.as_str(), &uuid.to_uppercase(), uuid)),
        format!("cursor={}", part_of("2026-11-01T00:00:00.000Z", uuid, uuid)),
        format!(
            "cursor={}",
            forged(&format!(r#"{{"pk":"ACCOUNT#{BIKES}","sk":"STATEMENT#{second}#PART#{uuid}","after":"{uuid}"}}"#))
        ),
        format!(
            "cursor={}",
            forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#{second}","after":"{uuid}"}}"#))
        ),
        format!(
            "cursor={}",
            forged(&format!(
                r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#{second}#PART#{uuid}","after":"{uuid}","x":1}}"#
            ))
        ),
    ] {
        env.operations.reset();
        let a = statement_purchases(&env, COFFEE, &newer, Some(&query)).await;
        refused(&a, 400, "invalid_query_parameter");
    }
    // Even a well-formed position in the caller's own statement is refused unless the API issued it (signed).
    let own = part_of(second.as_str(), "ffffffff-ffff-7fff-bfff-ffffffffffff", uuid);
    env.operations.reset();
    let a = statement_purchases(&env, COFFEE, &newer, Some(&format!("cursor={own}"))).await;
    refused(&a, 400, "invalid_query_parameter");

    // Limits and cursors of the statements route.
    let bikes_statements_cursor = forged(&format!(r#"{{"pk":"ACCOUNT#{BIKES}","sk":"STATEMENT#{second}"}}"#));
    for query in [
        "limit=0".to_owned(),
        "limit=1e2".into(),
        format!("cursor={bikes_statements_cursor}"),
        format!("cursor={history_cursor}"),
        format!("cursor={bikes_history_cursor}"),
        format!("cursor={older_cursor}"),
        format!("cursor={statements_cursor}="),
        format!("cursor={}", forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#{second}#PART#{uuid}"}}"#))),
        format!("cursor={}", forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#2026-11-01T00:00:00Z"}}"#))),
        format!("cursor={}", forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"STATEMENT#"}}"#))),
        format!("cursor={}", forged(&format!(r#"{{"pk":"AGENCY#agency-northwind","sk":"STATEMENT#{second}"}}"#))),
        format!("cursor={}", forged(&format!(r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"ACCOUNT"}}"#))),
    ] {
        env.operations.reset();
        refused(&statements_page(&env, COFFEE, Some(&query)).await, 400, "invalid_query_parameter");
    }
    assert_eq!(env.snapshot().await, before, "a refused request wrote something");
}

#[tokio::test]
async fn sample_events_answer_as_documented() {
    let env = TestEnv::seeded().await;
    buy(&env, COFFEE, json!({"audience": 1})).await;
    // The statement the sample billing run (cycle ending 2026-11-01) makes of an October purchase.
    let store = &env.app.store;
    let (default, agency) = store.pricing("agency-northwind").await.unwrap();
    let pricing = shared::domain::resolve_pricing("agency-northwind", &default, agency.as_ref()).unwrap();
    let quantities = shared::domain::Quantities::from_pairs([(shared::domain::CreditType::Pixel, 2)]);
    let october = humantime::parse_rfc3339("2026-10-15T09:30:00Z").unwrap();
    let purchase = shared::domain::PurchaseRecord::unbilled(
        uuid::Uuid::now_v7().to_string(),
        COFFEE,
        "agency-northwind",
        october,
        shared::domain::quote(&pricing, &quantities).unwrap(),
        None,
    );
    store.record_purchase(&purchase, &pricing, None).await.unwrap();
    billing::run_from_event(store, &Default::default(), &event_json("billing-run.json"), None, SystemTime::now())
        .await
        .unwrap();
    for (file, status) in [
        ("list-purchases.json", 200),
        ("list-purchases-bad-input.json", 400),
        ("list-purchases-forbidden.json", 403),
        ("list-statements.json", 200),
        ("list-statements-bad-input.json", 400),
        ("list-statements-forbidden.json", 403),
        ("list-statement-purchases.json", 200),
        ("list-statement-purchases-bad-input.json", 400),
        ("list-statement-purchases-forbidden.json", 403),
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
    assert_eq!(purchases.body["purchases"].as_array().unwrap().len(), 2);
    let accounts: BTreeSet<&str> =
        purchases.body["purchases"].as_array().unwrap().iter().map(|p| p["accountId"].as_str().unwrap()).collect();
    assert_eq!(accounts, BTreeSet::from([COFFEE]));
    let ids =
        answer(api::list_statements(&env.app, request_from_event(&event_json("list-statement-purchases.json"))).await);
    assert_eq!(ids.body["purchaseIds"], json!([purchase.purchase_id]));
}
