//! The EMF lines a purchase and a billing run write, against a real dynoxide engine: valid Embedded Metric
//! Format, the metrics the dashboard and alarms read, and no dimension but `shared::metrics::DIMENSIONS`
//! (never an account, agency, purchase or run id).

use serde_json::json;
use shared::api::{App, Settings};
use shared::metrics::{self, CountDynamoCalls};
use shared::storage::Store;
use testkit::emf::{EmfEntry, MetricsCapture};
use testkit::{ApiEvent, TestEnv, answer};

const ACCOUNT: &str = "acct-northwind-coffee";

/// The app the deployed function runs with: its client counts calls with `CountDynamoCalls`.
fn counted_app(env: &TestEnv) -> App {
    let config = env.app.store.client().config().to_builder().interceptor(CountDynamoCalls).build();
    App::new(Store::new(aws_sdk_dynamodb::Client::from_conf(config), &env.table), Settings::default())
}

fn purchases(entries: &[EmfEntry]) -> Vec<&EmfEntry> {
    entries.iter().filter(|e| e.has("Requests")).collect()
}

/// No id may appear in a dimension, and no id-like string is a metric name either.
fn assert_no_ids(entry: &EmfEntry, ids: &[&str]) {
    for set in &entry.dimension_sets {
        for name in set {
            let value = entry.property(name).unwrap();
            for id in ids {
                assert!(!value.contains(id), "dimension {name}={value} carries id {id}");
            }
        }
    }
    for name in entry.metrics.keys() {
        for id in ids {
            assert!(!name.contains(id), "metric name {name} carries id {id}");
        }
    }
}

#[tokio::test]
async fn a_purchase_and_a_billing_run_write_valid_emf_with_allowed_dimensions_only() {
    let capture = MetricsCapture::get();
    let env = TestEnv::seeded().await;
    let app = counted_app(&env);

    // A purchase (created), its replay, and a refusal.
    let body = json!({"quantities": {"audience": 10, "pixel": 5}});
    let event = ApiEvent::purchase(ACCOUNT, &body).header("idempotency-key", "emf-test-1");
    let created = answer(metrics::purchase_credits(&app, event.request()).await);
    assert_eq!(created.status, 201, "{:?}", created.body);
    let purchase_id = created.body["purchase"]["purchaseId"].as_str().unwrap().to_owned();
    let total: f64 = created.body["purchase"]["total"].as_str().unwrap().parse().unwrap();
    let replay = answer(metrics::purchase_credits(&app, event.request()).await);
    assert_eq!(replay.status, 201);
    let refused = ApiEvent::purchase(ACCOUNT, &json!({"quantities": {"gold": 1}}));
    assert_eq!(answer(metrics::purchase_credits(&app, refused.request()).await).status, 400);

    // A billing run that bills it, and one refused (a bad event).
    // An off-cycle end a moment from now (after the purchase), run as if two minutes later (past the grace a
    // run leaves purchases to commit).
    let now = std::time::SystemTime::now();
    let cycle_end = shared::domain::time::timestamp(now + std::time::Duration::from_secs(1));
    let later = now + std::time::Duration::from_secs(120);
    let event = json!({"cycleEnd": cycle_end, "offCycle": true});
    let summary = metrics::run_billing_from_event(&app.store, &Default::default(), &event, None, later)
        .await
        .expect("billing run");
    assert_eq!(summary.purchases_billed_to_client, 1);
    assert!(
        metrics::run_billing_from_event(&app.store, &Default::default(), &json!({"cycleEnd": 7}), None, later)
            .await
            .is_err()
    );

    let entries = capture.entries();
    let ids = [ACCOUNT, "agency-northwind", purchase_id.as_str(), summary.run_id.as_str(), "emf-test-1"];
    for entry in &entries {
        assert_eq!(entry.namespace, metrics::DEFAULT_NAMESPACE);
        assert_no_ids(entry, &ids);
    }

    let purchase_entries = purchases(&entries);
    let outcomes: Vec<&str> = purchase_entries.iter().map(|e| e.property("Outcome").unwrap()).collect();
    assert_eq!(outcomes, ["created", "replayed", "unknown_credit_type"]);
    for entry in &purchase_entries {
        // Totals across outcomes (no dimension) and per outcome: the dashboard's two views.
        assert_eq!(entry.dimension_sets, vec![Vec::<String>::new(), vec!["Outcome".to_owned()]]);
        assert_eq!(entry.metrics["Latency"].1.as_deref(), Some("Milliseconds"));
        assert!(entry.metric("Latency") > 0.0);
        assert_eq!(entry.metric("Requests"), 1.0);
    }
    let (created, replayed, refused) = (purchase_entries[0], purchase_entries[1], purchase_entries[2]);
    assert_eq!(created.metric("Purchases"), 1.0);
    assert_eq!(created.metric("CreditsAudience"), 10.0);
    assert_eq!(created.metric("CreditsPixel"), 5.0);
    assert_eq!(created.metric("CreditsEnrichment"), 0.0);
    assert_eq!(created.metric("CreditsCustomModel"), 0.0);
    assert_eq!(created.metric("AmountAtPrice"), total);
    // Account read, pricing read, the transaction, the balances read for the 201.
    assert!(created.metric("DynamoDbCalls") >= 2.0, "{}", created.raw);
    assert!(created.metric("DynamoDbAttempts") >= created.metric("DynamoDbCalls"));
    assert_eq!(created.metric("ServerErrors"), 0.0);
    assert_eq!((replayed.metric("Purchases"), replayed.metric("AmountAtPrice")), (0.0, 0.0));
    assert_eq!(replayed.metric("CreditsAudience"), 0.0);
    assert_eq!((refused.metric("Purchases"), refused.metric("DynamoDbCalls")), (0.0, 0.0));

    let runs: Vec<&EmfEntry> = entries.iter().filter(|e| e.has("BillingRunSucceeded")).collect();
    assert_eq!(runs.len(), 2);
    let (ok, failed) = (runs[0], runs[1]);
    assert_eq!(ok.dimension_sets, vec![Vec::<String>::new()]);
    assert_eq!((ok.metric("BillingRunSucceeded"), ok.metric("BillingRunFailed")), (1.0, 0.0));
    assert_eq!(ok.metric("PurchasesBilledToClient"), 1.0);
    assert_eq!(ok.metric("PurchasesBilledToAgency"), 1.0);
    assert_eq!(ok.metric("ClientStatementsWritten"), 1.0);
    assert_eq!(ok.metric("AgencyStatementsWritten"), 1.0);
    assert_eq!(ok.metric("TotalAtPrice"), total);
    assert!(ok.metric("TotalAtCost") > 0.0);
    assert!(ok.metric("ItemsRead") >= 2.0);
    assert!(ok.metric("DynamoDbCalls") >= 2.0);
    assert_eq!(ok.metrics["Duration"].1.as_deref(), Some("Milliseconds"));
    assert_eq!((failed.metric("BillingRunSucceeded"), failed.metric("BillingRunFailed")), (0.0, 1.0));
}

#[test]
fn every_problem_code_is_a_bounded_outcome() {
    // Outcome is the only dimension: its values must stay a small closed set, never free text or an id.
    let refused = |status: u16, code: &'static str| {
        metrics::PurchaseOutcome::of(&shared::api::Purchased::Refused { code, status })
    };
    assert_eq!(refused(409, "price_changed").outcome, "price_changed");
    assert_eq!(refused(502, "acct acct-northwind-coffee").outcome, "http_502");
}
