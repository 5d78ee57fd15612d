//! Collecting statements through Stripe (issue 24), against the real dynoxide and a real localstripe: Stripe
//! customer ids, the collection run (paid, declined and held, retried and paid), concurrent runs, a crash between
//! Stripe's answer and our write, and the signed webhook.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use shared::api;
use shared::collection::{self, CollectSettings, CollectSummary, Collector};
use shared::domain::billing::{CycleEnd, StatementKind};
use shared::stripe::Secret;
use shared::stripe::signature::sign;
use shared::webhook::{self, WebhookApp};
use testkit::faults::Fault;
use testkit::stripe::{DECLINING_CARD, GOOD_CARD, LocalStripe};
use testkit::{Answer, ApiEvent, BAKERY, BALANCES_ROUTE, BIKES, COFFEE, DENTAL, TestEnv, answer, assert_problem};

pub(super) const AGENCIES: [&str; 3] = ["agency-northwind", "agency-brightside", "agency-plainsail"];
const WEBHOOK_SECRET: &str = "whsec_test_local";

// The pay-later helpers these tests share with the credit line tests.
use super::credit_lines::{bill_now, buy, line};

pub(super) fn collector(env: &TestEnv, stripe: &LocalStripe) -> Collector {
    Collector { store: env.app.store.clone(), stripe: stripe.client(), settings: CollectSettings::default() }
}

pub(super) async fn collect_at(collector: &Collector, now: SystemTime) -> CollectSummary {
    collection::collect(collector, None, now, None).await.unwrap()
}

/// Gives every seeded account and agency a Stripe customer whose default card is `card`, through the one
/// storage function for accounts (and the seed loader's agency write).
pub(super) async fn customers(env: &TestEnv, stripe: &LocalStripe, accounts: &[(&str, &str, &str)]) {
    for (account, agency, card) in accounts {
        let customer = stripe.customer_with_card(account, card).await;
        env.app.store.upsert_account(account, agency, None, Some(&customer)).await.unwrap();
    }
    for agency in AGENCIES {
        let customer = stripe.customer_with_card(agency, GOOD_CARD).await;
        env.app.store.set_agency_stripe_customer(agency, &customer).await.unwrap();
    }
}

pub(super) fn all_good() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (COFFEE, "agency-northwind", GOOD_CARD),
        (BIKES, "agency-northwind", GOOD_CARD),
        (DENTAL, "agency-brightside", GOOD_CARD),
        (BAKERY, "agency-plainsail", GOOD_CARD),
    ]
}

async fn reconcile_clean(env: &TestEnv) {
    let mut ledger = shared::domain::reconcile::Ledger::default();
    env.app.store.read_ledger(&mut ledger, 2).await.unwrap();
    assert!(ledger.drift().is_empty() && ledger.agency_drift().is_empty(), "drift");
}

fn statement_ids(cycle: &CycleEnd, accounts: &[&str], agencies: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = accounts.iter().map(|a| StatementKind::Client.statement_id(a, cycle)).collect();
    ids.extend(agencies.iter().map(|a| StatementKind::Agency.statement_id(a, cycle)));
    ids
}

#[tokio::test]
async fn stripe_customer_ids_are_stored_and_shown_to_nobody() {
    let env = TestEnv::seeded().await;
    let seed = json!({
        "agencies": [{"agencyId": "agency-northwind", "stripeCustomerId": "cus_AgencyNorthwind1",
                      "rates": {"pixel": {"price": "10.00", "cost": "6.00"}}}],
        "accounts": [{"accountId": BIKES, "agencyId": "agency-northwind", "stripeCustomerId": "cus_Bikes1"}],
    });
    env.load_seed_json(&seed).await.unwrap();
    let bikes = StatementKind::Client.statement_id(BIKES, &CycleEnd::at(SystemTime::now()));
    let agency = StatementKind::Agency.statement_id("agency-northwind", &CycleEnd::at(SystemTime::now()));
    let store = &env.app.store;
    let reference = |id: &str| shared::domain::billing::StatementRef::parse(id).unwrap();
    assert_eq!(store.stripe_customer(&reference(&bikes)).await.unwrap().as_deref(), Some("cus_Bikes1"));
    assert_eq!(store.stripe_customer(&reference(&agency)).await.unwrap().as_deref(), Some("cus_AgencyNorthwind1"));
    // Loading again without it keeps it; a malformed id is refused before anything is written.
    env.reload_bundled_seeds().await.unwrap();
    assert_eq!(store.stripe_customer(&reference(&bikes)).await.unwrap().as_deref(), Some("cus_Bikes1"));
    let bad = json!({"accounts": [{"accountId": BIKES, "agencyId": "agency-northwind", "stripeCustomerId": "acct_1"}]});
    assert!(env.load_seed_json(&bad).await.unwrap_err().contains("stripeCustomerId"));

    // No client or agency answer shows it.
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    bill_now(&env).await;
    let admin = |route: &str| ApiEvent::agency("GET", route, "agency-northwind").as_agency_admin("agency-northwind");
    let answers = [
        answer(
            api::get_balances(&env.app, ApiEvent::new("GET", BALANCES_ROUTE, BIKES).as_account(BIKES).request()).await,
        ),
        answer(
            api::history::list_statements(
                &env.app,
                ApiEvent::new("GET", testkit::STATEMENTS_ROUTE, BIKES).as_account(BIKES).request(),
            )
            .await,
        ),
        answer(api::agency::agency_read(&env.app, admin("/agencies/{agencyId}/clients").request()).await),
        answer(api::agency::agency_read(&env.app, admin("/agencies/{agencyId}/statements").request()).await),
        answer(api::agency::agency_read(&env.app, admin("/agencies/{agencyId}/pricing").request()).await),
    ];
    for a in answers {
        assert_eq!(a.status, 200, "{}", a.body);
        let text = a.body.to_string();
        assert!(!text.contains("cus_") && !text.contains("stripeCustomer"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_billed_cycle_is_collected_and_every_line_released_exactly() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    customers(&env, &stripe, &all_good()).await;
    assert_eq!(buy(&env.app, COFFEE, json!({"pixel": 3, "audience": 1})).await.status, 201); // 55.00
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201); // 20.00
    assert_eq!(buy(&env.app, DENTAL, json!({"audience": 2})).await.status, 201); // 55.00
    let cycle = bill_now(&env).await;
    let ids = statement_ids(&cycle, &[COFFEE, BIKES, DENTAL], &["agency-northwind", "agency-brightside"]);
    let mut due = Vec::new();
    for id in &ids {
        let statement = env.app.store.statement(id).await.unwrap().unwrap_or_else(|| panic!("{id}"));
        assert_eq!(statement.status, "pending_payment");
        due.push(statement.amount_due);
    }

    let collector = collector(&env, &stripe);
    let summary = collect_at(&collector, SystemTime::now()).await;
    assert_eq!((summary.payable, summary.succeeded, summary.errors), (5, 5, 0), "{summary:?}");
    for (id, amount) in ids.iter().zip(&due) {
        let statement = env.app.store.statement(id).await.unwrap().unwrap();
        assert_eq!((statement.status.as_str(), statement.amount_paid), ("paid", *amount), "{id}");
    }
    // Each line released by exactly its statement; the agency lines back to their ceilings.
    for account in [COFFEE, BIKES, DENTAL] {
        assert_eq!(line(&env, account).await["outstanding"], "0.00", "{account}");
    }
    for agency in ["agency-northwind", "agency-brightside"] {
        let agency_line = env.app.store.agency_line(agency).await.unwrap().unwrap();
        assert_eq!(agency_line.available, agency_line.limit, "{agency}");
    }
    // One PaymentIntent per statement charged, each for exactly its amount, keyed by its metadata.
    let intents = stripe.payment_intents().await;
    assert_eq!(intents.len(), 5);
    for (id, amount) in ids.iter().zip(&due) {
        let intent = intents.iter().find(|i| i["metadata"]["statementId"] == id.as_str()).unwrap();
        assert_eq!(intent["metadata"]["attempt"], "1");
        assert_eq!(intent["amount"], json!(i64::try_from(amount * rust_decimal::Decimal::ONE_HUNDRED).unwrap()));
        assert_eq!(intent["status"], "succeeded");
    }
    // Nothing left: a second run charges nobody.
    let again = collect_at(&collector, SystemTime::now()).await;
    assert_eq!((again.payable, again.succeeded), (0, 0), "{again:?}");
    assert_eq!(stripe.payment_intents().await.len(), 5);
    reconcile_clean(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_card_holds_the_account_until_a_retry_with_a_good_card_pays() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    let mut accounts = all_good();
    accounts[1].2 = DECLINING_CARD;
    customers(&env, &stripe, &accounts).await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let collector = collector(&env, &stripe);
    let started = SystemTime::now();

    let summary = collect_at(&collector, started).await;
    assert_eq!((summary.failed, summary.succeeded), (1, 1), "{summary:?}"); // bikes declined, the agency paid
    let statement = env.app.store.statement(&bikes).await.unwrap().unwrap();
    assert_eq!(statement.status, "payment_failed");
    let held = buy(&env.app, BIKES, json!({"pixel": 1})).await;
    assert_problem(&held, 402, "account_on_hold");
    assert_eq!(held.body["statementId"], bikes.as_str());

    // Not retried before its dunning delay (3 days), so no new charge.
    let early = collect_at(&collector, started + Duration::from_secs(2 * 86_400)).await;
    assert_eq!((early.failed, early.succeeded, early.not_due), (0, 0, 1), "{early:?}");
    assert_eq!(stripe.payment_intents().await.len(), 2);

    // The client sets a good card; the retry on day 3 pays and lifts the hold.
    let customer = env.app.store.stripe_customer(&shared::domain::billing::StatementRef::parse(&bikes).unwrap()).await;
    stripe.set_default_card(&customer.unwrap().unwrap(), GOOD_CARD).await;
    let retry = collect_at(&collector, started + Duration::from_secs(3 * 86_400 + 60)).await;
    assert_eq!((retry.succeeded, retry.failed), (1, 0), "{retry:?}");
    let statement = env.app.store.statement(&bikes).await.unwrap().unwrap();
    assert_eq!(statement.status, "paid");
    assert_eq!(line(&env, BIKES).await["outstanding"], "0.00");
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    let intents = stripe.payment_intents().await;
    let attempts: Vec<&str> = intents
        .iter()
        .filter(|i| i["metadata"]["statementId"] == bikes.as_str())
        .map(|i| i["metadata"]["attempt"].as_str().unwrap())
        .collect();
    assert_eq!(
        {
            let mut a = attempts.clone();
            a.sort();
            a
        },
        ["1", "2"]
    );
    reconcile_clean(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_runs_make_one_payment_intent_per_attempt() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    let mut accounts = all_good();
    accounts[2].2 = DECLINING_CARD; // one declined attempt too
    customers(&env, &stripe, &accounts).await;
    for account in [COFFEE, BIKES, DENTAL, BAKERY] {
        assert_eq!(buy(&env.app, account, json!({"audience": 1})).await.status, 201, "{account}");
    }
    bill_now(&env).await;
    let collector = std::sync::Arc::new(collector(&env, &stripe));
    let now = SystemTime::now();
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let collector = collector.clone();
            tokio::spawn(async move { collect_at(&collector, now).await })
        })
        .collect();
    let mut total = CollectSummary::default();
    for run in runs {
        let s = run.await.unwrap();
        total.succeeded += s.succeeded;
        total.failed += s.failed;
        total.errors += s.errors;
    }
    // 4 client statements (one declines) + 3 agency statements.
    assert_eq!((total.succeeded, total.failed, total.errors), (6, 1, 0), "{total:?}");
    let intents = stripe.payment_intents().await;
    assert_eq!(intents.len(), 7, "one PaymentIntent per statement's attempt");
    let mut keys: Vec<String> =
        intents.iter().map(|i| format!("{}:{}", i["metadata"]["statementId"], i["metadata"]["attempt"])).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 7);
    reconcile_clean(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_stripes_answer_is_completed_by_the_next_run_without_a_second_charge() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    customers(&env, &stripe, &all_good()).await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let agency = StatementKind::Agency.statement_id("agency-northwind", &cycle);
    let collector = std::sync::Arc::new(Collector {
        settings: CollectSettings { concurrency: 1, ..CollectSettings::default() },
        ..collector(&env, &stripe)
    });
    let now = SystemTime::now();

    // Case 1: the record transaction dies (after the intent id was stored). Case 2: the intent id's write dies
    // too (Stripe charged, we stored nothing of its answer).
    env.faults.inject("TransactWriteItems", Fault::Refused, 1);
    env.faults.fail_after("UpdateItem", 3, Fault::Refused); // the first's claim and intent (its record dies), the second's claim
    let first = collect_at(&collector, now).await;
    env.faults.clear();
    assert_eq!(first.errors, 2, "{first:?}");
    assert_eq!(stripe.payment_intents().await.len(), 2, "each statement charged once");
    for id in [&bikes, &agency] {
        assert_eq!(env.app.store.statement(id).await.unwrap().unwrap().status, "pending_payment", "{id}");
    }

    // A run while the claim's lease holds leaves it alone.
    let during = collect_at(&collector, now + Duration::from_secs(60)).await;
    assert_eq!((during.succeeded, during.not_due), (0, 2), "{during:?}");

    // After the lease, the next run asks Stripe (by the stored id, or by the customer's intents' metadata) and
    // records what it finds: paid, and never a second charge.
    let next = collect_at(&collector, now + Duration::from_secs(16 * 60)).await;
    assert_eq!((next.succeeded, next.errors), (2, 0), "{next:?}");
    assert_eq!(stripe.payment_intents().await.len(), 2);
    for id in [&bikes, &agency] {
        assert_eq!(env.app.store.statement(id).await.unwrap().unwrap().status, "paid", "{id}");
    }
    assert_eq!(line(&env, BIKES).await["outstanding"], "0.00");
    reconcile_clean(&env).await;
}

// ---- webhook ----

pub(super) fn webhook_app(env: &TestEnv) -> WebhookApp {
    WebhookApp { store: env.app.store.clone(), secrets: vec![Secret::new(WEBHOOK_SECRET)] }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// `POST /webhooks/stripe` as API Gateway hands it over, signed at `t` with `secret`.
fn delivery(body: &str, signature: Option<String>, base64: bool) -> lambda_http::Request {
    let mut event = ApiEvent::new("POST", "/webhooks/stripe", "").header("content-type", "application/json");
    if let Some(signature) = signature {
        event = event.header("stripe-signature", &signature);
    }
    let mut json = event.raw_body(body).to_json();
    json["pathParameters"] = json!({});
    if base64 {
        use base64::Engine;
        json["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        json["isBase64Encoded"] = json!(true);
    }
    testkit::request_from_event(&json)
}

pub(super) async fn deliver(app: &WebhookApp, body: &str) -> Answer {
    let signature = sign(&Secret::new(WEBHOOK_SECRET), unix_now(), body.as_bytes());
    answer(webhook::stripe_webhook(app, delivery(body, Some(signature), false)).await)
}

/// An event as Stripe sends it (the body localstripe makes for one of its own events).
pub(super) fn event(kind: &str, intent: Value) -> String {
    json!({"id": format!("evt_{}", fastrand_id()), "object": "event", "type": kind, "created": unix_now(),
           "data": {"object": intent}})
    .to_string()
}

fn fastrand_id() -> String {
    format!("{:x}", SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_completes_a_crashed_charge_once_and_refuses_what_is_not_signed() {
    let (env, stripe) = (TestEnv::seeded().await, LocalStripe::start().await);
    customers(&env, &stripe, &all_good()).await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let collector = collector(&env, &stripe);
    // Stripe charged, our record of it died: the webhook is what records it.
    env.faults.inject("TransactWriteItems", Fault::Refused, 2);
    let first = collect_at(&collector, SystemTime::now()).await;
    env.faults.clear();
    assert_eq!(first.errors, 2, "{first:?}");
    let app = webhook_app(&env);
    // localstripe's own events (its body, as delivered), re-signed with our endpoint secret.
    let events = stripe.events("payment_intent.succeeded").await;
    let bikes_event = events.iter().find(|e| e["data"]["object"]["metadata"]["statementId"] == bikes.as_str()).unwrap();
    let body = serde_json::to_string_pretty(bikes_event).unwrap();
    let t = unix_now();
    let good = sign(&Secret::new(WEBHOOK_SECRET), t, body.as_bytes());

    // Refused, writing nothing: forged, signed with another secret, stale, unsigned, oversize.
    let before = env.snapshot().await;
    let forged = sign(&Secret::new(WEBHOOK_SECRET), t, body.replace("succeeded", "succeedeD").as_bytes());
    let stale = sign(&Secret::new(WEBHOOK_SECRET), t - 301, body.as_bytes());
    let other = sign(&Secret::new("whsec_other"), t, body.as_bytes());
    let big = format!("{body}{}", " ".repeat(64 * 1024));
    let big_signature = sign(&Secret::new(WEBHOOK_SECRET), t, big.as_bytes());
    for (what, body, signature) in [
        ("forged", body.as_str(), Some(forged)),
        ("stale", body.as_str(), Some(stale)),
        ("other secret", body.as_str(), Some(other)),
        ("unsigned", body.as_str(), None),
        ("oversize", big.as_str(), Some(big_signature)),
    ] {
        let a = answer(webhook::stripe_webhook(&app, delivery(body, signature, false)).await);
        assert_problem(&a, 400, "invalid_header");
        assert_eq!(a.body["header"], "Stripe-Signature", "{what}: {}", a.body);
    }
    assert_eq!(env.snapshot().await, before);

    // Delivered (base64, as API Gateway may hand it): recorded; the same delivery again is a replay.
    let a = answer(webhook::stripe_webhook(&app, delivery(&body, Some(good.clone()), true)).await);
    assert_eq!((a.status, a.body["result"].as_str()), (200, Some("recorded")), "{}", a.body);
    let a = answer(webhook::stripe_webhook(&app, delivery(&body, Some(good), false)).await);
    assert_eq!((a.status, a.body["result"].as_str()), (200, Some("replayed")), "{}", a.body);
    assert_eq!(env.app.store.statement(&bikes).await.unwrap().unwrap().status, "paid");
    assert_eq!(line(&env, BIKES).await["outstanding"], "0.00");

    // Out of order: the failure of that intent arriving after its success changes nothing.
    let mut failed = bikes_event["data"]["object"].clone();
    failed["status"] = json!("requires_payment_method");
    let before = env.snapshot().await;
    let a = deliver(&app, &event("payment_intent.payment_failed", failed)).await;
    assert_eq!((a.status, a.body["result"].as_str()), (200, Some("ignored")), "{}", a.body);
    assert_eq!(env.snapshot().await, before);
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);

    // The next collection run finds the attempt recorded (the same reference): no second charge.
    let next = collect_at(&collector, SystemTime::now() + Duration::from_secs(16 * 60)).await;
    assert_eq!(next.errors, 0, "{next:?}");
    assert_eq!(stripe.payment_intents().await.len(), 2);
    reconcile_clean(&env).await;
}

#[tokio::test]
async fn the_webhook_fails_then_pays_and_ignores_what_is_not_ours() {
    let env = TestEnv::seeded().await;
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 2})).await.status, 201);
    let cycle = bill_now(&env).await;
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let app = webhook_app(&env);
    let intent = |status: &str| {
        json!({"id": "pi_webhook1", "object": "payment_intent", "status": status, "amount": 2000, "currency": "usd",
               "metadata": {"statementId": bikes, "attempt": "1"},
               "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}})
    };
    // A failure: payment_failed, held, the reason kept.
    let a = deliver(&app, &event("payment_intent.payment_failed", intent("requires_payment_method"))).await;
    assert_eq!((a.status, a.body["result"].as_str()), (200, Some("marked_failed")), "{}", a.body);
    assert_problem(&buy(&env.app, BIKES, json!({"pixel": 1})).await, 402, "account_on_hold");
    // A success after it pays and lifts the hold.
    let a = deliver(&app, &event("payment_intent.succeeded", intent("succeeded"))).await;
    assert_eq!((a.status, a.body["result"].as_str()), (200, Some("recorded")), "{}", a.body);
    assert_eq!(env.app.store.statement(&bikes).await.unwrap().unwrap().status, "paid");
    assert_eq!(buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);

    // Acknowledged and ignored, writing nothing: another type, a statement we do not know, no metadata, a signed
    // body that is not JSON.
    let before = env.snapshot().await;
    let mut unknown = intent("succeeded");
    unknown["metadata"]["statementId"] = json!(StatementKind::Client.statement_id("acct-nobody", &cycle));
    let mut no_metadata = intent("succeeded");
    no_metadata["metadata"] = json!({});
    for body in [
        event("customer.created", json!({"id": "cus_1", "object": "customer"})),
        event("payment_intent.succeeded", unknown),
        event("payment_intent.succeeded", no_metadata),
        "not json".to_owned(),
    ] {
        let a = deliver(&app, &body).await;
        assert_eq!((a.status, a.body["result"].as_str()), (200, Some("ignored")), "{body}: {}", a.body);
    }
    assert_eq!(env.snapshot().await, before);
}
