//! The reconcile check against a real engine: clean after real purchases, and every tampered account listed.

use serde_json::json;
use testkit::{ApiEvent, TestEnv, answer};

#[tokio::test]
async fn clean_ledger_passes_and_tampering_is_reported_per_account() {
    let env = TestEnv::seeded().await;
    for (account, quantities) in [
        ("acct-northwind-coffee", json!({"audience": 3, "pixel": 2})),
        ("acct-northwind-coffee", json!({"audience": 1})),
        ("acct-brightside-dental", json!({"enrichment": 700})),
    ] {
        let event = ApiEvent::purchase(account, &json!({"quantities": quantities}));
        assert_eq!(answer(shared::api::purchase_credits(&env.app, event.request()).await).status, 201);
    }
    let (drift, accounts, purchases) = reconcile::check(&env.app.store, 3).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    assert_eq!((accounts, purchases), (4, 3));

    // Credits that appear without a purchase record (a write outside the transaction) are drift.
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT#acct-plainsail-bakery".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT".into()))
        .update_expression("ADD balancePixel :q")
        .expression_attribute_values(":q", aws_sdk_dynamodb::types::AttributeValue::N("9".into()))
        .send()
        .await
        .unwrap();
    let (drift, _, _) = reconcile::check(&env.app.store, 2).await.unwrap();
    let lines: Vec<String> = drift.iter().map(reconcile::describe).collect();
    assert_eq!(lines, vec!["DRIFT acct-plainsail-bakery: pixel: balance 9 != purchased 0".to_owned()]);
}
