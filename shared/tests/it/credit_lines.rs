//! Pay-later credit lines against the real dynoxide: the client's line and the agency's ceiling are held
//! inside the purchase transaction under concurrency, payments release them exactly once, failed and overdue
//! statements put an account on hold until paid, and reconcile proves every line.

use std::time::{Duration, Instant, SystemTime};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::api;
use shared::billing::{self, BillingRun};
use shared::domain::billing::{CycleEnd, StatementKind};
use shared::payments::{self, PaymentAnswer, PaymentError};
use testkit::faults::Fault;
use testkit::{Answer, ApiEvent, BALANCES_ROUTE, BIKES, COFFEE, DENTAL, TestEnv, answer, assert_problem, d};

pub(super) async fn buy(app: &api::App, account: &str, quantities: Value) -> Answer {
    answer(
        api::purchase_credits(app, ApiEvent::purchase(account, &json!({ "quantities": quantities })).request()).await,
    )
}

pub(super) async fn line(env: &TestEnv, account: &str) -> Value {
    let event = ApiEvent::new("GET", BALANCES_ROUTE, account).as_account(account);
    let a = answer(api::get_balances(&env.app, event.request()).await);
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["creditLine"].clone()
}

/// Bills everything bought so far, in a cycle that ends now; returns the cycle.
pub(super) async fn bill_now(env: &TestEnv) -> CycleEnd {
    let cycle_end = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    billing::run_billing(&env.app.store, &BillingRun::new(cycle_end.clone())).await.unwrap();
    cycle_end
}

async fn pay(env: &TestEnv, statement_id: &str, amount: &str, reference: &str) -> Result<PaymentAnswer, PaymentError> {
    let event = json!({
        "statementId": statement_id, "amount": amount, "paymentReference": reference, "paidAt": "2026-12-03T10:00:00Z"
    });
    payments::payment_event(&env.app.store, &event).await
}

/// Loads an agency (its seed entry) with `count` clients named `{prefix}-00`.., through the seed loader.
async fn agency_with_clients(env: &TestEnv, agency: Value, prefix: &str, count: usize) -> Vec<String> {
    let accounts: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:02}")).collect();
    let agency_id = agency["agencyId"].clone();
    let seed = json!({
        "agencies": [agency],
        "accounts": accounts.iter().map(|a| json!({"accountId": a, "agencyId": agency_id})).collect::<Vec<_>>(),
    });
    env.load_seed_json(&seed).await.unwrap();
    accounts
}

async fn reconcile_clean(env: &TestEnv) {
    let report = reconcile_report(env).await;
    assert!(report.0.is_empty() && report.1.is_empty(), "drift: {report:?}");
}

async fn reconcile_report(
    env: &TestEnv,
) -> (Vec<shared::domain::reconcile::Drift>, Vec<shared::domain::reconcile::AgencyDrift>) {
    let mut ledger = shared::domain::reconcile::Ledger::default();
    env.app.store.read_ledger(&mut ledger, 2).await.unwrap();
    (ledger.drift(), ledger.agency_drift())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_purchases_against_a_line_that_allows_forty() {
    let env = TestEnv::seeded().await;
    // One pixel at Northwind is 10.00: the line takes exactly 40 of them.
    env.app.store.set_credit_limit(BIKES, d("400.00")).await.unwrap();
    // Contention as DynamoDB raises it: some transactions are cancelled and retried.
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 24);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let app = env.app.clone();
        tasks.push(tokio::spawn(async move { buy(&app, BIKES, json!({"pixel": 1})).await }));
    }
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        let a = task.await.unwrap();
        match a.status {
            201 => created += 1,
            402 => {
                assert_problem(&a, 402, "credit_limit_exceeded");
                assert_eq!(a.body["requestedTotal"], "10.00");
                assert_eq!(a.body["availableCredit"], "0.00");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    println!(
        "client line: 64 purchases of 10.00 against 400.00: {created} created, {refused} refused (402), \
         {} conflicts injected, {:?}",
        env.faults.injected().len(),
        started.elapsed()
    );
    assert_eq!((created, refused), (40, 24));
    assert_eq!(env.app.store.all_purchases(BIKES).await.unwrap().len(), 40);
    assert_eq!(line(&env, BIKES).await, json!({"limit": "400.00", "outstanding": "400.00", "available": "0.00"}));
    assert!(env.drift(BIKES).await.is_empty());
    reconcile_clean(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_against_their_agencys_ceiling() {
    let env = TestEnv::seeded().await;
    // Sixteen clients of one agency, each with room to spare; the agency may owe 60.00 at cost: ten pixels
    // (Northwind's pixel costs 6.00).
    let agency = json!({"agencyId": "agency-ceiling", "rates": {"pixel": {"price": "10.00", "cost": "6.00"}},
                        "creditCeilingAtCost": "60.00", "defaultClientCreditLimit": "1000.00"});
    let accounts = agency_with_clients(&env, agency, "acct-ceiling", 16).await;
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 8);
    let mut tasks = Vec::new();
    for account in &accounts {
        let (app, account) = (env.app.clone(), account.clone());
        tasks.push(tokio::spawn(async move { buy(&app, &account, json!({"pixel": 1})).await }));
    }
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        let a = task.await.unwrap();
        match a.status {
            201 => created += 1,
            402 => {
                assert_problem(&a, 402, "agency_credit_limit_exceeded");
                // The client learns nothing of its agency's cost or ceiling.
                let text = a.body.to_string();
                for secret in ["6.00", "60.00", "cost", "ceiling", "availableCredit"] {
                    assert!(!text.contains(secret), "{secret} in {text}");
                }
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    println!("agency line: 16 clients, ceiling 60.00 at cost, 6.00 each: {created} created, {refused} refused");
    assert_eq!((created, refused), (10, 6));
    let agency_line = env.app.store.agency_line("agency-ceiling").await.unwrap().unwrap();
    assert_eq!((agency_line.available, agency_line.outstanding()), (d("0.00"), d("60.00")));
    reconcile_clean(&env).await;
}

/// The agency line is one item every client of the agency writes: measures 32 clients buying at once, with
/// conflicts injected as DynamoDB raises them on a hot item.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_of_one_agency_at_the_same_moment() {
    let env = TestEnv::seeded().await;
    let agency = json!({"agencyId": "agency-hot", "rates": {}, "creditCeilingAtCost": "100000.00"});
    let accounts = agency_with_clients(&env, agency, "acct-hot", 32).await;
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 48);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for account in &accounts {
        let (app, account) = (env.app.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            (buy(&app, &account, json!({"audience": 1})).await.status, t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        let (status, took) = task.await.unwrap();
        assert_eq!(status, 201);
        latencies.push(took);
    }
    latencies.sort();
    let cost: Decimal = d("18.00") * Decimal::from(32); // the default audience cost
    let agency_line = env.app.store.agency_line("agency-hot").await.unwrap().unwrap();
    println!(
        "hot agency line: 32 clients at once, {} conflicts injected: all 201 in {:?}; p50 {:?}, max {:?}; \
         outstanding at cost {}",
        env.faults.injected().len(),
        started.elapsed(),
        latencies[16],
        latencies[31],
        agency_line.outstanding()
    );
    assert_eq!(agency_line.outstanding(), cost);
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn billing_then_payment_releases_the_line_exactly_once() {
    let env = TestEnv::seeded().await;
    env.app.store.set_credit_limit(BIKES, d("100.00")).await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 6})).await.status, 201); // 60.00
    assert_problem(&buy(&env.app, BIKES, json!({"pixel": 5})).await, 402, "credit_limit_exceeded");

    // Not payable while its cycle is still being billed.
    let building = StatementKind::Client.statement_id(BIKES, &CycleEnd::at(SystemTime::now()));
    assert!(matches!(pay(&env, &building, "1.00", "early").await, Err(PaymentError::StatementNotFound(_))));
    let cycle = bill_now(&env).await;
    let statement_id = StatementKind::Client.statement_id(BIKES, &cycle);
    let statement = env.app.store.statement(&statement_id).await.unwrap().unwrap();
    assert_eq!((statement.status.as_str(), statement.amount_due), ("pending_payment", d("60.00")));
    assert_eq!(line(&env, BIKES).await["outstanding"], "60.00", "billed is not paid");

    // A partial payment releases exactly its amount; its replay changes nothing.
    let first = pay(&env, &statement_id, "25.00", "ch_1").await.unwrap();
    let PaymentAnswer::Recorded { replayed: false, receipt } = &first else { panic!("{first:?}") };
    assert_eq!((receipt.amount_due, receipt.status.as_str()), (d("35.00"), "pending_payment"));
    assert_eq!(line(&env, BIKES).await, json!({"limit": "100.00", "outstanding": "35.00", "available": "65.00"}));
    let before = env.snapshot().await;
    let replay = pay(&env, &statement_id, "25.00", "ch_1").await.unwrap();
    assert_eq!(replay, PaymentAnswer::Recorded { replayed: true, receipt: receipt.clone() });
    assert_eq!(env.snapshot().await, before);
    assert!(matches!(pay(&env, &statement_id, "30.00", "ch_1").await, Err(PaymentError::ReferenceReused(_))));
    let over = pay(&env, &statement_id, "35.01", "ch_2").await.unwrap_err();
    assert_eq!(over.error_type(), "Overpayment");
    assert_eq!(env.snapshot().await, before);

    // A payment racing a purchase: both land, every figure exact.
    let (app, store) = (env.app.clone(), env.app.store.clone());
    let id = statement_id.clone();
    let (bought, paid) = tokio::join!(buy(&app, BIKES, json!({"pixel": 3})), async move {
        let event =
            json!({"statementId": id, "amount": "35.00", "paymentReference": "ch_3", "paidAt": "2026-12-04T00:00:00Z"});
        payments::payment_event(&store, &event).await
    });
    assert_eq!(bought.status, 201, "{}", bought.body);
    let PaymentAnswer::Recorded { receipt, .. } = paid.unwrap() else { panic!() };
    assert_eq!((receipt.status.as_str(), receipt.amount_due), ("paid", d("0.00")));
    assert_eq!(line(&env, BIKES).await, json!({"limit": "100.00", "outstanding": "30.00", "available": "70.00"}));
    assert!(matches!(pay(&env, &statement_id, "1.00", "ch_4").await, Err(PaymentError::NotPayable { .. })));
    assert!(env.drift(BIKES).await.is_empty());
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn failed_and_overdue_statements_put_the_account_on_hold_until_paid() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let statement_id = StatementKind::Client.statement_id(BIKES, &cycle);

    // The payment side reports a failure: on hold, naming the statement; nothing bought meanwhile.
    let failed = json!({"statementId": statement_id, "failed": true, "reason": "card declined"});
    payments::payment_event(&env.app.store, &failed).await.unwrap();
    let before = env.snapshot().await;
    let held = buy(&env.app, BIKES, json!({"pixel": 1})).await;
    assert_problem(&held, 402, "account_on_hold");
    assert_eq!(held.body["statementId"], statement_id.as_str());
    assert_eq!(env.snapshot().await, before);
    // Another client of the same agency is not affected.
    assert_eq!(buy(&env.app, COFFEE, json!({"pixel": 1})).await.status, 201);

    // Paying it in full lifts the hold.
    pay(&env, &statement_id, "20.00", "ch_hold").await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);

    // Overdue: a statement unpaid past its due date (here the end of the day it became payable, anywhere on
    // Earth: 12:00 UTC tomorrow) is found by the sweep of the day after, without a Scan, and holds the account.
    let cycle = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let run = BillingRun { payment_due_days: 0, ..BillingRun::new(cycle.clone()) };
    billing::run_billing(&env.app.store, &run).await.unwrap();
    let overdue_id = StatementKind::Client.statement_id(BIKES, &cycle);
    let not_yet = payments::sweep(&env.app.store, SystemTime::now() + Duration::from_secs(1)).await.unwrap();
    assert_eq!(not_yet.marked_overdue, 0, "due until the end of its day everywhere");
    let two_days = Duration::from_secs(2 * 86_400);
    let summary = payments::sweep(&env.app.store, SystemTime::now() + two_days).await.unwrap();
    assert!(summary.marked_overdue >= 1, "{summary:?}");
    assert_eq!(env.app.store.statement(&overdue_id).await.unwrap().unwrap().status, "overdue");
    let held = buy(&env.app, BIKES, json!({"pixel": 1})).await;
    assert_problem(&held, 402, "account_on_hold");
    assert_eq!(held.body["statementId"], overdue_id.as_str());
    // The sweep is safe to run again.
    let again = payments::sweep(&env.app.store, SystemTime::now() + two_days).await.unwrap();
    assert_eq!(again.marked_overdue, 0);

    pay(&env, &overdue_id, "10.00", "ch_late").await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn a_lowered_limit_can_leave_nothing_available_until_payments_come_in() {
    let env = TestEnv::seeded().await;
    env.app.store.set_credit_limit(BIKES, d("100.00")).await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 8})).await.status, 201);
    env.app.store.set_credit_limit(BIKES, d("50.00")).await.unwrap();
    assert_eq!(line(&env, BIKES).await, json!({"limit": "50.00", "outstanding": "80.00", "available": "0.00"}));
    assert_problem(&buy(&env.app, BIKES, json!({"pixel": 1})).await, 402, "credit_limit_exceeded");
    let cycle = bill_now(&env).await;
    pay(&env, &StatementKind::Client.statement_id(BIKES, &cycle), "80.00", "ch_all").await.unwrap();
    assert_eq!(line(&env, BIKES).await, json!({"limit": "50.00", "outstanding": "0.00", "available": "50.00"}));
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn reconcile_finds_a_line_moved_outside_a_purchase_or_payment() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    reconcile_clean(&env).await;
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{BIKES}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT".into()))
        .update_expression("SET availableCredit = availableCredit + :x")
        .expression_attribute_values(":x", aws_sdk_dynamodb::types::AttributeValue::N("5".into()))
        .send()
        .await
        .unwrap();
    let (drift, _) = reconcile_report(&env).await;
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].account_id, BIKES);
    assert_eq!(drift[0].line, Some((d("14985.00"), d("14980.00"))));
}

/// Bills what was bought so far in a cycle that ends now, due at the end of today anywhere (0 days), so a sweep
/// two days on finds it overdue.
async fn bill_now_due_at_once(env: &TestEnv) -> CycleEnd {
    let cycle = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let run = BillingRun { payment_due_days: 0, ..BillingRun::new(cycle.clone()) };
    billing::run_billing(&env.app.store, &run).await.unwrap();
    cycle
}

async fn fail(env: &TestEnv, statement_id: &str) {
    let failed = json!({"statementId": statement_id, "failed": true, "reason": "declined"});
    assert!(matches!(payments::payment_event(&env.app.store, &failed).await, Ok(PaymentAnswer::PaymentFailed { .. })));
}

async fn hold_of(env: &TestEnv, account: &str) -> Value {
    let event = ApiEvent::new("GET", BALANCES_ROUTE, account).as_account(account);
    answer(api::get_balances(&env.app, event.request()).await).body["holdStatementId"].clone()
}

/// Issue 22.1: paying one held statement never lifts a hold another unpaid failed or overdue statement still
/// holds, and a failed statement still falls overdue at its due date.
#[tokio::test]
async fn an_account_stays_on_hold_while_any_statement_is_failed_or_overdue() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201); // 20.00
    let s1 = StatementKind::Client.statement_id(BIKES, &bill_now(&env).await);
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201); // 10.00
    let s2 = StatementKind::Client.statement_id(BIKES, &bill_now(&env).await);

    // Both fail; paying the older in full leaves the account held by the other.
    fail(&env, &s1).await;
    fail(&env, &s2).await;
    assert_eq!(hold_of(&env, BIKES).await, s1.as_str(), "the oldest held statement is shown");
    pay(&env, &s1, "20.00", "ch_s1").await.unwrap();
    assert_eq!(hold_of(&env, BIKES).await, s2.as_str());
    let before = env.snapshot().await;
    let held = buy(&env.app, BIKES, json!({"pixel": 1})).await;
    assert_problem(&held, 402, "account_on_hold");
    assert_eq!(held.body["statementId"], s2.as_str());
    assert_eq!(env.snapshot().await, before, "a refused purchase writes nothing");
    // A partial payment keeps it held; the rest lifts it.
    pay(&env, &s2, "4.00", "ch_s2a").await.unwrap();
    assert_problem(&buy(&env.app, BIKES, json!({"pixel": 1})).await, 402, "account_on_hold");
    pay(&env, &s2, "6.00", "ch_s2b").await.unwrap();
    assert_eq!(hold_of(&env, BIKES).await, Value::Null);
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn a_failed_statement_still_falls_overdue_and_an_overdue_one_keeps_the_hold() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let s1 = StatementKind::Client.statement_id(BIKES, &bill_now(&env).await);
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    let s2 = StatementKind::Client.statement_id(BIKES, &bill_now_due_at_once(&env).await);
    assert_eq!(buy(&env.app, DENTAL, json!({"pixel": 1})).await.status, 201);
    let s3 = StatementKind::Client.statement_id(DENTAL, &bill_now_due_at_once(&env).await);

    // s1 fails (due in the future); s2 goes overdue through the sweep; s3 fails and then falls overdue too.
    fail(&env, &s1).await;
    fail(&env, &s3).await;
    let summary = payments::sweep(&env.app.store, SystemTime::now() + Duration::from_secs(2 * 86_400)).await.unwrap();
    assert_eq!(env.app.store.statement(&s2).await.unwrap().unwrap().status, "overdue");
    assert_eq!(env.app.store.statement(&s3).await.unwrap().unwrap().status, "overdue", "{summary:?}");
    assert_eq!(env.app.store.statement(&s1).await.unwrap().unwrap().status, "payment_failed", "not yet due");

    pay(&env, &s1, "20.00", "ch_s1").await.unwrap();
    assert_eq!(hold_of(&env, BIKES).await, s2.as_str(), "s2 is overdue and unpaid");
    assert_problem(&buy(&env.app, BIKES, json!({"pixel": 1})).await, 402, "account_on_hold");
    pay(&env, &s2, "10.00", "ch_s2").await.unwrap();
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    assert_problem(&buy(&env.app, DENTAL, json!({"pixel": 1})).await, 402, "account_on_hold");
    reconcile_clean(&env).await;
}

/// The sweep marking one statement overdue while another's payment is in flight, in every order the two
/// transactions can take: the account ends held by the overdue one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_racing_a_payment_never_lifts_the_other_statements_hold() {
    let env = TestEnv::seeded().await;
    for round in 0..8 {
        assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201, "round {round}");
        let s1 = StatementKind::Client.statement_id(BIKES, &bill_now(&env).await);
        assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
        let s2 = StatementKind::Client.statement_id(BIKES, &bill_now_due_at_once(&env).await);
        fail(&env, &s1).await;
        let store = env.app.store.clone();
        let reference = format!("ch_race_{round}");
        let (paid, swept) = tokio::join!(pay(&env, &s1, "10.00", &reference), async move {
            if round % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(round)).await;
            }
            payments::sweep(&store, SystemTime::now() + Duration::from_secs(2 * 86_400)).await
        });
        paid.unwrap();
        swept.unwrap();
        assert_eq!(env.app.store.statement(&s2).await.unwrap().unwrap().status, "overdue", "round {round}");
        assert_eq!(hold_of(&env, BIKES).await, s2.as_str(), "round {round}");
        assert_problem(&buy(&env.app, BIKES, json!({"pixel": 1})).await, 402, "account_on_hold");
        pay(&env, &s2, "10.00", &format!("ch_after_{round}")).await.unwrap();
        assert_eq!(hold_of(&env, BIKES).await, Value::Null, "round {round}");
    }
    reconcile_clean(&env).await;
}

/// Issue 22.5: two deliveries of one payment at once (the same reference, sent a few milliseconds apart so their
/// writes differ in `updatedAt`): the second answers the first's receipt as a replay, never a storage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_payment_replay_instead_of_failing() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let statement_id = StatementKind::Client.statement_id(BIKES, &bill_now(&env).await);
    // Slow reads put both deliveries' reads before either write.
    env.faults.set_latency(Some(testkit::faults::Latency {
        query_page: Duration::ZERO,
        transaction_base: Duration::from_millis(5),
        transaction_per_item: Duration::ZERO,
        other: Duration::from_millis(40),
    }));
    let deliveries = (0..4u64).map(|i| {
        let store = env.app.store.clone();
        let event = json!({
            "statementId": statement_id, "amount": "20.00", "paymentReference": "ch_twice", "paidAt": "2026-12-03T10:00:00Z"
        });
        async move {
            tokio::time::sleep(Duration::from_millis(3 * i)).await;
            payments::payment_event(&store, &event).await
        }
    });
    let answers = futures_util::future::join_all(deliveries).await;
    env.faults.set_latency(None);
    let mut first = 0;
    for answer in &answers {
        match answer {
            Ok(PaymentAnswer::Recorded { replayed, receipt }) => {
                assert_eq!((receipt.status.as_str(), receipt.amount_due), ("paid", d("0.00")));
                first += usize::from(!replayed);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(first >= 1, "{answers:?}");
    assert_eq!(line(&env, BIKES).await["outstanding"], "0.00", "released once");
    reconcile_clean(&env).await;
}
