//! `statement.payable` and `statement.payment_failed` (docs/events.md), through the real stream and publisher.

use std::time::{Duration, SystemTime};

use serde_json::json;
use shared::billing::{self, BillingRun, BillingSlice};
use shared::domain::billing::{CycleEnd, StatementKind};
use testkit::{BIKES, COFFEE, DENTAL, TestEnv};

use super::credit_lines::buy;

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

/// The DynamoDB calls of finishing a cycle: a whole run with nothing left to bill makes its statements payable,
/// one call per statement whatever events it writes.
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
    let writes = calls.iter().filter(|c| *c != "Query").count();
    assert_eq!(writes, 5, "{calls:?}");
}
