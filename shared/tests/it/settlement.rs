//! How each statement was settled, as the API shows it (issue 24's contract): `paidAt` and `collection` on the
//! client's and the agency's statements, and each client's `lastStatement` on the agency's clients page, after
//! real collection runs against the real dynoxide and a real localstripe.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::api;
use shared::collection::{self, CollectSettings, Collector};
use shared::domain::billing::{CycleEnd, StatementKind};
use testkit::stripe::{DECLINING_CARD, GOOD_CARD, LocalStripe};
use testkit::{ApiEvent, BAKERY, BIKES, COFFEE, DENTAL, STATEMENTS_ROUTE, TestEnv, answer, assert_problem};

use super::credit_lines::{bill_now, buy};

/// Every seeded account and agency gets a Stripe customer with a good card, except `declining`.
async fn customers(env: &TestEnv, stripe: &LocalStripe, declining: Option<&str>) {
    let accounts = [
        (COFFEE, "agency-northwind"),
        (BIKES, "agency-northwind"),
        (DENTAL, "agency-brightside"),
        (BAKERY, "agency-plainsail"),
    ];
    for (account, agency) in accounts {
        let card = if Some(account) == declining { DECLINING_CARD } else { GOOD_CARD };
        let customer = stripe.customer_with_card(account, card).await;
        env.app.store.upsert_account(account, agency, None, Some(&customer)).await.unwrap();
    }
    for agency in ["agency-northwind", "agency-brightside", "agency-plainsail"] {
        let customer = stripe.customer_with_card(agency, GOOD_CARD).await;
        env.app.store.set_agency_stripe_customer(agency, &customer).await.unwrap();
    }
}

fn collector(env: &TestEnv, stripe: &LocalStripe, retry_days: Vec<u64>) -> Collector {
    let settings = CollectSettings { retry_days, ..CollectSettings::default() };
    Collector { store: env.app.store.clone(), stripe: stripe.client(), settings }
}

/// The client's statements route, as the client.
async fn client_statements(env: &TestEnv, account: &str) -> Vec<Value> {
    let event = ApiEvent::new("GET", STATEMENTS_ROUTE, account).as_account(account);
    let a = answer(api::history::list_statements(&env.app, event.request()).await);
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["statements"].as_array().unwrap().clone()
}

/// An agency GET route's body, as its administrator.
async fn agency_get(env: &TestEnv, route: &str, agency: &str) -> Value {
    let event = ApiEvent::agency("GET", route, agency).as_agency_admin(agency);
    let a = answer(api::agency::agency_read(&env.app, event.request()).await);
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// The agency's clients page row of `account`.
async fn client_row(env: &TestEnv, agency: &str, account: &str) -> Value {
    let page = agency_get(env, "/agencies/{agencyId}/clients", agency).await;
    let rows = page["clients"].as_array().unwrap();
    rows.iter().find(|row| row["accountId"] == account).unwrap_or_else(|| panic!("{account} in {page}")).clone()
}

fn instant(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap_or_else(|| panic!("an instant: {value}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_paid_through_collection_shows_when_and_how() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    customers(&env, &stripe, None).await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);

    // Payable, never attempted: no settlement yet, both fields present and null.
    let before = client_statements(&env, BIKES).await;
    assert_eq!(before[0]["statementId"], bikes.as_str());
    assert_eq!((&before[0]["paidAt"], &before[0]["collection"]), (&Value::Null, &Value::Null));

    let started = SystemTime::now();
    collection::collect(&collector(&env, &stripe, vec![3, 5, 7]), None, started, None).await.unwrap();

    let statement = &client_statements(&env, BIKES).await[0];
    assert_eq!(statement["status"], "paid");
    assert!(instant(&statement["paidAt"]) + Duration::from_secs(5) >= started, "{statement}");
    let collection = &statement["collection"];
    assert_eq!(
        (&collection["attempt"], &collection["state"], &collection["reason"], &collection["nextAttemptAt"]),
        (&json!(1), &json!("succeeded"), &Value::Null, &Value::Null),
        "{statement}"
    );
    instant(&collection["lastAttemptAt"]);

    // The agency's own statement at cost, collected from the agency's customer, shows the same.
    let agency = agency_get(&env, "/agencies/{agencyId}/statements", "agency-northwind").await;
    let own = &agency["statements"][0];
    assert_eq!(own["statementId"], StatementKind::Agency.statement_id("agency-northwind", &cycle).as_str());
    assert_eq!((&own["status"], &own["collection"]["state"]), (&json!("paid"), &json!("succeeded")));
    instant(&own["paidAt"]);

    // The clients page: the billed client's last statement with its settlement; a client never billed, none.
    let row = client_row(&env, "agency-northwind", BIKES).await;
    let last = &row["lastStatement"];
    assert_eq!(
        (&last["statementId"], &last["cycleEnd"], &last["status"], &last["amountDue"]),
        (&json!(bikes), &json!(cycle.as_str()), &json!("paid"), &json!("0.00")),
        "{row}"
    );
    assert_eq!((&last["paidAt"], &last["collection"]), (&statement["paidAt"], &statement["collection"]));
    instant(&last["dueAt"]);
    assert_eq!(client_row(&env, "agency-northwind", COFFEE).await["lastStatement"], Value::Null);

    // The page's cost: its Query, the agency's line, and one BatchGetItem for every client's last statement.
    env.operations.reset();
    agency_get(&env, "/agencies/{agencyId}/clients", "agency-northwind").await;
    let mut operations = env.operations.operations();
    operations.sort();
    assert_eq!(operations, ["BatchGetItem", "GetItem", "Query"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_statement_shows_the_decline_and_its_retry_until_none_is_left() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    customers(&env, &stripe, Some(DENTAL)).await;
    assert_eq!(buy(&env.app, DENTAL, json!({"audience": 1})).await.status, 201);
    let cycle = bill_now(&env).await;
    let dental = StatementKind::Client.statement_id(DENTAL, &cycle);
    // One retry a day after the first failure, then none.
    let collector = collector(&env, &stripe, vec![1]);
    let started = SystemTime::now();

    collection::collect(&collector, None, started, None).await.unwrap();
    let statement = &client_statements(&env, DENTAL).await[0];
    assert_eq!((&statement["status"], &statement["paidAt"]), (&json!("payment_failed"), &Value::Null));
    let failed = &statement["collection"];
    assert_eq!(
        (&failed["attempt"], &failed["state"], &failed["reason"]),
        (&json!(1), &json!("failed"), &json!("card_declined")),
        "{statement}"
    );
    let next = instant(&failed["nextAttemptAt"]);
    assert!(next >= started + Duration::from_secs(86_400 - 5) && next <= started + Duration::from_secs(86_400 + 60));
    assert!(instant(&failed["lastAttemptAt"]) <= next);
    // It holds the account, as the clients page and a purchase say.
    let row = client_row(&env, "agency-brightside", DENTAL).await;
    assert_eq!(row["holdStatementId"], dental.as_str());
    assert_eq!(row["lastStatement"]["collection"], *failed);
    assert_problem(&buy(&env.app, DENTAL, json!({"audience": 1})).await, 402, "account_on_hold");

    // The retry declines too: no attempt is left, so no retry is scheduled.
    collection::collect(&collector, None, started + Duration::from_secs(86_400 + 60), None).await.unwrap();
    let statement = &client_statements(&env, DENTAL).await[0];
    let exhausted = &statement["collection"];
    assert_eq!(
        (&statement["status"], &exhausted["attempt"], &exhausted["state"], &exhausted["reason"]),
        (&json!("payment_failed"), &json!(2), &json!("exhausted"), &json!("card_declined")),
        "{statement}"
    );
    assert_eq!(exhausted["nextAttemptAt"], Value::Null);
    assert_eq!(client_row(&env, "agency-brightside", DENTAL).await["lastStatement"]["collection"], *exhausted);
}

#[tokio::test]
async fn the_clients_page_never_shows_a_statement_of_another_agencys_time() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    assert_eq!(buy(&env.app, DENTAL, json!({"audience": 1})).await.status, 201);
    let cycle: CycleEnd = bill_now(&env).await;

    // Another agency's page shows none of northwind's clients' statements.
    let brightside = agency_get(&env, "/agencies/{agencyId}/clients", "agency-brightside").await;
    assert!(!brightside.to_string().contains("acct-northwind"), "{brightside}");
    assert_eq!(
        client_row(&env, "agency-brightside", DENTAL).await["lastStatement"]["statementId"],
        StatementKind::Client.statement_id(DENTAL, &cycle).as_str()
    );

    // Bikes moves to plainsail: its statement billed what it bought under northwind, so plainsail sees none.
    env.app.store.upsert_account(BIKES, "agency-plainsail", None, None).await.unwrap();
    let row = client_row(&env, "agency-plainsail", BIKES).await;
    assert_eq!(row["lastStatement"], Value::Null, "{row}");
    let northwind = agency_get(&env, "/agencies/{agencyId}/clients", "agency-northwind").await;
    assert!(!northwind.to_string().contains(BIKES), "{northwind}");
}

#[tokio::test]
async fn the_dev_seeds_settle_one_statement_per_account_and_hold_the_declining_one() {
    let env = TestEnv::seeded().await;
    let accounts: Vec<String> = [COFFEE, BIKES, DENTAL, BAKERY].map(str::to_owned).to_vec();
    let now = SystemTime::now();
    let seeded = testkit::seed_loader::seed_settled_statements(&env.app.store, &accounts, DENTAL, now).await.unwrap();
    assert_eq!((seeded.paid.len(), seeded.declined.len()), (3, 1), "{seeded:?}");

    for account in [COFFEE, BIKES, BAKERY] {
        let statements = client_statements(&env, account).await;
        assert_eq!(statements.len(), 1, "{account}");
        let paid = &statements[0];
        assert_eq!((&paid["status"], &paid["amountDue"]), (&json!("paid"), &json!("0.00")), "{paid}");
        assert_eq!((&paid["collection"]["state"], &paid["collection"]["attempt"]), (&json!("succeeded"), &json!(1)));
        instant(&paid["paidAt"]);
    }
    let declined = &client_statements(&env, DENTAL).await[0];
    assert_eq!(declined["status"], "payment_failed", "{declined}");
    assert_eq!(
        (&declined["collection"]["state"], &declined["collection"]["reason"]),
        (&json!("failed"), &json!("card_declined"))
    );
    assert!(instant(&declined["collection"]["nextAttemptAt"]) > now);
    // The hold agrees with the statement: the account item's held set names it, and a purchase is refused.
    let row = client_row(&env, "agency-brightside", DENTAL).await;
    assert_eq!(row["holdStatementId"], declined["statementId"]);
    assert_eq!(row["lastStatement"]["status"], "payment_failed");
    let held = buy(&env.app, DENTAL, json!({"audience": 1})).await;
    assert_problem(&held, 402, "account_on_hold");
    assert_eq!(held.body["statementId"], declined["statementId"]);
    assert_eq!(buy(&env.app, COFFEE, json!({"pixel": 1})).await.status, 201);

    // Loading again adds nothing.
    let again = testkit::seed_loader::seed_settled_statements(&env.app.store, &accounts, DENTAL, now).await.unwrap();
    assert_eq!(again, testkit::seed_loader::SettledReport::default());
    assert_eq!(client_statements(&env, COFFEE).await.len(), 1);
}
