//! Warm requests in process: the real handler (handler code + SDK) against a bare SDK call doing the same
//! DynamoDB work, through two clients built the same way (`testkit::client_for`: same timeouts, retries,
//! HTTP stack, each with its own retry partition), against one embedded dynoxide.
//!
//! Inputs (the API Gateway request or the invoke payload, or the transaction items) are built before the clock
//! starts: the runtime parses the event before a handler runs, and the bare side gets its items for free. Only
//! the call is timed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use shared::api::{self, App, Settings};
use shared::consumption::{Consumer, ConsumptionAnswer, ConsumptionSettings, consume_credits};
use shared::domain::PurchaseRecord;
use shared::domain::idempotency::IdempotencyKey;
use shared::domain::ledger::{self, Consumption};
use shared::domain::{self, CreditType, EffectivePricing, Quantities};
use shared::storage::{IdempotencyClaim, Store};
use testkit::{ApiEvent, TestEnv, answer};
use tokio::task::JoinSet;

use crate::stats::Samples;

/// The seeded account the sample events target.
pub const ACCOUNT: &str = "acct-northwind-coffee";

/// What every consumption of the bench spends: one audience credit.
const CONSUMED: (CreditType, u64) = (CreditType::Audience, 1);
/// Credits added before timing, so that no consumption is refused for want of them (a full run spends ~7,000).
const CONSUMPTION_FUNDS: i64 = 1_000_000;

/// The body of events/purchase-credits.json: two lines and an expected total, as the dashboard sends.
fn purchase_body() -> serde_json::Value {
    json!({"quantities": {"audience": 10, "pixel": 5}, "expectedTotal": "300.00"})
}

pub struct Fixture {
    /// The engine and its seeded table; its counted app is used only by [`Fixture::check_call_counts`].
    pub env: TestEnv,
    app: App,
    /// `consume-credits`' state over the same store, as one warm container has it.
    consumer: Consumer,
    bare: Client,
    /// Builds the bare side's transaction items with the Store's own builder; it never sends anything.
    bare_items: Store,
    pricing: EffectivePricing,
    agency_id: String,
    quantities: Quantities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST .../credit-purchases` with `Prefer: return=minimal`: one TransactWriteItems.
    PurchaseMinimal,
    /// The default purchase: the transaction, then the balances read.
    PurchaseDefault,
    /// `GET .../pricing` from the instance cache.
    PricingWarm,
    /// `consume-credits` (direct invoke), one credit: one TransactWriteItems.
    Consumption,
}

impl Scenario {
    pub fn handler_name(self) -> &'static str {
        match self {
            Scenario::PurchaseMinimal => "purchase, `Prefer: return=minimal`",
            Scenario::PurchaseDefault => "purchase, default (with balances)",
            Scenario::PricingWarm => "get-pricing, warm (cache hit)",
            Scenario::Consumption => "consume-credits, warm (1 credit)",
        }
    }

    pub fn bare_name(self) -> &'static str {
        match self {
            Scenario::PurchaseMinimal => "TransactWriteItems",
            Scenario::PurchaseDefault => "TransactWriteItems + GetItem",
            Scenario::PricingWarm => "GetItem (account)",
            Scenario::Consumption => "TransactWriteItems (consumption)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Handler,
    Bare,
}

enum Input {
    Handler(Box<Request>),
    Invoke(Box<LambdaEvent<Value>>),
    Transact { items: Vec<TransactWriteItem>, token: String },
    GetAccount,
}

/// One scenario at one concurrency: both sides' latencies and throughputs.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub scenario: Scenario,
    pub concurrency: usize,
    pub handler: Samples,
    pub bare: Samples,
    pub handler_rps: f64,
    pub bare_rps: f64,
}

impl Fixture {
    pub async fn new() -> Result<Fixture, String> {
        let env = TestEnv::seeded().await;
        let endpoint = env.dynamo.endpoint();
        // A TTL longer than the run: every measured call takes the warm path its row names. (Deployed, the
        // 30 s default adds one pricing refresh per instance every 30 s.)
        let settings = Settings { pricing_cache_ttl: Duration::from_secs(3600), ..Settings::default() };
        let app = App::new(Store::new(testkit::client_for(&endpoint), &env.table), settings);
        let bare = testkit::client_for(&endpoint);
        let bare_items = Store::new(bare.clone(), &env.table);
        let account =
            bare_items.account(ACCOUNT).await.map_err(|e| e.to_string())?.ok_or("the seeded account is missing")?;
        let (default, agency) = bare_items.pricing(&account.agency_id).await.map_err(|e| e.to_string())?;
        let pricing = domain::resolve_pricing(&account.agency_id, &default, agency.as_ref()).map_err(|e| e.0)?;
        let quantities = Quantities::from_pairs([(CreditType::Audience, 10), (CreditType::Pixel, 5)]);
        // Pay Later room for every purchase the bench makes (thousands of 300.00 purchases): the seeded lines
        // (25,000 for the client, 500,000 at cost for its agency) would refuse them after a few dozen, and the
        // bench measures the purchase path, not the refusal.
        let room = rust_decimal::Decimal::from(1_000_000_000_000u64);
        bare_items.set_credit_limit(ACCOUNT, room).await.map_err(|e| e.to_string())?;
        bare_items.set_agency_ceiling(&account.agency_id, room).await.map_err(|e| e.to_string())?;
        let funds = ledger::Deltas::from([(CONSUMED.0, CONSUMPTION_FUNDS)]);
        let at = domain::time::timestamp(SystemTime::now());
        bare_items
            .adjust(ACCOUNT, &funds, "bench: credits to consume", "bench", &uuid::Uuid::now_v7().to_string(), &at)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = Consumer::new(app.store.clone(), ConsumptionSettings::default());
        Ok(Fixture { env, app, consumer, bare, bare_items, pricing, agency_id: account.agency_id, quantities })
    }

    /// Proves each row measures the calls it claims, with the counting client of `TestEnv`.
    pub async fn check_call_counts(&self) -> Result<(), String> {
        let app = &self.env.app;
        let ops = &self.env.operations;
        let expect = |what: &str, status: u16, want: &[&str], got: Vec<String>, answered: u16| {
            if answered != status || got != want {
                Err(format!("{what}: expected {status} with calls {want:?}, got {answered} with {got:?}"))
            } else {
                Ok(())
            }
        };
        let _ = api::get_pricing(app, pricing_request()).await; // the first request of an instance fills the cache
        ops.reset();
        let a = answer(api::get_pricing(app, pricing_request()).await);
        expect("warm get-pricing", 200, &[], ops.operations(), a.status)?;
        ops.reset();
        let a = answer(api::purchase_credits(app, purchase_request(true)).await);
        expect("warm minimal purchase", 201, &["TransactWriteItems"], ops.operations(), a.status)?;
        ops.reset();
        let a = answer(api::purchase_credits(app, purchase_request(false)).await);
        expect("warm default purchase", 201, &["TransactWriteItems", "GetItem"], ops.operations(), a.status)?;
        // A container's first consumption of an account reads it once; the warm ones do not.
        let counted = Consumer::new(app.store.clone(), ConsumptionSettings::default());
        consume_credits(&counted, consumption_event()).await.map_err(|e| format!("cold consumption: {e}"))?;
        ops.reset();
        let consumed = consume_credits(&counted, consumption_event()).await;
        let status =
            if matches!(consumed, Ok(ConsumptionAnswer::Consumed { replayed: false, .. })) { 200 } else { 500 };
        expect("warm consumption", 200, &["TransactWriteItems"], ops.operations(), status)
    }

    fn prepare(&self, scenario: Scenario, side: Side) -> Input {
        match (side, scenario) {
            (Side::Handler, Scenario::PricingWarm) => Input::Handler(Box::new(pricing_request())),
            (Side::Handler, Scenario::PurchaseMinimal) => Input::Handler(Box::new(purchase_request(true))),
            (Side::Handler, Scenario::PurchaseDefault) => Input::Handler(Box::new(purchase_request(false))),
            (Side::Handler, Scenario::Consumption) => Input::Invoke(Box::new(consumption_event())),
            (Side::Bare, Scenario::PricingWarm) => Input::GetAccount,
            (Side::Bare, Scenario::Consumption) => self.bare_consumption(),
            (Side::Bare, _) => self.bare_transaction(),
        }
    }

    /// The items the handler would send for the same body, with a fresh purchase id and idempotency key.
    fn bare_transaction(&self) -> Input {
        let now = SystemTime::now();
        let quote = domain::quote(&self.pricing, &self.quantities).expect("the bench buys whole lines");
        let purchase_id = uuid::Uuid::now_v7().to_string();
        let key = uuid::Uuid::now_v7().to_string();
        let record =
            PurchaseRecord::unbilled(purchase_id.clone(), ACCOUNT, &self.agency_id, now, quote, Some(key.clone()));
        let claim = IdempotencyClaim::new(
            IdempotencyKey::parse(&key).expect("a UUID is a valid key"),
            // Same shape as the handler's SHA-256 hex: 64 hex characters.
            format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple()),
            Some(serde_json::to_string(&api::views::PurchaseView::of(&record)).expect("a purchase view")),
            now,
        );
        let items = self
            .bare_items
            .purchase_transaction_for_bench(&record, &self.pricing, Some(&claim))
            .expect("the purchase transaction builds");
        Input::Transact { items, token: purchase_id }
    }

    /// The items `consume-credits` would send for a fresh consumption id, with its entry id as the token.
    fn bare_consumption(&self) -> Input {
        let consumption = Consumption {
            account_id: ACCOUNT.into(),
            consumption_id: uuid::Uuid::now_v7().to_string(),
            quantities: ledger::Quantities::from([CONSUMED]),
            reason: "audience build".into(),
            reference: Some("bench".into()),
        };
        let entry_id = uuid::Uuid::now_v7().to_string();
        let at = domain::time::timestamp(SystemTime::now());
        let items = self
            .bare_items
            .consumption_transaction_for_bench(&consumption, &self.agency_id, &entry_id, &at)
            .expect("the consumption transaction builds");
        Input::Transact { items, token: entry_id }
    }

    /// The timed part.
    async fn execute(&self, scenario: Scenario, input: Input) -> Result<(), String> {
        match input {
            Input::Handler(request) => {
                let (response, want) = match scenario {
                    Scenario::PricingWarm => (api::get_pricing(&self.app, *request).await, StatusCode::OK),
                    _ => (api::purchase_credits(&self.app, *request).await, StatusCode::CREATED),
                };
                if response.status() == want {
                    Ok(())
                } else {
                    let a = answer(response);
                    Err(format!("{}: handler answered {}: {}", scenario.handler_name(), a.status, a.body))
                }
            }
            Input::Invoke(event) => match consume_credits(&self.consumer, *event).await {
                Ok(ConsumptionAnswer::Consumed { replayed: false, .. }) => Ok(()),
                other => Err(format!("{}: answered {other:?}", scenario.handler_name())),
            },
            Input::Transact { items, token } => {
                self.bare
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .client_request_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        format!("bare TransactWriteItems: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))
                    })?;
                if scenario == Scenario::PurchaseDefault {
                    self.get_account().await?;
                }
                Ok(())
            }
            Input::GetAccount => self.get_account().await,
        }
    }

    /// As `Store::account` reads it: strongly consistent.
    async fn get_account(&self) -> Result<(), String> {
        let output = self
            .bare
            .get_item()
            .table_name(self.bare_items.table_name())
            .key("pk", AttributeValue::S(format!("ACCOUNT#{ACCOUNT}")))
            .key("sk", AttributeValue::S("ACCOUNT".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("bare GetItem: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        output.item.map(|_| ()).ok_or_else(|| "bare GetItem: no account item".to_owned())
    }

    async fn timed(&self, scenario: Scenario, side: Side) -> Result<Duration, String> {
        let input = self.prepare(scenario, side);
        let started = Instant::now();
        self.execute(scenario, input).await?;
        Ok(started.elapsed())
    }
}

fn purchase_request(minimal: bool) -> Request {
    let mut event = ApiEvent::new("POST", "/accounts/{accountId}/credit-purchases", ACCOUNT)
        .as_account(ACCOUNT)
        .header("Idempotency-Key", &uuid::Uuid::now_v7().to_string())
        .json(&purchase_body());
    if minimal {
        event = event.header("Prefer", "return=minimal");
    }
    event.request()
}

/// A direct invoke of `consume-credits` as a platform service sends it, with a fresh consumption id.
fn consumption_event() -> LambdaEvent<Value> {
    let payload = json!({
        "accountId": ACCOUNT,
        "consumptionId": uuid::Uuid::now_v7().to_string(),
        "quantities": {(CONSUMED.0.as_str()): CONSUMED.1},
        "reason": "audience build",
        "reference": "bench",
    });
    LambdaEvent::new(payload, Context::default())
}

fn pricing_request() -> Request {
    ApiEvent::new("GET", "/accounts/{accountId}/pricing", ACCOUNT).as_account(ACCOUNT).request()
}

/// Concurrency 1: handler and bare call alternate in one loop, the order flipping every pair so neither side
/// always runs first. Throughput is requests over the time spent in that side's calls.
pub async fn sequential(fx: &Fixture, scenario: Scenario, warmup: usize, count: usize) -> Result<Comparison, String> {
    for _ in 0..warmup {
        fx.timed(scenario, Side::Handler).await?;
        fx.timed(scenario, Side::Bare).await?;
    }
    let (mut handler, mut bare) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let order = if i.is_multiple_of(2) { [Side::Handler, Side::Bare] } else { [Side::Bare, Side::Handler] };
        for side in order {
            let took = fx.timed(scenario, side).await?;
            match side {
                Side::Handler => handler.push(took),
                Side::Bare => bare.push(took),
            }
        }
    }
    let (handler, bare) = (Samples::new(handler), Samples::new(bare));
    let rps = |s: &Samples| s.len() as f64 / s.total().as_secs_f64();
    Ok(Comparison { scenario, concurrency: 1, handler_rps: rps(&handler), bare_rps: rps(&bare), handler, bare })
}

/// Concurrency > 1: blocks of `block` requests with `concurrency` in flight, alternating handler block and bare
/// block (ABBA order) so drift and noise land on both sides; throughput is requests over the blocks' wall time.
pub async fn concurrent(
    fx: &Arc<Fixture>,
    scenario: Scenario,
    concurrency: usize,
    block: usize,
    count: usize,
) -> Result<Comparison, String> {
    // Warm-up: fills the connection pools to `concurrency` on both clients.
    run_block(fx, scenario, Side::Handler, block, concurrency).await?;
    run_block(fx, scenario, Side::Bare, block, concurrency).await?;
    let (mut handler, mut bare) = (Vec::with_capacity(count), Vec::with_capacity(count));
    let (mut handler_wall, mut bare_wall) = (Duration::ZERO, Duration::ZERO);
    for i in 0..count.div_ceil(block) {
        let size = block.min(count - i * block);
        let order = if i.is_multiple_of(2) { [Side::Handler, Side::Bare] } else { [Side::Bare, Side::Handler] };
        for side in order {
            let (wall, latencies) = run_block(fx, scenario, side, size, concurrency).await?;
            let (total, all) = match side {
                Side::Handler => (&mut handler_wall, &mut handler),
                Side::Bare => (&mut bare_wall, &mut bare),
            };
            *total += wall;
            all.extend(latencies);
        }
    }
    Ok(Comparison {
        scenario,
        concurrency,
        handler_rps: handler.len() as f64 / handler_wall.as_secs_f64(),
        bare_rps: bare.len() as f64 / bare_wall.as_secs_f64(),
        handler: Samples::new(handler),
        bare: Samples::new(bare),
    })
}

async fn run_block(
    fx: &Arc<Fixture>,
    scenario: Scenario,
    side: Side,
    count: usize,
    concurrency: usize,
) -> Result<(Duration, Vec<Duration>), String> {
    // All inputs exist before the clock starts, so building them costs neither side CPU during the block.
    let queue: Arc<Mutex<Vec<Input>>> = Arc::new(Mutex::new((0..count).map(|_| fx.prepare(scenario, side)).collect()));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (fx, queue) = (fx.clone(), queue.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(input) = next else {
                    return Ok::<_, String>(latencies);
                };
                let call = Instant::now();
                fx.execute(scenario, input).await?;
                latencies.push(call.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.map_err(|e| format!("worker: {e}"))??);
    }
    Ok((started.elapsed(), latencies))
}
