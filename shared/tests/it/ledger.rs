//! The credit ledger against a real dynoxide: consumptions never take a balance below zero, exactly once per
//! consumption id, releases once, every balance change an entry, and the ledger route's balances after each.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};
use shared::api;
use shared::consumption::{ConsumptionAnswer, ConsumptionError, consumption_event};
use shared::domain::CreditType;
use shared::domain::ledger::EntryType;
use shared::storage::Store;
use testkit::faults::Fault;
use testkit::{ApiEvent, BIKES, COFFEE, DENTAL, TestEnv, answer, assert_problem};

const LEDGER_ROUTE: &str = "/accounts/{accountId}/ledger";

async fn buy(env: &TestEnv, quantities: Value) {
    buy_for(env, COFFEE, quantities).await;
}

async fn buy_for(env: &TestEnv, account: &str, quantities: Value) {
    let event = ApiEvent::purchase(account, &json!({ "quantities": quantities })).header("Prefer", "return=minimal");
    let a = answer(api::purchase_credits(&env.app, event.request()).await);
    assert_eq!(a.status, 201, "{}", a.body);
}

fn consume(id: &str, quantities: Value) -> Value {
    json!({"accountId": COFFEE, "consumptionId": id, "quantities": quantities, "reason": "audience build", "reference": "job/7"})
}

fn release(id: &str) -> Value {
    json!({"accountId": COFFEE, "release": id, "reason": "job failed"})
}

/// The balance as stored, signed (a negative one would show as such).
async fn raw_balance(store: &Store, credit_type: CreditType) -> i64 {
    let attribute = shared::storage::keys::balance_attribute(credit_type);
    let item = store
        .client()
        .get_item()
        .table_name(store.table_name())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{COFFEE}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the account");
    match item.get(attribute) {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.parse().expect("a whole number"),
        _ => 0,
    }
}

/// Every ledger entry of the account, newest first, with the balances after each, through the store's pages.
async fn all_entries(
    store: &Store,
    only: Option<EntryType>,
) -> Vec<(shared::domain::ledger::LedgerEntry, std::collections::BTreeMap<CreditType, i64>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.ledger_page(COFFEE, 7, after.as_ref(), only).await.unwrap().expect("the account");
        out.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// Starts a task that reads the balance until told to stop, and records the lowest value it saw.
fn watch_balance(store: Store, credit_type: CreditType) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(i64, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut lowest = i64::MAX;
        let mut reads = 0;
        while !flag.load(Ordering::Relaxed) {
            lowest = lowest.min(raw_balance(&store, credit_type).await);
            reads += 1;
        }
        (lowest, reads)
    });
    (stop, task)
}

#[tokio::test]
async fn sixty_four_concurrent_consumptions_of_one_credit_against_forty() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 40})).await;
    let (stop, watcher) = watch_balance(Store::new(env.client.clone(), env.table.clone()), CreditType::Audience);

    let mut tasks = Vec::new();
    for i in 0..64 {
        let consumer = env.consumer.clone();
        tasks.push(tokio::spawn(async move {
            let result = consumption_event(&consumer, &consume(&format!("race-{i}"), json!({"audience": 1}))).await;
            // A read in the middle of the race, right after this consumption's answer.
            (result, raw_balance(&consumer.store, CreditType::Audience).await)
        }));
    }
    let (mut consumed, mut short) = (0, 0);
    let mut lowest_after = i64::MAX;
    for task in tasks {
        let (result, seen) = task.await.unwrap();
        lowest_after = lowest_after.min(seen);
        match result {
            Ok(ConsumptionAnswer::Consumed { replayed: false, .. }) => consumed += 1,
            Err(ConsumptionError::InsufficientCredits(s)) => {
                assert_eq!(s[0].credit_type, CreditType::Audience);
                assert_eq!((s[0].balance, s[0].requested, s[0].short), (0, 1, 1));
                short += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (lowest, reads) = watcher.await.unwrap();
    let lowest = lowest.min(lowest_after);
    println!(
        "64 concurrent consumptions of 1 against 40: {consumed} consumed, {short} refused; {} balance reads during \
         the race, lowest {lowest}",
        reads + 64
    );
    assert_eq!((consumed, short), (40, 24));
    assert!(lowest >= 0, "a balance read saw {lowest}");
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 0);
    let consumptions = all_entries(&env.app.store, Some(EntryType::Consumption)).await;
    assert_eq!(consumptions.len(), 40);
    assert!(consumptions.iter().all(|(e, _)| e.quantities[&CreditType::Audience] == -1));
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
    // The operator's full scan counts the consumptions too: balance = Σ entries, nothing negative.
    let mut scanned = shared::domain::reconcile::Ledger::default();
    env.app.store.read_ledger(&mut scanned, 2).await.unwrap();
    assert_eq!(scanned.entries_read, 41);
    assert_eq!(scanned.drift(), vec![]);
}

#[tokio::test]
async fn purchases_and_consumptions_racing_on_one_account_stay_exact() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"pixel": 5})).await;
    let (stop, watcher) = watch_balance(Store::new(env.client.clone(), env.table.clone()), CreditType::Pixel);
    let consumed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = env.app.clone();
        tasks.push(tokio::spawn(async move {
            // As the dashboard does: a key per purchase, and a 503 (a timeout on a loaded machine) is retried
            // with the same key, which never buys twice (the entry count below proves it).
            let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 2}}))
                .header("Prefer", "return=minimal")
                .header("Idempotency-Key", &format!("racing-purchase-{i}"));
            let mut a = answer(api::purchase_credits(&app, event.request()).await);
            for _ in 0..4 {
                if a.status != 503 {
                    break;
                }
                a = answer(api::purchase_credits(&app, event.request()).await);
            }
            assert_eq!(a.status, 201, "{}", a.body);
        }));
    }
    for i in 0..60 {
        let consumer = env.consumer.clone();
        let consumed = consumed.clone();
        tasks.push(tokio::spawn(async move {
            let store = &consumer.store;
            match consumption_event(&consumer, &consume(&format!("mix-{i}"), json!({"pixel": 1}))).await {
                Ok(_) => {
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
                Err(ConsumptionError::InsufficientCredits(_)) => {}
                Err(other) => panic!("{other}"),
            }
            let seen = raw_balance(store, CreditType::Pixel).await;
            assert!(seen >= 0, "a balance read saw {seen}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (lowest, reads) = watcher.await.unwrap();
    let consumed = consumed.load(Ordering::Relaxed) as i64;
    println!(
        "racing: 21 purchases (45 pixel), {consumed} of 60 consumptions succeeded; {} balance reads, lowest {lowest}",
        reads + 60
    );
    assert!(lowest >= 0, "a balance read saw {lowest}");
    let balance = raw_balance(&env.app.store, CreditType::Pixel).await;
    assert_eq!(balance, 45 - consumed);
    let entries = all_entries(&env.app.store, None).await;
    assert_eq!(entries.len() as i64, 21 + consumed);
    let sum: i64 = entries.iter().map(|(e, _)| e.quantities.get(&CreditType::Pixel).copied().unwrap_or(0)).sum();
    assert_eq!(sum, balance, "balance = the sum of the entries");
    assert_eq!(entries[0].1[&CreditType::Pixel], balance, "the newest entry's balance after is the balance");
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_consumption_replayed_after_its_response_was_lost_is_applied_once() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"enrichment": 10})).await;
    // Every attempt, the SDK's and ours, commits (or finds its token committed) and loses its answer.
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 100);
    let request = consume("lost-1", json!({"enrichment": 3}));
    let first = consumption_event(&env.consumer, &request).await;
    let error = first.expect_err("the caller never got an answer");
    assert_eq!(error.error_type(), "StorageUnavailable", "{error}");
    env.faults.clear();

    let replay = consumption_event(&env.consumer, &request).await.unwrap();
    let ConsumptionAnswer::Consumed { replayed, receipt } = replay else { panic!("{replay:?}") };
    assert!(replayed);
    assert_eq!(receipt.quantities[&CreditType::Enrichment], 3);
    assert_eq!(raw_balance(&env.app.store, CreditType::Enrichment).await, 7, "applied once");
    assert_eq!(all_entries(&env.app.store, Some(EntryType::Consumption)).await.len(), 1);

    // One lost response inside a call: the resend with the same token settles it, once.
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 1);
    let answer = consumption_event(&env.consumer, &consume("lost-2", json!({"enrichment": 2}))).await.unwrap();
    assert!(matches!(answer, ConsumptionAnswer::Consumed { replayed: false, .. }), "{answer:?}");
    assert_eq!(raw_balance(&env.app.store, CreditType::Enrichment).await, 5);
    assert_eq!(all_entries(&env.app.store, Some(EntryType::Consumption)).await.len(), 2);
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_release_after_the_credits_were_spent_elsewhere_is_applied_once() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 10})).await;
    consumption_event(&env.consumer, &consume("job-1", json!({"audience": 6}))).await.unwrap();
    consumption_event(&env.consumer, &consume("job-2", json!({"audience": 4}))).await.unwrap();
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 0);

    // Two releases of job-1 at once: one puts the 6 back, the other answers with that release.
    let (first, second) = (release("job-1"), release("job-1"));
    let (a, b) = tokio::join!(consumption_event(&env.consumer, &first), consumption_event(&env.consumer, &second));
    let replays: Vec<bool> = [a.unwrap(), b.unwrap()]
        .into_iter()
        .map(|r| match r {
            ConsumptionAnswer::Released { replayed, receipt } => {
                assert_eq!(receipt.quantities[&CreditType::Audience], 6);
                replayed
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(replays.iter().filter(|r| !**r).count(), 1, "{replays:?}");
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 6);

    // Released before: replayed, nothing more back. The consumption itself replays too, never re-applied.
    let again = consumption_event(&env.consumer, &release("job-1")).await.unwrap();
    assert!(matches!(again, ConsumptionAnswer::Released { replayed: true, .. }));
    let consumption = consumption_event(&env.consumer, &consume("job-1", json!({"audience": 6}))).await.unwrap();
    let ConsumptionAnswer::Consumed { replayed: true, receipt } = consumption else { panic!("{consumption:?}") };
    assert!(receipt.released_at.is_some());
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 6);
    assert_eq!(all_entries(&env.app.store, Some(EntryType::Release)).await.len(), 1);
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());

    let unknown = consumption_event(&env.consumer, &release("never-made")).await.unwrap_err();
    assert_eq!(unknown.error_type(), "ConsumptionNotFound");
}

#[tokio::test]
async fn refusals_write_nothing_and_say_why() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 2, "pixel": 1})).await;
    let before = env.snapshot().await;

    let short = consumption_event(&env.consumer, &consume("big", json!({"audience": 5, "pixel": 1, "enrichment": 2})))
        .await
        .unwrap_err();
    assert_eq!(short.error_type(), "InsufficientCredits");
    assert_eq!(
        short.to_string(),
        "not enough credits: audience short by 3 (balance 2, requested 5); enrichment short by 2 (balance 0, requested 2)"
    );
    let diagnostic: lambda_http::lambda_runtime::Diagnostic = short.into();
    assert_eq!(diagnostic.error_type, "InsufficientCredits");
    assert_eq!(env.snapshot().await, before, "a refused consumption writes nothing");

    let missing =
        json!({"accountId": "acct-nobody", "consumptionId": "c", "quantities": {"audience": 1}, "reason": "r"});
    assert_eq!(consumption_event(&env.consumer, &missing).await.unwrap_err().error_type(), "AccountNotFound");
    let invalid = consumption_event(&env.consumer, &json!({"accountId": COFFEE})).await.unwrap_err();
    assert_eq!(invalid.error_type(), "InvalidConsumptionEvent");
    assert_eq!(env.snapshot().await, before);

    consumption_event(&env.consumer, &consume("once", json!({"audience": 1}))).await.unwrap();
    let reused = consumption_event(&env.consumer, &consume("once", json!({"audience": 2}))).await.unwrap_err();
    assert_eq!(reused.error_type(), "ConsumptionIdReused");
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 1);
}

fn ledger_event(account: &str, query: &str) -> ApiEvent {
    ApiEvent::new("GET", LEDGER_ROUTE, account).as_account(COFFEE).query(query)
}

async fn ledger(env: &TestEnv, account: &str, query: &str) -> testkit::Answer {
    answer(api::list_purchases_or_ledger(&env.app, ledger_event(account, query).request()).await)
}

#[tokio::test]
async fn the_ledger_route_lists_entries_newest_first_with_the_balance_after_each() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 10, "pixel": 2})).await;
    consumption_event(&env.consumer, &consume("j1", json!({"audience": 3}))).await.unwrap();
    consumption_event(&env.consumer, &consume("j2", json!({"audience": 4, "pixel": 1}))).await.unwrap();
    consumption_event(&env.consumer, &release("j1")).await.unwrap();

    let all = ledger(&env, COFFEE, "").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let entries = all.body["entries"].as_array().unwrap();
    let types: Vec<&str> = entries.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["release", "consumption", "consumption", "purchase"]);
    let audience: Vec<i64> = entries.iter().map(|e| e["balancesAfter"]["audience"].as_i64().unwrap()).collect();
    assert_eq!(audience, [6, 3, 7, 10]);
    let pixel: Vec<i64> = entries.iter().map(|e| e["balancesAfter"]["pixel"].as_i64().unwrap()).collect();
    assert_eq!(pixel, [1, 1, 2, 2]);
    assert_eq!(entries[1]["quantities"], json!({"audience": -4, "pixel": -1}));
    assert_eq!(entries[0]["consumptionId"], "j1");
    assert_eq!(entries[1]["reason"], "audience build");
    assert!(entries[3]["purchaseId"].is_string());
    assert!(all.body["nextCursor"].is_null());

    // Page by page with limit=1: the same entries and balances; a consumption landing meanwhile changes nothing
    // on the pages after the first.
    let mut paged = Vec::new();
    let mut query = "limit=1".to_owned();
    loop {
        let page = ledger(&env, COFFEE, &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        paged.extend(page.body["entries"].as_array().unwrap().iter().cloned());
        if paged.len() == 1 {
            consumption_event(&env.consumer, &consume("j3", json!({"audience": 1}))).await.unwrap();
        }
        match page.body["nextCursor"].as_str() {
            Some(cursor) => query = format!("limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(&paged, entries);

    let consumptions = ledger(&env, COFFEE, "type=consumption").await;
    let ids: BTreeSet<&str> =
        consumptions.body["entries"].as_array().unwrap().iter().map(|e| e["consumptionId"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from(["j1", "j2", "j3"]));
    assert_eq!(consumptions.body["entries"][0]["balancesAfter"]["audience"], 5);

    assert_problem(&ledger(&env, COFFEE, "type=gift").await, 400, "invalid_query_parameter");
    assert_problem(&ledger(&env, COFFEE, "limit=0").await, 400, "invalid_query_parameter");
    assert_problem(&ledger(&env, COFFEE, "cursor=bm90LWEtY3Vyc29y").await, 400, "invalid_query_parameter");
    assert_problem(&ledger(&env, DENTAL, "").await, 403, "forbidden");
    // The purchase history is still served by the same function.
    let purchases = answer(
        api::list_purchases_or_ledger(
            &env.app,
            ApiEvent::new("GET", testkit::PURCHASES_ROUTE, COFFEE).as_account(COFFEE).request(),
        )
        .await,
    );
    assert_eq!(purchases.status, 200);
    assert_eq!(purchases.body["purchases"].as_array().unwrap().len(), 1);
}

/// base64url without padding, the encoding of every cursor.
fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text).expect("base64url")
}

/// Issue 22, item 3: a cursor's contents are not trusted. The reproduction (a position later than every entry
/// whose balance is i64::MIN) panicked the debug build with a subtract overflow and wrapped in release.
#[tokio::test]
async fn forged_or_tampered_ledger_cursors_are_400_before_any_read_and_never_panic() {
    let env = TestEnv::seeded().await;
    // Distinct milliseconds, so "newest first" has one answer.
    let tick = || tokio::time::sleep(std::time::Duration::from_millis(3));
    buy(&env, json!({"audience": 10})).await;
    tick().await;
    consumption_event(&env.consumer, &consume("j1", json!({"audience": 3}))).await.unwrap();
    tick().await;
    buy(&env, json!({"audience": 2})).await;

    let forged = b64(format!(
        r#"{{"pk":"ACCOUNT#{COFFEE}","sk":"LEDGER#2099-12-31T23:59:59.999Z#ffffffff-ffff-7fff-bfff-ffffffffffff","balances":{{"audience":-9223372036854775808}}}}"#
    )
    .as_bytes());
    env.operations.reset();
    let a = ledger(&env, COFFEE, &format!("cursor={forged}")).await;
    assert_problem(&a, 400, "invalid_query_parameter");
    assert_eq!(a.body["parameter"], "cursor");
    assert_eq!(env.operations.operations(), Vec::<String>::new(), "refused before any read");

    // A genuine cursor still pages, exactly.
    let first = ledger(&env, COFFEE, "limit=1").await;
    let cursor = first.body["nextCursor"].as_str().expect("more follow").to_owned();
    let second = ledger(&env, COFFEE, &format!("limit=1&cursor={cursor}")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["entries"][0]["type"], "consumption");
    assert_eq!(second.body["entries"][0]["balancesAfter"]["audience"], 7);

    // The same cursor with its balances edited (whatever precedes the position is kept as it was): refused.
    let bytes = unb64(&cursor);
    let start = bytes.windows(6).position(|w| w == br#"{"pk":"#).expect("the position's JSON");
    let (prefix, position) = bytes.split_at(start);
    let edited = String::from_utf8(position.to_vec()).unwrap().replace(r#""audience":7"#, r#""audience":7000"#);
    assert_ne!(edited.as_bytes(), position, "the balances are in the cursor");
    let tampered = b64(&[prefix, edited.as_bytes()].concat());
    env.operations.reset();
    assert_problem(&ledger(&env, COFFEE, &format!("cursor={tampered}")).await, 400, "invalid_query_parameter");
    assert_eq!(env.operations.operations(), Vec::<String>::new(), "refused before any read");
    // And with one bit of what precedes it (the signature) flipped.
    let mut flipped = bytes.clone();
    flipped[0] ^= 1;
    assert_problem(&ledger(&env, COFFEE, &format!("cursor={}", b64(&flipped))).await, 400, "invalid_query_parameter");

    // Another account's ledger cursor, and the purchase history's cursor, are refused here.
    buy_for(&env, BIKES, json!({"pixel": 1})).await;
    buy_for(&env, BIKES, json!({"pixel": 1})).await;
    let bikes = answer(
        api::list_purchases_or_ledger(
            &env.app,
            ApiEvent::new("GET", LEDGER_ROUTE, BIKES).as_account(BIKES).query("limit=1").request(),
        )
        .await,
    );
    let bikes_cursor = bikes.body["nextCursor"].as_str().expect("Bikes has a second entry").to_owned();
    assert_problem(&ledger(&env, COFFEE, &format!("cursor={bikes_cursor}")).await, 400, "invalid_query_parameter");
    let history = answer(
        api::list_purchases_or_ledger(
            &env.app,
            ApiEvent::new("GET", testkit::PURCHASES_ROUTE, COFFEE).as_account(COFFEE).query("limit=1").request(),
        )
        .await,
    );
    let history_cursor = history.body["nextCursor"].as_str().expect("a second purchase").to_owned();
    assert_problem(&ledger(&env, COFFEE, &format!("cursor={history_cursor}")).await, 400, "invalid_query_parameter");
}

/// Even a position signed with the functions' own key (a leaked key, a bug) cannot make the arithmetic wrap or
/// panic: the balances are checked, and an impossible one is the cursor's fault (400), not a 500.
#[tokio::test]
async fn a_signed_position_whose_balances_overflow_is_400_not_a_panic() {
    use shared::api::cursor::CursorList;
    use shared::storage::LedgerPosition;
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 10})).await;
    let key = env.app.settings.cursor_key.as_ref().expect("the test app signs cursors");
    let position = LedgerPosition {
        pk: format!("ACCOUNT#{COFFEE}"),
        sk: "LEDGER#2099-12-31T23:59:59.999Z#ffffffff-ffff-7fff-bfff-ffffffffffff".into(),
        balances: [(CreditType::Audience, i64::MIN)].into(),
    };
    let a = ledger(&env, COFFEE, &format!("cursor={}", key.sign(CursorList::Ledger, &position))).await;
    assert_problem(&a, 400, "invalid_query_parameter");
    assert_eq!(a.body["parameter"], "cursor");
    // i64::MAX walked back over a consumption overflows the other way.
    consumption_event(&env.consumer, &consume("j1", json!({"audience": 1}))).await.unwrap();
    let position = LedgerPosition { balances: [(CreditType::Audience, i64::MAX)].into(), ..position };
    let a = ledger(&env, COFFEE, &format!("cursor={}", key.sign(CursorList::Ledger, &position))).await;
    assert_problem(&a, 400, "invalid_query_parameter");
}

#[tokio::test]
async fn a_warm_consumption_is_one_dynamodb_call() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 5})).await;
    consumption_event(&env.consumer, &consume("warm-up", json!({"audience": 1}))).await.unwrap();
    env.operations.reset();
    consumption_event(&env.consumer, &consume("warm", json!({"audience": 1}))).await.unwrap();
    assert_eq!(env.operations.operations(), ["TransactWriteItems"]);
    // A refusal is the same one call: the cancellation carries the balances it reports.
    env.operations.reset();
    consumption_event(&env.consumer, &consume("too-much", json!({"audience": 9}))).await.unwrap_err();
    assert_eq!(env.operations.operations(), ["TransactWriteItems"]);
}

#[tokio::test]
async fn sample_events_answer_as_documented() {
    let env = TestEnv::seeded().await;
    let purchase = answer(
        api::purchase_credits(&env.app, testkit::request_from_event(&testkit::event_json("purchase-credits.json")))
            .await,
    );
    assert_eq!(purchase.status, 201, "{}", purchase.body);
    for (file, status) in
        [("list-ledger.json", 200), ("list-ledger-bad-input.json", 400), ("list-ledger-forbidden.json", 403)]
    {
        let request = testkit::request_from_event(&testkit::event_json(file));
        let a = answer(api::list_purchases_or_ledger(&env.app, request).await);
        assert_eq!(a.status, status, "{file}: {}", a.body);
    }
    let consumed = consumption_event(&env.consumer, &testkit::event_json("consume-credits.json")).await.unwrap();
    assert!(matches!(consumed, ConsumptionAnswer::Consumed { replayed: false, .. }), "{consumed:?}");
    let answer_json = serde_json::to_value(&consumed).unwrap();
    assert_eq!(answer_json["result"], "consumed");
    assert_eq!(answer_json["quantities"], json!({"audience": 1}));
    let again = consumption_event(&env.consumer, &testkit::event_json("consume-credits.json")).await.unwrap();
    assert!(matches!(again, ConsumptionAnswer::Consumed { replayed: true, .. }));
    let released = consumption_event(&env.consumer, &testkit::event_json("consume-credits-release.json")).await;
    assert_eq!(serde_json::to_value(released.unwrap()).unwrap()["result"], "released");
    let bad = consumption_event(&env.consumer, &testkit::event_json("consume-credits-bad-input.json")).await;
    assert_eq!(bad.unwrap_err().error_type(), "InvalidConsumptionEvent");
    let ledger = answer(
        api::list_purchases_or_ledger(&env.app, testkit::request_from_event(&testkit::event_json("list-ledger.json")))
            .await,
    );
    let types: Vec<&str> =
        ledger.body["entries"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["release", "consumption", "purchase"]);
    assert_eq!(ledger.body["entries"][0]["balancesAfter"]["audience"], 10);
}

#[tokio::test]
async fn an_operator_adjustment_is_an_entry_with_its_reason_and_never_goes_below_zero() {
    let env = TestEnv::seeded().await;
    buy(&env, json!({"audience": 3})).await;
    let deltas = [(CreditType::Audience, -2), (CreditType::Pixel, 5)].into();
    let at = shared::domain::time::timestamp(std::time::SystemTime::now());
    let id = uuid::Uuid::now_v7().to_string();
    let outcome = env.app.store.adjust(COFFEE, &deltas, "duplicate import", "ops@agency", &id, &at).await.unwrap();
    assert!(matches!(outcome, shared::storage::AdjustOutcome::Adjusted(_)), "{outcome:?}");
    assert_eq!(raw_balance(&env.app.store, CreditType::Audience).await, 1);
    assert_eq!(raw_balance(&env.app.store, CreditType::Pixel).await, 5);

    let before = env.snapshot().await;
    let too_much = [(CreditType::Audience, -2)].into();
    let id2 = uuid::Uuid::now_v7().to_string();
    let refused = env.app.store.adjust(COFFEE, &too_much, "oops", "ops@agency", &id2, &at).await.unwrap();
    let shared::storage::AdjustOutcome::Insufficient(short) = refused else { panic!("{refused:?}") };
    assert_eq!((short[0].balance, short[0].short), (1, 1));
    assert_eq!(env.snapshot().await, before);

    let page = ledger(&env, COFFEE, "type=adjustment").await;
    let entry = &page.body["entries"][0];
    assert_eq!(entry["quantities"], json!({"audience": -2, "pixel": 5}));
    assert_eq!(entry["reason"], "duplicate import");
    assert!(entry.get("actor").is_none(), "who made it is not shown to the client");
    assert_eq!(entry["balancesAfter"]["audience"], 1);
    assert_eq!(env.drift(COFFEE).await, Vec::<String>::new());
}
