//! The reconcile check against a real engine: clean after real purchases, clean under live traffic, and every
//! tampered account listed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::{Duration, SystemTime};

use serde_json::json;
use shared::domain::{self, CreditType, PurchaseRecord, Quantities};
use shared::storage::RecordOutcome;
use testkit::{ApiEvent, BAKERY, BIKES, COFFEE, DENTAL, TestEnv, answer};
use tokio::sync::Semaphore;

/// Purchases already in the busy account's history before the traffic starts.
const HISTORY: usize = 1_200;

async fn add_pixels_outside_a_purchase(env: &TestEnv, account: &str, pixels: u64) {
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{account}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT".into()))
        .update_expression("ADD balancePixel :q")
        .expression_attribute_values(":q", aws_sdk_dynamodb::types::AttributeValue::N(pixels.to_string()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn clean_ledger_passes_and_tampering_is_reported_per_account() {
    let env = TestEnv::seeded().await;
    for (account, quantities) in [
        (COFFEE, json!({"audience": 3, "pixel": 2})),
        (COFFEE, json!({"audience": 1})),
        (DENTAL, json!({"enrichment": 700})),
    ] {
        let event = ApiEvent::purchase(account, &json!({"quantities": quantities}));
        assert_eq!(answer(shared::api::purchase_credits(&env.app, event.request()).await).status, 201);
    }
    let report = reconcile::check(&env.app.store, 3).await.unwrap();
    assert!(report.drift.is_empty(), "{report:?}");
    assert_eq!((report.accounts, report.purchases, report.rechecked), (4, 3, 0));

    // Credits that appear without a purchase record (a write outside the transaction) are drift, and stay
    // drift when re-read as of one moment.
    add_pixels_outside_a_purchase(&env, BAKERY, 9).await;
    let report = reconcile::check(&env.app.store, 2).await.unwrap();
    let lines: Vec<String> = report.drift.iter().map(reconcile::describe).collect();
    assert_eq!(lines, vec!["DRIFT acct-plainsail-bakery: pixel: balance 9 != ledger 0".to_owned()]);
    assert_eq!((report.rechecked, report.unsettled.len()), (1, 0));
}

/// An old, busy account: enough purchase history (about 1.5 MB) that a Scan reads its account item and its
/// newest purchases in different pages, i.e. at different moments.
async fn give_a_long_history(env: &TestEnv, account: &str, agency: &str, purchases: usize) {
    let store = &env.app.store;
    // Lines that can take the whole history: this test is about reconcile, not limits.
    store.set_credit_limit(account, "100000000.00".parse().unwrap()).await.unwrap();
    store.set_agency_ceiling(agency, "100000000.00".parse().unwrap()).await.unwrap();
    let (default, agency_pricing) = store.pricing(agency).await.unwrap();
    let pricing = domain::resolve_pricing(agency, &default, agency_pricing.as_ref()).unwrap();
    let quantities = Quantities::from_pairs(CreditType::ALL.map(|t| (t, 1)));
    let permits = Arc::new(Semaphore::new(8));
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..purchases {
        let (store, pricing, quantities) = (store.clone(), pricing.clone(), quantities.clone());
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (account, agency) = (account.to_owned(), agency.to_owned());
        writes.spawn(async move {
            let _permit = permit;
            let created = SystemTime::now() - Duration::from_secs(86_400 * 30);
            let mut purchase = PurchaseRecord::unbilled(
                uuid::Uuid::now_v7().to_string(),
                &account,
                &agency,
                created,
                domain::quote(&pricing, &quantities).unwrap(),
                None,
            );
            // What a long Idempotency-Key stores with the purchase: it only makes the item bigger.
            purchase.idempotency_key = Some(format!("{i:0>200}"));
            assert_eq!(store.record_purchase(&purchase, &pricing, None).await.unwrap(), RecordOutcome::Recorded);
        });
    }
    while let Some(write) = writes.join_next().await {
        write.unwrap();
    }
}

/// Purchases land while reconcile scans: the scan reads an old, busy account's item and its newest purchases in
/// different pages, so a purchase in between looks like drift, but nothing is reported unless it still drifts
/// when read as of one moment. A tampered account is still reported in the middle of the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_purchases_are_never_reported_as_drift() {
    let env = TestEnv::seeded().await;
    give_a_long_history(&env, COFFEE, "agency-northwind", HISTORY).await;
    let accounts = [COFFEE, BIKES, DENTAL];
    let done = Arc::new(AtomicBool::new(false));
    let mut buyers = tokio::task::JoinSet::new();
    for task in 0..8usize {
        let app = env.app.clone();
        buyers.spawn(async move {
            for i in 0..25usize {
                let account = accounts[(task + i) % accounts.len()];
                let quantities = json!({"audience": 1 + i % 3, "pixel": task % 2, "enrichment": 17 * i});
                let event = ApiEvent::purchase(account, &json!({"quantities": quantities}));
                let a = answer(shared::api::purchase_credits(&app, event.request()).await);
                assert_eq!(a.status, 201, "{}", a.body);
            }
        });
    }
    let checking = {
        let store = env.app.store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (mut checks, mut rechecked) = (0, 0);
            while !done.load(Ordering::SeqCst) || checks < 3 {
                let report = reconcile::check(&store, 4).await.unwrap();
                assert!(report.drift.is_empty(), "false drift under live traffic: {report:?}");
                assert!(report.unsettled.is_empty(), "{report:?}");
                checks += 1;
                rechecked += report.rechecked;
            }
            (checks, rechecked)
        })
    };
    while let Some(buyer) = buyers.join_next().await {
        buyer.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (checks, rechecked) = checking.await.unwrap();
    println!(
        "{checks} checks during 200 purchases; {rechecked} accounts looked drifting in the scan and were re-checked"
    );

    let report = reconcile::check(&env.app.store, 4).await.unwrap();
    assert_eq!((report.purchases, report.drift.len(), report.rechecked), (HISTORY as u64 + 200, 0, 0), "{report:?}");

    // Real drift under traffic is still reported.
    add_pixels_outside_a_purchase(&env, BAKERY, 4).await;
    let app = env.app.clone();
    let traffic = tokio::spawn(async move {
        for i in 0..40usize {
            let event = ApiEvent::purchase(accounts[i % 3], &json!({"quantities": {"pixel": 1}}));
            assert_eq!(answer(shared::api::purchase_credits(&app, event.request()).await).status, 201);
        }
    });
    let report = reconcile::check(&env.app.store, 4).await.unwrap();
    traffic.await.unwrap();
    let lines: Vec<String> = report.drift.iter().map(reconcile::describe).collect();
    assert_eq!(lines, vec!["DRIFT acct-plainsail-bakery: pixel: balance 4 != ledger 0".to_owned()]);
}

/// Issue 26: an agency line that only looks drifting because the scan read it and its clients' purchases at
/// different moments is cleared by a consistent re-check; one that really drifts is reported.
#[tokio::test]
async fn an_agency_line_torn_by_the_scan_is_rechecked_before_it_is_reported() {
    let env = TestEnv::seeded().await;
    let mut before = shared::domain::reconcile::Ledger::default();
    env.app.store.read_ledger(&mut before, 2).await.unwrap();
    let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 2}}));
    assert_eq!(answer(shared::api::purchase_credits(&env.app, event.request()).await).status, 201);
    let mut torn = shared::domain::reconcile::Ledger::default();
    env.app.store.read_ledger(&mut torn, 2).await.unwrap();
    // The scan's picture of the agency line from before the purchase, of the purchases from after it.
    torn.agency_lines = before.agency_lines.clone();
    assert_eq!(torn.agency_drift().len(), 1, "the torn picture looks drifting");
    let report = reconcile::settle(&env.app.store, &torn).await.unwrap();
    assert!(report.agency_drift.is_empty() && report.unsettled_agencies.is_empty(), "{report:?}");

    // A line moved outside any purchase is drift, confirmed by two reads as of one moment.
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("AGENCYLINE#agency-northwind".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("CREDIT_LINE".into()))
        .update_expression("SET availableCredit = availableCredit + :x")
        .expression_attribute_values(":x", aws_sdk_dynamodb::types::AttributeValue::N("7".into()))
        .send()
        .await
        .unwrap();
    let report = reconcile::check(&env.app.store, 2).await.unwrap();
    assert_eq!(report.agency_drift.len(), 1, "{report:?}");
    assert_eq!(report.agency_drift[0].agency_id, "agency-northwind");
    assert_eq!(report.agency_drift[0].available - report.agency_drift[0].expected, "7".parse().unwrap());
}

/// Issue 26: an account whose re-check can never read it as of one moment is reported unsettled, in the
/// report, the log and the `UnsettledAccounts` metric, never dropped.
#[tokio::test]
async fn an_account_that_never_settles_is_reported_not_dropped() {
    let capture = testkit::emf::MetricsCapture::get();
    let env = TestEnv::seeded().await;
    add_pixels_outside_a_purchase(&env, BIKES, 3).await;
    // Every re-check's Query is throttled: the account can be neither cleared nor proven drifting.
    env.faults.fail_after("Query", 0, testkit::faults::Fault::Throttling);
    // On the 1st of a month (2026-12-01T00:00:00Z), so the check counts no overdue purchases (a Query too).
    let first_of_month = std::time::UNIX_EPOCH + Duration::from_secs(1_796_083_200);
    let report = reconcile::scheduled_check(&env.app.store, 2, first_of_month).await.unwrap();
    env.faults.clear();
    assert!(report.drift.is_empty(), "{:?}", report.drift);
    assert_eq!(report.figures.unsettled, 1);
    let entry = capture.entries().into_iter().rfind(|e| e.has("ReconcileRuns")).unwrap();
    assert_eq!(entry.metric("UnsettledAccounts"), 1.0);
}
