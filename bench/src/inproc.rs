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
use shared::domain::rules::{ConsumptionRules, TopupRule};
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

/// Accounts of the seeded account's agency, made for the rules scenarios: each side of a comparison has its own
/// account and its own `Consumer`, so a transaction one side commits never leaves the other's remembered facts
/// stale (which would cost it a re-plan). Each pair has the same rules, line and balance.
const RULES_FAR_HANDLER: &str = "acct-bench-rules-far-handler";
const RULES_FAR_BARE: &str = "acct-bench-rules-far-bare";
const TOPUP_HANDLER: &str = "acct-bench-topup-handler";
const TOPUP_BARE: &str = "acct-bench-topup-bare";

/// Far from the rules: an alert at 100 and a top-up below 50, on a balance of [`CONSUMPTION_FUNDS`] that the
/// run never brings near them (the common warm case).
fn rules_far_off() -> ConsumptionRules {
    ConsumptionRules {
        alert_thresholds: [(CONSUMED.0, 100)].into(),
        topups: [(CONSUMED.0, TopupRule { below: 50, buy: 1_000 })].into(),
        version: 0,
    }
}

/// Consumptions in flight in the check that the c=32 rules row never re-plans.
const CONCURRENT_CHECK: usize = 32;

/// Credits on the top-up accounts: always below their rule, which buys back what each consumption takes.
const TOPUP_FUNDS: i64 = 1_000;

/// Top up every time: `below` above the balance, `buy` what a consumption takes, so each consumption of one
/// credit buys one (an unbilled purchase at the agency's audience price) and the balance stays put.
fn topup_every_time() -> ConsumptionRules {
    ConsumptionRules {
        alert_thresholds: Default::default(),
        topups: [(CONSUMED.0, TopupRule { below: 100_000, buy: CONSUMED.1 })].into(),
        version: 0,
    }
}

/// The daily cap is bounded 0–100 as `AUTO_TOPUP_DAILY_CAP`; the struct is not, and a run tops up thousands of
/// times in a day.
fn topup_settings() -> ConsumptionSettings {
    ConsumptionSettings { auto_topup_daily_cap: u32::MAX }
}

/// One rules scenario: the handler's account and container state, and the bare side's own.
struct RuledPair {
    handler_account: &'static str,
    handler: Consumer,
    bare_account: &'static str,
    /// Plans the bare side's transactions (`Consumer::next_transaction_for_bench`) from its own remembered facts.
    bare: Consumer,
}

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
    rules_far: RuledPair,
    topup: RuledPair,
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
    /// The same on an account with an alert threshold and a top-up rule it never comes near: one TransactWriteItems.
    ConsumptionRulesFar,
    /// The same on an account whose rule buys one credit with every consumption: one TransactWriteItems that also
    /// makes the purchase.
    ConsumptionTopup,
}

impl Scenario {
    pub fn handler_name(self) -> &'static str {
        match self {
            Scenario::PurchaseMinimal => "purchase, `Prefer: return=minimal`",
            Scenario::PurchaseDefault => "purchase, default (with balances)",
            Scenario::PricingWarm => "get-pricing, warm (cache hit)",
            Scenario::Consumption => "consume-credits, warm (1 credit)",
            Scenario::ConsumptionRulesFar => "consume-credits, warm, rules far off (1 credit)",
            Scenario::ConsumptionTopup => "consume-credits, warm, auto top-up each time (1 credit, buys 1)",
        }
    }

    pub fn bare_name(self) -> &'static str {
        match self {
            Scenario::PurchaseMinimal => "TransactWriteItems",
            Scenario::PurchaseDefault => "TransactWriteItems + GetItem",
            Scenario::PricingWarm => "GetItem (account)",
            Scenario::Consumption => "TransactWriteItems (consumption)",
            Scenario::ConsumptionRulesFar => "TransactWriteItems (consumption, rules far off)",
            Scenario::ConsumptionTopup => "TransactWriteItems (consumption + top-up)",
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
        // Before the lines below: loading accounts (re)sets their agency's line to the loader's default.
        let agency_id = "agency-northwind";
        let accounts: Vec<_> = [RULES_FAR_HANDLER, RULES_FAR_BARE, TOPUP_HANDLER, TOPUP_BARE]
            .map(|id| json!({"accountId": id, "agencyId": agency_id}))
            .into();
        env.load_seed_json(&json!({ "accounts": accounts })).await?;
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
        if account.agency_id != agency_id {
            return Err(format!("{ACCOUNT} is no longer of {agency_id}"));
        }
        let at = domain::time::timestamp(SystemTime::now());
        for (id, funds, rules) in [
            (ACCOUNT, CONSUMPTION_FUNDS, None),
            (RULES_FAR_HANDLER, CONSUMPTION_FUNDS, Some(rules_far_off())),
            (RULES_FAR_BARE, CONSUMPTION_FUNDS, Some(rules_far_off())),
            (TOPUP_HANDLER, TOPUP_FUNDS, Some(topup_every_time())),
            (TOPUP_BARE, TOPUP_FUNDS, Some(topup_every_time())),
        ] {
            let funds = ledger::Deltas::from([(CONSUMED.0, funds)]);
            let entry = uuid::Uuid::now_v7().to_string();
            bare_items
                .adjust(id, &funds, "bench: credits to consume", "bench", &entry, &at)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(rules) = rules {
                // Room on the line for every top-up of the run.
                bare_items.set_credit_limit(id, room).await.map_err(|e| e.to_string())?;
                bare_items.set_consumption_rules_for_test(id, &rules).await.map_err(|e| e.to_string())?;
            }
        }
        let consumer = Consumer::new(app.store.clone(), ConsumptionSettings::default());
        let rules_far = RuledPair {
            handler_account: RULES_FAR_HANDLER,
            handler: Consumer::new(app.store.clone(), ConsumptionSettings::default()),
            bare_account: RULES_FAR_BARE,
            bare: Consumer::new(bare_items.clone(), ConsumptionSettings::default()),
        };
        let topup = RuledPair {
            handler_account: TOPUP_HANDLER,
            handler: Consumer::new(app.store.clone(), topup_settings()),
            bare_account: TOPUP_BARE,
            bare: Consumer::new(bare_items.clone(), topup_settings()),
        };
        Ok(Fixture {
            env,
            app,
            consumer,
            rules_far,
            topup,
            bare,
            bare_items,
            pricing,
            agency_id: account.agency_id,
            quantities,
        })
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
        consume_credits(&counted, consumption_event(ACCOUNT)).await.map_err(|e| format!("cold consumption: {e}"))?;
        ops.reset();
        let consumed = consume_credits(&counted, consumption_event(ACCOUNT)).await;
        let status =
            if matches!(consumed, Ok(ConsumptionAnswer::Consumed { replayed: false, .. })) { 200 } else { 500 };
        expect("warm consumption", 200, &["TransactWriteItems"], ops.operations(), status)?;
        // With rules the consumptions never come near: still one call warm.
        let counted = Consumer::new(app.store.clone(), ConsumptionSettings::default());
        consume_status(&counted, RULES_FAR_HANDLER).await?;
        ops.reset();
        let status = consume_status(&counted, RULES_FAR_HANDLER).await?;
        expect("warm consumption, rules far off", 200, &["TransactWriteItems"], ops.operations(), status)?;
        // Topping up every time: a container's first consumption also reads the prices; the warm ones buy inside
        // their one transaction.
        let counted = Consumer::new(app.store.clone(), topup_settings());
        ops.reset();
        let status = consume_status(&counted, TOPUP_HANDLER).await?;
        let cold = ["GetItem", "BatchGetItem", "TransactWriteItems"];
        expect("cold top-up consumption", 200, &cold, ops.operations(), status)?;
        ops.reset();
        let consumed = consume_credits(&counted, consumption_event(TOPUP_HANDLER)).await;
        let topped_up = matches!(&consumed, Ok(ConsumptionAnswer::Consumed { replayed: false, receipt })
            if receipt.effects.topup.is_some());
        let status = if topped_up { 200 } else { 500 };
        expect("warm top-up consumption", 200, &["TransactWriteItems"], ops.operations(), status)?;
        // The c=32 row of rules far off holds on one account: as many in flight as there, no re-plan (each range
        // condition holds whatever order they commit in), so one transaction each.
        let counted = Consumer::new(app.store.clone(), ConsumptionSettings::default());
        consume_status(&counted, RULES_FAR_HANDLER).await?;
        ops.reset();
        let mut flight = JoinSet::new();
        for _ in 0..CONCURRENT_CHECK {
            let counted = counted.clone();
            flight.spawn(async move { consume_status(&counted, RULES_FAR_HANDLER).await });
        }
        while let Some(done) = flight.join_next().await {
            done.map_err(|e| format!("concurrent consumption: {e}"))??;
        }
        let want = vec!["TransactWriteItems"; CONCURRENT_CHECK];
        expect("32 concurrent warm consumptions, rules far off", 200, &want, ops.operations(), 200)
    }

    async fn prepare(&self, scenario: Scenario, side: Side) -> Result<Input, String> {
        Ok(match (side, scenario) {
            (Side::Handler, Scenario::PricingWarm) => Input::Handler(Box::new(pricing_request())),
            (Side::Handler, Scenario::PurchaseMinimal) => Input::Handler(Box::new(purchase_request(true))),
            (Side::Handler, Scenario::PurchaseDefault) => Input::Handler(Box::new(purchase_request(false))),
            (Side::Handler, Scenario::Consumption) => Input::Invoke(Box::new(consumption_event(ACCOUNT))),
            (Side::Handler, Scenario::ConsumptionRulesFar | Scenario::ConsumptionTopup) => {
                Input::Invoke(Box::new(consumption_event(self.ruled(scenario).handler_account)))
            }
            (Side::Bare, Scenario::PricingWarm) => Input::GetAccount,
            (Side::Bare, Scenario::Consumption) => self.bare_consumption(),
            (Side::Bare, Scenario::ConsumptionRulesFar | Scenario::ConsumptionTopup) => {
                self.bare_ruled_consumption(self.ruled(scenario)).await?
            }
            (Side::Bare, _) => self.bare_transaction(),
        })
    }

    /// The account pair of a rules scenario.
    fn ruled(&self, scenario: Scenario) -> &RuledPair {
        if scenario == Scenario::ConsumptionTopup { &self.topup } else { &self.rules_far }
    }

    /// The consumer whose container state the handler side of `scenario` runs on.
    fn handler_consumer(&self, scenario: Scenario) -> &Consumer {
        match scenario {
            Scenario::ConsumptionRulesFar | Scenario::ConsumptionTopup => &self.ruled(scenario).handler,
            _ => &self.consumer,
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
        let consumption = bench_consumption(ACCOUNT);
        let entry_id = uuid::Uuid::now_v7().to_string();
        let at = domain::time::timestamp(SystemTime::now());
        let items = self
            .bare_items
            .consumption_transaction_for_bench(&consumption, &self.agency_id, &entry_id, &at)
            .expect("the consumption transaction builds");
        Input::Transact { items, token: entry_id }
    }

    /// The items a warm `consume-credits` would send on the bare account of the pair, planned from the bare
    /// side's own remembered facts and prices (with the top-up purchase when the rule asks for one).
    async fn bare_ruled_consumption(&self, pair: &RuledPair) -> Result<Input, String> {
        let consumption = bench_consumption(pair.bare_account);
        let entry_id = uuid::Uuid::now_v7().to_string();
        let items = pair
            .bare
            .next_transaction_for_bench(&consumption, &entry_id, SystemTime::now())
            .await
            .map_err(|e| format!("planning the bare consumption: {e}"))?;
        Ok(Input::Transact { items, token: entry_id })
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
            Input::Invoke(event) => match consume_credits(self.handler_consumer(scenario), *event).await {
                // The top-up row must buy each time, or it measures something else.
                Ok(ConsumptionAnswer::Consumed { replayed: false, receipt })
                    if scenario != Scenario::ConsumptionTopup || receipt.effects.topup.is_some() =>
                {
                    Ok(())
                }
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
        let input = self.prepare(scenario, side).await?;
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

/// One consumption as the bare side's planner takes it: the same fields as [`consumption_event`].
fn bench_consumption(account_id: &str) -> Consumption {
    Consumption {
        account_id: account_id.into(),
        consumption_id: uuid::Uuid::now_v7().to_string(),
        quantities: ledger::Quantities::from([CONSUMED]),
        reason: "audience build".into(),
        reference: Some("bench".into()),
    }
}

/// One consumption through `consume-credits`, as the status a check compares (200: consumed, not replayed).
async fn consume_status(consumer: &Consumer, account_id: &str) -> Result<u16, String> {
    match consume_credits(consumer, consumption_event(account_id)).await {
        Ok(ConsumptionAnswer::Consumed { replayed: false, .. }) => Ok(200),
        Ok(other) => Err(format!("consumption on {account_id}: answered {other:?}")),
        Err(e) => Err(format!("consumption on {account_id}: {e}")),
    }
}

/// A direct invoke of `consume-credits` as a platform service sends it, with a fresh consumption id.
fn consumption_event(account_id: &str) -> LambdaEvent<Value> {
    let payload = json!({
        "accountId": account_id,
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
    let mut inputs = Vec::with_capacity(count);
    for _ in 0..count {
        inputs.push(fx.prepare(scenario, side).await?);
    }
    let queue: Arc<Mutex<Vec<Input>>> = Arc::new(Mutex::new(inputs));
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
