//! `statement.payable` and `statement.payment_failed` (docs/events.md), end to end: the outbox item written in
//! the change's own transaction, read back from dynoxide's stream, put by the real `publish-events` handler on
//! the stand-in bus, deduped by `id` and validated against its schema.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::billing::{self, BillingRun, BillingSlice};
use shared::domain::billing::{CycleEnd, StatementKind};
use shared::events::handle_stream_batch;
use testkit::stripe::{DECLINING_CARD, LocalStripe};
use testkit::{BIKES, COFFEE, DENTAL, TestEnv};

use super::collection::{all_good, collect_at, collector, customers, deliver, event, webhook_app};
use super::credit_lines::{bill_now, buy};
use super::events::{
    NORTHWIND, StandIn, enable_stream, failures, outbox_events, publisher_to, stream_batch, types, validate,
};

const BRIGHTSIDE: &str = "agency-brightside";

/// Bills every purchase so far in a cycle ending now, both sides, as slice runs: every statement stays
/// `building`, for a whole run to finish.
async fn bill_without_finishing(env: &TestEnv) -> CycleEnd {
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    for side in [StatementKind::Client, StatementKind::Agency] {
        let run = BillingRun { slice: Some(BillingSlice { side, part: None }), ..BillingRun::new(cycle_end.clone()) };
        let summary = billing::run_billing(&env.app.store, &run).await.unwrap();
        assert_eq!(summary.statements_made_payable, 0, "a slice never finishes the cycle");
    }
    cycle_end
}

/// Every event the stream carried, through the real publisher twice (Lambda delivers at least once): what an
/// idempotent consumer keeps, by `id`, each validated against its schema.
async fn published(env: &TestEnv) -> BTreeMap<String, Value> {
    let batch = stream_batch(env).await;
    let bus = StandIn::default();
    let publisher = publisher_to(&bus.start().await);
    for _ in 0..2 {
        assert!(failures(&handle_stream_batch(&publisher, batch.clone()).await).is_empty());
    }
    assert_eq!(bus.received().len(), 2 * batch.records.len());
    let deduped = bus.deduped();
    assert_eq!(deduped.len(), batch.records.len(), "one id per outbox item");
    validate(&deduped.values().map(Value::to_string).collect::<Vec<_>>()).unwrap();
    deduped
}

/// The DynamoDB calls of finishing a cycle: a whole run with nothing left to bill makes its statements payable,
/// one call per statement whatever events it writes (before `statement.payable`: 9 Query + 5 UpdateItem + the
/// last pass's Query for these 5 statements; now the 3 client statements' calls are `TransactWriteItems`).
#[tokio::test]
async fn finishing_a_cycle_is_one_call_per_statement() {
    let env = TestEnv::seeded().await;
    for account in [COFFEE, BIKES, DENTAL] {
        assert_eq!(buy(&env.app, account, json!({"pixel": 1})).await.status, 201);
    }
    let cycle_end = bill_without_finishing(&env).await;
    env.operations.reset();
    let summary = billing::run_billing(&env.app.store, &BillingRun::new(cycle_end)).await.unwrap();
    let calls = env.operations.operations();
    println!("finish: {} statements made payable, calls {calls:?}", summary.statements_made_payable);
    // Three client statements, two agency statements (Northwind, Brightside).
    assert_eq!(summary.statements_made_payable, 5);
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    assert_eq!((count("TransactWriteItems"), count("UpdateItem"), count("GetItem")), (3, 2, 0), "{calls:?}");
    assert_eq!(calls.len(), count("Query") + 5, "{calls:?}");
}

/// Three runs finish the same cycle at once (a Step Functions retry racing the run it retries) and a fourth
/// after them: one `statement.payable` per client statement, at price, naming its agency; none for the agency
/// statements (at cost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cycle_finished_concurrently_and_again_emits_one_statement_payable_per_client_statement() {
    let env = TestEnv::seeded().await;
    for (account, quantities) in
        [(COFFEE, json!({"pixel": 3, "audience": 1})), (BIKES, json!({"pixel": 2})), (DENTAL, json!({"audience": 2}))]
    {
        assert_eq!(buy(&env.app, account, quantities).await.status, 201);
    }
    let cycle_end = bill_without_finishing(&env).await;
    enable_stream(&env).await;
    let run = || {
        let (store, cycle_end) = (env.app.store.clone(), cycle_end.clone());
        tokio::spawn(async move { billing::run_billing(&store, &BillingRun::new(cycle_end)).await.unwrap() })
    };
    let (a, b, c) = tokio::join!(run(), run(), run());
    let made: u64 = [a, b, c].into_iter().map(|r| r.unwrap().statements_made_payable).sum();
    assert_eq!(made, 5, "each statement made payable by exactly one run");
    assert_eq!(run().await.unwrap().statements_made_payable, 0);

    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["statement.payable"; 3], "{events:?}");
    let delivered = published(&env).await;
    assert_eq!(delivered.len(), 3);
    let by_account: BTreeMap<&str, &Value> =
        events.iter().map(|e| (e["detail"]["accountId"].as_str().unwrap(), &e["detail"])).collect();
    for (account, agency) in [(COFFEE, NORTHWIND), (BIKES, NORTHWIND), (DENTAL, BRIGHTSIDE)] {
        let statement_id = StatementKind::Client.statement_id(account, &cycle_end);
        let statement = env.app.store.statement(&statement_id).await.unwrap().unwrap();
        let detail = by_account[account];
        assert_eq!(
            *detail,
            json!({
                "accountId": account, "agencyId": agency, "statementId": statement_id,
                "cycleEnd": cycle_end.as_str(), "total": statement.total.to_string(), "currency": "USD",
                "dueDate": statement.due_at.unwrap(),
            })
        );
    }
    assert_eq!(by_account[COFFEE]["total"], "55.00", "at the client's price");
    assert!(!events.iter().any(|e| e["detail"]["statementId"].as_str().unwrap().starts_with("agency-")));
}

/// A client that moved agencies mid-cycle has one statement with both agencies' purchases: its
/// `statement.payable` names the agency it bought under last (its new one), once.
#[tokio::test]
async fn a_moved_clients_statement_names_the_agency_it_bought_under_last() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, COFFEE, json!({"audience": 1})).await.status, 201);
    env.load_seed_json(&json!({"accounts": [{"accountId": COFFEE, "agencyId": BRIGHTSIDE}]})).await.unwrap();
    assert_eq!(buy(&env.app, COFFEE, json!({"pixel": 1})).await.status, 201);
    enable_stream(&env).await;
    // One purchase per step, so the two agencies' purchases are billed by separate steps.
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let run = BillingRun { purchases_per_transaction: 1, ..BillingRun::new(cycle_end.clone()) };
    billing::run_billing(&env.app.store, &run).await.unwrap();
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["statement.payable"]);
    let detail = &events[0]["detail"];
    assert_eq!((detail["accountId"].as_str(), detail["agencyId"].as_str()), (Some(COFFEE), Some(BRIGHTSIDE)));
    let statement = env.app.store.statement(detail["statementId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(statement.purchase_count, 2, "both agencies' purchases on the one statement");
}

/// A declined collection emits one `statement.payment_failed` (attempt 1, Stripe's code) beside the hold; the
/// retry declined on day 3 a second (attempt 2, no second hold); Stripe's webhook for either attempt, and its
/// redelivery, none; a webhook for an attempt not seen yet one, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_failed_attempt_emits_one_statement_payment_failed_and_webhook_replays_none() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    let mut accounts = all_good();
    accounts[1].2 = DECLINING_CARD; // bikes
    customers(&env, &stripe, &accounts).await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    enable_stream(&env).await;
    let collector = collector(&env, &stripe);
    let started = SystemTime::now();

    let first = collect_at(&collector, started).await;
    assert_eq!((first.failed, first.succeeded), (1, 1), "{first:?}"); // bikes declined, its agency paid
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["account.hold_started", "statement.payment_failed"]);
    let statement = env.app.store.statement(&bikes).await.unwrap().unwrap();
    let code = statement.collection.as_ref().and_then(|c| c.reason.clone()).expect("the decline code is kept");
    assert_eq!(code, "card_declined");
    let failed = |attempt: u32, code: &str| json!({"accountId": BIKES, "agencyId": NORTHWIND, "statementId": bikes, "attempt": attempt, "failureCode": code});
    assert_eq!(events[1]["detail"], failed(1, &code));

    // The retry on day 3 declines again: attempt 2, the account already held.
    let retry = collect_at(&collector, started + Duration::from_secs(3 * 86_400 + 60)).await;
    assert_eq!(retry.failed, 1, "{retry:?}");
    let events = outbox_events(&env).await;
    assert_eq!(types(&events)[2..], ["statement.payment_failed"]);
    assert_eq!(events[2]["detail"], failed(2, &code));

    // Stripe's own webhooks for those attempts, each delivered twice: already recorded, nothing written.
    let app = webhook_app(&env);
    let intent = |id: &str, attempt: &str, decline: &str| {
        json!({"id": id, "object": "payment_intent", "status": "requires_payment_method", "amount": 2000,
               "currency": "usd", "metadata": {"statementId": bikes, "attempt": attempt},
               "last_payment_error": {"code": "card_declined", "decline_code": decline}})
    };
    for attempt in ["1", "2"] {
        let body = event("payment_intent.payment_failed", intent(&format!("pi_{attempt}"), attempt, "card_declined"));
        for _ in 0..2 {
            let a = deliver(&app, &body).await;
            assert_eq!((a.status, a.body["result"].as_str()), (200, Some("marked_failed")), "{}", a.body);
        }
    }
    assert_eq!(outbox_events(&env).await.len(), 3, "a replayed webhook emits nothing");

    // A failure only the webhook tells (attempt 3, say our run died before recording it): one event, with
    // Stripe's decline code; its redelivery none.
    let body = event("payment_intent.payment_failed", intent("pi_3", "3", "insufficient_funds"));
    for _ in 0..2 {
        assert_eq!(deliver(&app, &body).await.status, 200);
    }
    let events = outbox_events(&env).await;
    assert_eq!(types(&events)[3..], ["statement.payment_failed"]);
    assert_eq!(events[3]["detail"], failed(3, "insufficient_funds"));

    // Through the real publisher, delivered twice: four events once each by id.
    let delivered = published(&env).await;
    let attempts: Vec<u64> = delivered
        .values()
        .filter(|e| e["type"] == "statement.payment_failed")
        .map(|e| e["detail"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts.iter().copied().collect::<std::collections::BTreeSet<_>>(), [1, 2, 3].into());
    assert_eq!(delivered.len(), 4);
}

/// The overdue sweep is not a payment attempt: it puts the account on hold (`account.hold_started`) and emits no
/// `statement.payment_failed`; the payment side's free-text reason goes out as a code of its words.
#[tokio::test]
async fn overdue_emits_the_hold_only_and_a_free_text_reason_goes_out_as_a_code() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    assert_eq!(buy(&env.app, COFFEE, json!({"pixel": 1})).await.status, 201);
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let run = BillingRun { payment_due_days: 0, ..BillingRun::new(cycle_end.clone()) };
    billing::run_billing(&env.app.store, &run).await.unwrap();
    enable_stream(&env).await;
    let coffee = StatementKind::Client.statement_id(COFFEE, &cycle_end);
    let fail = json!({"statementId": coffee, "failed": true, "reason": "Card declined (bank said no)", "attempt": 1});
    shared::payments::payment_event(&env.app.store, &fail).await.unwrap();

    let swept = shared::payments::sweep(&env.app.store, SystemTime::now() + Duration::from_secs(2 * 86_400)).await;
    assert_eq!(swept.unwrap().marked_overdue, 2);
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["account.hold_started", "statement.payment_failed", "account.hold_started"]);
    assert_eq!(events[1]["detail"]["failureCode"], "card_declined_bank_said_no");
    assert_eq!(events[2]["detail"]["accountId"], BIKES, "coffee was already held");
}
