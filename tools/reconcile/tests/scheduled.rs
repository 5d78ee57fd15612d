//! The daily check (`reconcile-run`): drift, overdue billing and statements still building as one valid EMF line with no dimension,
//! account ids only in the log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shared::billing::{BillingRun, BillingSlice, run_billing};
use shared::domain::billing::{CycleEnd, StatementKind};
use testkit::emf::MetricsCapture;
use testkit::{ApiEvent, TestEnv, answer};

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn overdue_cycle_starts_a_day_after_the_first() {
    // 2026-12-01T00:00:00Z = 1796083200
    assert_eq!(reconcile::overdue_cycle(at(1_796_083_200)), None);
    assert_eq!(reconcile::overdue_cycle(at(1_796_083_200 + 86_399)), None);
    assert_eq!(reconcile::overdue_cycle(at(1_796_083_200 + 86_400)).as_deref(), Some("2026-12-01T00:00:00Z"));
    assert_eq!(reconcile::overdue_cycle(at(1_796_083_200 - 1)).as_deref(), Some("2026-11-01T00:00:00Z"));
    // 2028-03-01 after a leap day; 2027-01-02 across a year.
    assert_eq!(reconcile::overdue_cycle(at(1_835_481_600 + 86_400)).as_deref(), Some("2028-03-01T00:00:00Z"));
    assert_eq!(reconcile::overdue_cycle(at(1_798_848_000)).as_deref(), Some("2027-01-01T00:00:00Z"));
}

#[tokio::test]
async fn scheduled_check_reports_drift_and_overdue_purchases_as_metrics() {
    let capture = MetricsCapture::get();
    let env = TestEnv::seeded().await;
    let event = ApiEvent::purchase("acct-northwind-coffee", &json!({"quantities": {"audience": 2}}));
    assert_eq!(answer(shared::api::purchase_credits(&env.app, event.request()).await).status, 201);

    // On the 1st nothing is overdue yet; a day later in the future, the purchase (made before that cycle's
    // end and never billed) is.
    let report = reconcile::scheduled_check(&env.app.store, 2, SystemTime::now()).await.unwrap();
    assert!(report.drift.is_empty());
    let far = at(4_102_444_800 + 2 * 86_400); // 2100-01-03
    let report = reconcile::scheduled_check(&env.app.store, 2, far).await.unwrap();
    assert_eq!(report.overdue_cycle.as_deref(), Some("2100-01-01T00:00:00Z"));
    assert_eq!(report.figures.overdue_unbilled_purchases, 2, "client and agency side");

    let entries: Vec<_> = capture.entries().into_iter().filter(|e| e.has("ReconcileRuns")).collect();
    assert_eq!(entries.len(), 2);
    let last = &entries[1];
    assert_eq!(last.dimension_sets, vec![Vec::<String>::new()]);
    assert_eq!(last.metric("AccountsChecked"), 4.0);
    assert_eq!(last.metric("PurchasesRead"), 1.0);
    assert_eq!(last.metric("DriftingAccounts"), 0.0);
    assert_eq!(last.metric("OverdueUnbilledPurchases"), 2.0);
    assert_eq!(last.metric("StatementsStillBuilding"), 0.0);
    assert!(!last.raw.to_string().contains("acct-"), "no account id in the metric line: {}", last.raw);

    // The cycle's parts billed the client side, and no final run made the statement payable: a day after the
    // cycle end it is still building.
    let cycle_end = CycleEnd::parse("2100-01-01T00:00:00Z").unwrap();
    let slice = Some(BillingSlice { side: StatementKind::Client, part: None });
    let summary = run_billing(&env.app.store, &BillingRun { slice, ..BillingRun::new(cycle_end) }).await.unwrap();
    assert_eq!(summary.client_statements_written, 1);
    let report = reconcile::scheduled_check(&env.app.store, 2, far).await.unwrap();
    assert_eq!(report.figures.statements_still_building, 1);
    let entries: Vec<_> = capture.entries().into_iter().filter(|e| e.has("ReconcileRuns")).collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].metric("StatementsStillBuilding"), 1.0);
    assert_eq!(entries[2].metric("OverdueUnbilledPurchases"), 1.0, "the agency side");
}
