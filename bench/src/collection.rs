//! Collection throughput (`--collection`): the real collection run (`shared::collection::collect`) over N payable
//! client statements in the embedded dynoxide with DynamoDB-like latency injected below the SDK
//! (`testkit::faults::Latency::dynamodb`, as the billing bench), charging them through a Stripe-like server inside
//! the bench ([`FakeStripe`]) that answers a customer read after 100 ms and a PaymentIntent creation after 300 ms.
//!
//! Reported per concurrency: wall time, PaymentIntent creations per second (mean and the busiest 1 s window,
//! which is what Stripe's rate limiter counts), customer reads per second, and afterwards the check that every
//! statement was charged exactly once (one intent per statement at the fake server, no idempotency key sent twice)
//! and ended `paid` or `payment_failed` as its card decided.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shared::billing::{self, BillingRun};
use shared::collection::{self, CollectSettings, Collector};
use shared::domain::billing::{CycleEnd, StatementKind};
use shared::storage::keys;
use shared::stripe::{Secret, StripeClient, StripeSettings};
use testkit::faults::Latency;
use testkit::{ApiEvent, TestEnv};

/// How long the fake takes to answer, roughly Stripe's own: a customer read, a PaymentIntent create + confirm.
pub const READ_LATENCY: Duration = Duration::from_millis(100);
pub const CREATE_LATENCY: Duration = Duration::from_millis(300);
/// Stripe's documented rate limits (docs.stripe.com/rate-limits): 100 operations per second in live mode (the
/// older page: 100 reads and 100 writes), 25 in test mode; and 25 requests per second per endpoint unless stated
/// otherwise (`POST /v1/payment_intents` is one endpoint, `GET /v1/customers/{id}` another), in either mode.
pub const LIVE_LIMIT_PER_SECOND: usize = 100;
pub const ENDPOINT_LIMIT_PER_SECOND: usize = 25;
/// One customer in this many has a card that declines.
const DECLINE_EVERY: usize = 50;
const GOOD_CARD: &str = "pm_card_visa";
const DECLINING_CARD: &str = "pm_card_chargeCustomerFail";
/// The seeded account whose billed statement every bench statement is a copy of.
const TEMPLATE_ACCOUNT: &str = testkit::COFFEE;

fn customer_of(i: usize) -> String {
    format!("cus_bench{i:05}")
}

fn declines(customer: &str) -> bool {
    customer.strip_prefix("cus_bench").and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n % DECLINE_EVERY == 7)
}

/// What the fake saw.
#[derive(Default)]
struct Seen {
    reads: Vec<Instant>,
    creates: Vec<Instant>,
    /// By idempotency key: the answer given (a repeated key gets it again, as at Stripe).
    by_key: HashMap<String, (StatusCode, Value)>,
    /// Intents created per `metadata[statementId]`.
    per_statement: HashMap<String, u32>,
    repeated_keys: u64,
}

/// A Stripe-like server speaking just what `shared::stripe::StripeClient` sends for a new attempt.
#[derive(Clone, Default)]
struct FakeStripe {
    seen: Arc<Mutex<Seen>>,
}

async fn customer(State(fake): State<FakeStripe>, Path(id): Path<String>) -> Response {
    fake.seen.lock().expect("lock").reads.push(Instant::now());
    tokio::time::sleep(READ_LATENCY).await;
    let card = if declines(&id) { DECLINING_CARD } else { GOOD_CARD };
    axum::Json(json!({"id": id, "object": "customer", "invoice_settings": {"default_payment_method": card}}))
        .into_response()
}

async fn create_intent(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    {
        let mut seen = fake.seen.lock().expect("lock");
        seen.creates.push(arrived);
        if let Some((status, answer)) = seen.by_key.get(&key).cloned() {
            seen.repeated_keys += 1;
            return (status, axum::Json(answer)).into_response();
        }
    }
    tokio::time::sleep(CREATE_LATENCY).await;
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let statement_id = field("metadata[statementId]");
    let id = format!("pi_bench_{}", uuid::Uuid::now_v7().simple());
    let (status, answer) = if field("payment_method") == DECLINING_CARD {
        let error = json!({"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                           "message": "Your card was declined.",
                           "payment_intent": {"id": id, "status": "requires_payment_method"}});
        (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
    } else {
        let intent = json!({"id": id, "object": "payment_intent", "status": "succeeded",
                            "amount": field("amount").parse::<i64>().unwrap_or(0), "currency": field("currency"),
                            "customer": field("customer"),
                            "metadata": {"statementId": statement_id, "attempt": field("metadata[attempt]")}});
        (StatusCode::OK, intent)
    };
    let mut seen = fake.seen.lock().expect("lock");
    *seen.per_statement.entry(statement_id).or_default() += 1;
    seen.by_key.insert(key, (status, answer.clone()));
    (status, axum::Json(answer)).into_response()
}

impl FakeStripe {
    /// Serves on 127.0.0.1; returns its base URL (what `STRIPE_API_BASE` would be).
    async fn start(&self) -> Result<(String, tokio::task::JoinHandle<()>), String> {
        let app = Router::new()
            .route("/v1/customers/{id}", get(customer))
            .route("/v1/payment_intents", post(create_intent))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let base = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((base, task))
    }
}

/// Mean and busiest-second rate of a set of request arrivals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub mean_per_second: f64,
    /// The most arrivals within any 1 s window.
    pub peak_per_second: usize,
}

fn rate(times: &mut [Instant]) -> Rate {
    times.sort();
    let (Some(first), Some(last)) = (times.first(), times.last()) else { return Rate::default() };
    let span = last.duration_since(*first).as_secs_f64().max(1.0);
    let mut peak = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    Rate { mean_per_second: times.len() as f64 / span, peak_per_second: peak }
}

/// One measured run.
pub struct CollectionRow {
    pub concurrency: usize,
    pub statements: usize,
    pub elapsed: Duration,
    pub succeeded: u64,
    pub failed: u64,
    pub creates: Rate,
    pub reads: Rate,
    /// Both endpoints together (what the global limit counts).
    pub all: Rate,
}

impl CollectionRow {
    /// The largest concurrency whose busiest second stays within `limit`, assuming the rate grows in proportion
    /// to the concurrency (it does while Stripe's latency, not our side, bounds each statement): per endpoint
    /// (the busier of the two) or, `global`, both together.
    pub fn concurrency_for(&self, limit: usize, global: bool) -> usize {
        let peak = if global {
            self.all.peak_per_second
        } else {
            self.creates.peak_per_second.max(self.reads.peak_per_second)
        };
        ((limit as f64 * self.concurrency as f64 / peak.max(1) as f64).floor() as usize).max(1)
    }
}

fn replace_in(value: &AttributeValue, from: &str, to: &str) -> AttributeValue {
    match value {
        AttributeValue::S(s) => AttributeValue::S(s.replace(from, to)),
        AttributeValue::Ss(set) => AttributeValue::Ss(set.iter().map(|s| s.replace(from, to)).collect()),
        AttributeValue::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), replace_in(v, from, to))).collect())
        }
        AttributeValue::L(list) => AttributeValue::L(list.iter().map(|v| replace_in(v, from, to)).collect()),
        other => other.clone(),
    }
}

/// A fresh table with `statements` payable client statements, each on its own account with a Stripe customer.
/// One real purchase is billed by the real billing run; its account item and its payable statement are then
/// copied under other account ids (BatchWriteItem, no latency), so every copy has exactly the shape billing and
/// `finish_cycle` give a statement (status, amount due, the `UNPAID` index keys) and its account a line to
/// release. The template's own statement and its agency's statement have no Stripe customer (skipped).
async fn fill(statements: usize) -> Result<(TestEnv, CycleEnd), String> {
    let env = TestEnv::seeded().await;
    let purchase = ApiEvent::purchase(TEMPLATE_ACCOUNT, &json!({"quantities": {"pixel": 3, "audience": 1}}));
    let bought = testkit::answer(shared::api::purchase_credits(&env.app, purchase.request()).await);
    if bought.status != 201 {
        return Err(format!("template purchase: {} {}", bought.status, bought.body));
    }
    let cycle = CycleEnd::at(SystemTime::now() + Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(10)).await;
    billing::run_billing(&env.app.store, &BillingRun::new(cycle.clone())).await.map_err(|e| e.to_string())?;
    let get = |pk: String, sk: String| {
        let (client, table) = (env.client.clone(), env.table.clone());
        async move {
            client
                .get_item()
                .table_name(table)
                .set_key(Some(keys::key(pk, &sk)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| format!("GetItem: {e:?}"))?
                .item
                .ok_or_else(|| "template item missing".to_owned())
        }
    };
    let account = get(keys::account(TEMPLATE_ACCOUNT), keys::ACCOUNT_SK.to_owned()).await?;
    let statement =
        get(keys::statement_pk(StatementKind::Client, TEMPLATE_ACCOUNT), keys::statement_sk(cycle.as_str())).await?;
    if statement.get("status").and_then(|s| s.as_s().ok()).map(String::as_str) != Some("pending_payment") {
        return Err(format!("the template statement is not payable: {statement:?}"));
    }
    let mut batch = Vec::with_capacity(25);
    for i in 0..statements {
        let id = format!("acct-bench-{i:05}");
        let copy = |item: &HashMap<String, AttributeValue>| -> HashMap<String, AttributeValue> {
            item.iter().map(|(k, v)| (k.clone(), replace_in(v, TEMPLATE_ACCOUNT, &id))).collect()
        };
        let mut account_copy = copy(&account);
        account_copy.insert("stripeCustomerId".to_owned(), AttributeValue::S(customer_of(i)));
        for item in [account_copy, copy(&statement)] {
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| e.to_string())?;
            batch.push(WriteRequest::builder().put_request(put).build());
        }
        if batch.len() >= 24 || i + 1 == statements {
            let mut requests = std::mem::take(&mut batch);
            while !requests.is_empty() {
                let out = env
                    .client
                    .batch_write_item()
                    .request_items(&env.table, requests)
                    .send()
                    .await
                    .map_err(|e| format!("BatchWriteItem: {e:?}"))?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&env.table)).unwrap_or_default();
            }
        }
    }
    Ok((env, cycle))
}

/// Collects `statements` statements once per concurrency, each on a fresh table, with DynamoDB-like latency.
pub async fn measure(statements: usize, concurrencies: &[usize]) -> Result<Vec<CollectionRow>, String> {
    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let setup_started = Instant::now();
        let (env, cycle) = fill(statements).await?;
        let setup = setup_started.elapsed();
        let fake = FakeStripe::default();
        let (base_url, server) = fake.start().await?;
        let collector = Collector {
            store: env.app.store.clone(),
            stripe: StripeClient::new(StripeSettings {
                base_url,
                secret_key: Secret::new("sk_test_bench"),
                timeout: Duration::from_secs(10),
            }),
            settings: CollectSettings { concurrency, ..CollectSettings::default() },
        };
        env.faults.set_latency(Some(Latency::dynamodb()));
        let started = Instant::now();
        let summary =
            collection::collect(&collector, Some(&cycle), SystemTime::now(), None).await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        env.faults.set_latency(None);
        server.abort();

        let declining = (0..statements).filter(|&i| declines(&customer_of(i))).count() as u64;
        let expected_ok = statements as u64 - declining;
        if summary.succeeded != expected_ok
            || summary.failed != declining
            || summary.errors != 0
            || summary.in_flight != 0
            || summary.no_customer != 2
        {
            return Err(format!(
                "collection summary: expected {expected_ok} succeeded, {declining} failed, 2 without a customer: \
                 {summary:?}"
            ));
        }
        let (mut creates, mut reads, per_statement, repeated) = {
            let mut seen = fake.seen.lock().expect("lock");
            (
                std::mem::take(&mut seen.creates),
                std::mem::take(&mut seen.reads),
                std::mem::take(&mut seen.per_statement),
                seen.repeated_keys,
            )
        };
        let charged_twice: Vec<_> = per_statement.iter().filter(|(_, n)| **n != 1).collect();
        if per_statement.len() != statements || !charged_twice.is_empty() || repeated != 0 {
            return Err(format!(
                "{} statements have intents (expected {statements}); charged more than once: {charged_twice:?}; \
                 idempotency keys sent again: {repeated}",
                per_statement.len()
            ));
        }
        check_statuses(&env, &cycle, statements).await?;
        let mut all: Vec<Instant> = creates.iter().chain(&reads).copied().collect();
        let row = CollectionRow {
            concurrency,
            statements,
            elapsed,
            succeeded: summary.succeeded,
            failed: summary.failed,
            creates: rate(&mut creates),
            reads: rate(&mut reads),
            all: rate(&mut all),
        };
        println!(
            "collection, c={concurrency}: {statements} statements in {:.1?} ({} paid, {} declined; setup {:.1?}); \
             PaymentIntent creations {:.1}/s mean, {}/s peak (1 s window); customer reads {:.1}/s mean, {}/s peak; \
             both {}/s peak; every statement charged exactly once; {ENDPOINT_LIMIT_PER_SECOND}/s per endpoint \
             fits c ≤ {}, {LIVE_LIMIT_PER_SECOND}/s global fits c ≤ {}",
            elapsed,
            row.succeeded,
            row.failed,
            setup,
            row.creates.mean_per_second,
            row.creates.peak_per_second,
            row.reads.mean_per_second,
            row.reads.peak_per_second,
            row.all.peak_per_second,
            row.concurrency_for(ENDPOINT_LIMIT_PER_SECOND, false),
            row.concurrency_for(LIVE_LIMIT_PER_SECOND, true),
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Every statement is `paid` (good card) or `payment_failed` (declining card), read back from the table; the
/// unpaid index holds exactly the declined ones (and the two without a customer).
async fn check_statuses(env: &TestEnv, cycle: &CycleEnd, statements: usize) -> Result<(), String> {
    let store = &env.app.store;
    let mut wrong = Vec::new();
    for i in 0..statements {
        let id = StatementKind::Client.statement_id(&format!("acct-bench-{i:05}"), cycle);
        let status = store.statement(&id).await.map_err(|e| e.to_string())?.map(|s| s.status);
        let expected = if declines(&customer_of(i)) { "payment_failed" } else { "paid" };
        if status.as_deref() != Some(expected) {
            wrong.push(format!("{id}: {status:?}, expected {expected}"));
        }
    }
    let still_payable = store.payable_statements().await.map_err(|e| e.to_string())?.len();
    let declining = (0..statements).filter(|&i| declines(&customer_of(i))).count();
    if !wrong.is_empty() || still_payable != declining + 2 {
        return Err(format!(
            "after collection: {} statements in the wrong state ({:?}...); {still_payable} still payable, expected \
             {} ({} and the agency's)",
            wrong.len(),
            wrong.iter().take(3).collect::<Vec<_>>(),
            declining + 2,
            keys::UNPAID_PARTITION
        ));
    }
    Ok(())
}
