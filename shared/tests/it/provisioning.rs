//! The provisioning entry point (`provision-account`) against a real dynoxide: each request applied once, a
//! refused request writes nothing, a replay changes nothing; the seed loader and it write accounts the same way.

use std::time::SystemTime;

use serde_json::{Value, json};
use shared::provisioning::provision;
use testkit::{BAKERY, COFFEE, TestEnv, event_json};

async fn item(env: &TestEnv, pk: &str, sk: &str) -> Value {
    let snapshot = env.snapshot().await;
    snapshot
        .into_iter()
        .find(|item| item["pk"] == json!({"S": pk}) && item["sk"] == json!({"S": sk}))
        .unwrap_or(Value::Null)
}

async fn account(env: &TestEnv, account_id: &str) -> Value {
    item(env, &format!("ACCOUNT#{account_id}"), "ACCOUNT").await
}

fn s(item: &Value, field: &str) -> Option<String> {
    item[field]["S"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn the_sample_events_create_a_client_an_agency_and_move_the_client_once_each() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let now = SystemTime::now();
    for (file, want) in [
        ("provision-account.json", "applied"),
        ("provision-account-agency.json", "applied"),
        ("provision-account-move.json", "applied"),
    ] {
        let answer = provision(store, &event_json(file), now).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(answer.result, want, "{file}");
    }
    let florist = account(&env, "acct-northwind-florist").await;
    assert_eq!(s(&florist, "agencyId").as_deref(), Some("agency-harborline"));
    assert_eq!(s(&florist, "agencyPk").as_deref(), Some("AGENCY#agency-harborline"));
    assert_eq!(s(&florist, "name").as_deref(), Some("Northwind Florist"));
    assert_eq!(s(&florist, "stripeCustomerId").as_deref(), Some("cus_SampleFlorist01"));
    // The new agency's line, at the default ceiling, with the customer collection charges.
    let line = store.agency_line("agency-harborline").await.unwrap().expect("the agency's line");
    assert_eq!(line.limit, shared::domain::credit::DEFAULT_AGENCY_CEILING_AT_COST);
    let line_item = item(&env, "AGENCYLINE#agency-harborline", "CREDIT_LINE").await;
    assert_eq!(s(&line_item, "stripeCustomerId").as_deref(), Some("cus_SampleHarbor01"));

    // Every request again: replayed, and the table is exactly as it was (the move is not undone by the replayed
    // upsert, which would otherwise put the account back under agency-northwind).
    let before = env.snapshot().await;
    for file in ["provision-account.json", "provision-account-agency.json", "provision-account-move.json"] {
        assert_eq!(provision(store, &event_json(file), now).await.unwrap().result, "replayed", "{file}");
    }
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn refused_requests_write_nothing() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    let now = SystemTime::now();
    provision(store, &event_json("provision-account.json"), now).await.unwrap();
    let before = env.snapshot().await;
    let cases = [
        (event_json("provision-account-bad-input.json"), "InvalidProvisionRequest"),
        (json!([]), "InvalidProvisionRequest"),
        // The same request id for another request.
        (
            json!({"action": "upsertAccount", "requestId": "signup-sample-0001", "accountId": "acct-northwind-florist",
                   "agencyId": "agency-northwind", "name": "Someone Else"}),
            "RequestIdReused",
        ),
        // A client of another agency: a move is asked as one.
        (
            json!({"action": "upsertAccount", "requestId": "r-other-agency", "accountId": COFFEE,
                   "agencyId": "agency-plainsail", "stripeCustomerId": "cus_Other01"}),
            "AccountInOtherAgency",
        ),
        // An agency nobody provisioned.
        (
            json!({"action": "upsertAccount", "requestId": "r-no-agency", "accountId": "acct-new",
                   "agencyId": "agency-nowhere"}),
            "AgencyNotFound",
        ),
        (
            json!({"action": "moveClient", "requestId": "r-no-agency-move", "accountId": BAKERY,
                   "toAgencyId": "agency-nowhere"}),
            "AgencyNotFound",
        ),
        // Moving an account that does not exist creates nothing.
        (
            json!({"action": "moveClient", "requestId": "r-no-account", "accountId": "acct-ghost",
                   "toAgencyId": "agency-northwind"}),
            "AccountNotFound",
        ),
    ];
    for (event, want) in cases {
        let error = provision(store, &event, now).await.unwrap_err();
        assert_eq!(error.error_type(), want, "{event}: {error}");
        assert_eq!(env.snapshot().await, before, "{event} wrote something");
    }
}

#[tokio::test]
async fn the_seed_loader_and_provisioning_write_the_same_account() {
    let seeded = TestEnv::empty().await;
    seeded
        .load_seed_json(&json!({"accounts": [{"accountId": "acct-same", "agencyId": "agency-same", "name": "Same",
                                               "stripeCustomerId": "cus_Same01"}]}))
        .await
        .unwrap();
    let provisioned = TestEnv::empty().await;
    // The seed loader gives every agency it names a line; provisioning asks for it first.
    provisioned
        .app
        .store
        .set_agency_ceiling("agency-same", shared::domain::credit::DEFAULT_AGENCY_CEILING_AT_COST)
        .await
        .unwrap();
    let request = json!({"action": "upsertAccount", "requestId": "r-same", "accountId": "acct-same",
                         "agencyId": "agency-same", "name": "Same", "stripeCustomerId": "cus_Same01"});
    provision(&provisioned.app.store, &request, SystemTime::now()).await.unwrap();
    let mut a = account(&seeded, "acct-same").await;
    let mut b = account(&provisioned, "acct-same").await;
    // The seed loader also gives the account its credit limit (provisioning leaves that to the agency).
    for item in [&mut a, &mut b] {
        let map = item.as_object_mut().unwrap();
        map.remove("creditLimit");
        map.remove("availableCredit");
    }
    assert_eq!(a, b);
}
