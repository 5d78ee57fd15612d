//! Exactly-once purchases under conflicts, throttling, lost responses and an engine outage.
//! Faults are injected below the real SDK (testkit::faults); the engine is a real dynoxide server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::api::{self, Settings};
use shared::domain::CreditType;
use testkit::faults::Fault;
use testkit::{Answer, ApiEvent, COFFEE, TestEnv, answer};

async fn buy(app: &api::App, event: &ApiEvent) -> Answer {
    answer(api::purchase_credits(app, event.request()).await)
}

#[tokio::test]
async fn transaction_conflicts_are_retried_and_the_purchase_lands_once() {
    let env = TestEnv::seeded().await;
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 3);
    let a = buy(&env.app, &ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 4}}))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(env.faults.injected().len(), 3);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert_eq!(env.app.store.account(COFFEE).await.unwrap().unwrap().balances.get(CreditType::Audience), 4);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_the_purchase_lands_once() {
    let env = TestEnv::seeded().await;
    env.faults.inject("TransactWriteItems", Fault::Throttling, 2);
    env.faults.inject("GetItem", Fault::Throttling, 1);
    let a = buy(
        &env.app,
        &ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 7}})).header("Idempotency-Key", "throttled-click"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(env.faults.pending(), 0);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert!(env.drift(COFFEE).await.is_empty());
}

#[tokio::test]
async fn endless_conflicts_end_in_a_503_within_budget_and_write_nothing() {
    let env = TestEnv::seeded().await;
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 1000);
    let before = env.snapshot().await;
    let started = Instant::now();
    let a = buy(
        &env.app,
        &ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 1}})).header("Idempotency-Key", "busy"),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["code"], "service_unavailable");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(took < Settings::default().request_budget, "took {took:?}");
    let attempts = env.faults.injected().len();
    assert!((2..=10).contains(&attempts), "bounded retries, got {attempts}");
    assert_eq!(env.snapshot().await, before);
    println!("endless conflicts: {attempts} attempts, 503 after {took:?}");
}

#[tokio::test]
async fn a_lost_response_is_retried_by_the_sdk_with_the_same_token() {
    let env = TestEnv::seeded().await;
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 1);
    let a = buy(&env.app, &ApiEvent::purchase(COFFEE, &json!({"quantities": {"enrichment": 40}}))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert_eq!(env.app.store.account(COFFEE).await.unwrap().unwrap().balances.get(CreditType::Enrichment), 40);
}

#[tokio::test]
async fn a_response_lost_on_the_way_to_the_client_is_replayed_from_the_key() {
    let env = TestEnv::seeded().await;
    // Every SDK attempt commits (or finds its token committed) and loses its answer: the client sees a 503.
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 3);
    let event =
        ApiEvent::purchase(COFFEE, &json!({"quantities": {"custom_model": 2}})).header("Idempotency-Key", "lost-click");
    let first = buy(&env.app, &event).await;
    assert_eq!(first.status, 503, "{}", first.body);
    let records = env.app.store.all_purchases(COFFEE).await.unwrap();
    assert_eq!(records.len(), 1, "the write committed although the client saw a 503");

    let replay = buy(&env.app, &event).await;
    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body["purchase"]["purchaseId"], records[0].purchase_id);
    assert_eq!(replay.body["balances"]["custom_model"], 2);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_mid_burst_then_replays_end_with_one_purchase_per_key_and_no_drift() {
    let mut env = TestEnv::seeded().await;
    let accounts = ["acct-northwind-coffee", "acct-northwind-bikes", "acct-brightside-dental", "acct-plainsail-bakery"];
    let requests: Vec<(String, ApiEvent)> = (0..50u64)
        .map(|i| {
            let key = format!("burst-{i}");
            let account = accounts[i as usize % accounts.len()];
            let quantities = json!({"audience": 1 + i % 5, "pixel": i % 3});
            (
                key.clone(),
                ApiEvent::purchase(account, &json!({"quantities": quantities})).header("Idempotency-Key", &key),
            )
        })
        .collect();

    // The first half start 3 ms apart; the engine goes down once a handful have succeeded, with the rest of that
    // half in flight; the second half arrives during the outage. (The engine finishes requests it already took
    // while it stops: on a loaded machine the whole first half can land, so only the second half is sure to
    // meet the outage.)
    let succeeded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let spawn = |i: usize, event: &ApiEvent| {
        let app = env.app.clone();
        let request = event.request();
        let succeeded = succeeded.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3 * (i % 25) as u64)).await;
            let status = answer(api::purchase_credits(&app, request).await).status;
            if status == 201 {
                succeeded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            status
        })
    };
    let mut tasks: Vec<_> = requests.iter().take(25).enumerate().map(|(i, (_, event))| spawn(i, event)).collect();
    let waited = Instant::now();
    while succeeded.load(std::sync::atomic::Ordering::SeqCst) < 8 && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stopping = env.dynamo.stop();
    tasks.extend(requests.iter().enumerate().skip(25).map(|(i, (_, event))| spawn(i, event)));
    stopping.await;
    let mut first_statuses = Vec::new();
    for task in tasks {
        first_statuses.push(task.await.unwrap());
    }
    env.dynamo.restart().await;

    let first_ok = first_statuses.iter().filter(|s| **s == 201).count();
    assert!(first_statuses.iter().all(|s| *s == 201 || *s == 503), "only 201 or 503: {first_statuses:?}");
    assert!(first_ok > 0 && first_ok < requests.len(), "the outage must land mid-burst: {first_ok} succeeded first");

    // The client replays every request that did not get a 201, with the same key and body.
    let mut replays = 0;
    let mut answered_from_key = 0;
    for (i, (_, event)) in requests.iter().enumerate() {
        if first_statuses[i] == 201 {
            continue;
        }
        let mut status = 0;
        for _ in 0..5 {
            replays += 1;
            let a = buy(&env.app, event).await;
            status = a.status;
            if status == 201 {
                // The write had committed before the outage cut the answer off.
                answered_from_key += usize::from(a.header("idempotent-replayed") == Some("true"));
                break;
            }
        }
        assert_eq!(status, 201, "request {i} never succeeded after the engine came back");
    }

    // Every key ends with exactly one purchase, and every balance equals its records.
    let mut keys_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut purchases = 0;
    for account in accounts {
        for record in env.app.store.all_purchases(account).await.unwrap() {
            purchases += 1;
            *keys_seen.entry(record.idempotency_key.clone().expect("every burst purchase has a key")).or_default() += 1;
        }
    }
    let expected: BTreeSet<String> = requests.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys_seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(keys_seen.values().all(|n| *n == 1), "a key with more than one purchase: {keys_seen:?}");
    let mut drifted = Vec::new();
    for account in accounts {
        drifted.extend(env.drift(account).await);
    }
    assert!(drifted.is_empty(), "{drifted:?}");
    println!(
        "outage burst: {} requests, {} got 201 before the outage, {} replay calls ({} answered from a committed key), {} purchases, drift {}",
        requests.len(),
        first_ok,
        replays,
        answered_from_key,
        purchases,
        drifted.len()
    );
}

#[tokio::test]
async fn a_committed_purchase_is_a_201_even_if_the_balances_read_fails() {
    let env = TestEnv::seeded().await;
    let warm_up = ApiEvent::new("GET", "/accounts/{accountId}/pricing", COFFEE).as_account(COFFEE);
    assert_eq!(answer(api::get_pricing(&env.app, warm_up.request()).await).status, 200);
    // The write goes through; every attempt of the balances read after it is throttled.
    env.faults.inject("GetItem", Fault::Throttling, 3);
    let a = buy(
        &env.app,
        &ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}})).header("Idempotency-Key", "after-commit"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body.get("balances").is_none());
    assert_eq!(env.faults.pending(), 0);
    assert_eq!(env.app.store.all_purchases(COFFEE).await.unwrap().len(), 1);
    assert!(env.drift(COFFEE).await.is_empty());
}
