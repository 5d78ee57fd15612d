//! `make bench`: figures for issue 6, printed and written to bench/RESULTS.md. Not a test: a missed target is
//! reported (exit 0); only a bench that could not measure exits non-zero.
//!
//! 1. Warm requests in process against an embedded dynoxide: handler vs a bare SDK call doing the same DynamoDB
//!    work, interleaved, at concurrency 1 and 32.
//! 2. One warm purchase-credits process fed a sustained stream of invocations: peak RSS.
//! 3. Cold starts of the release bootstraps under a mock Lambda Runtime API, against the echo binary.
//! 4. arm64 release binary sizes.
//! 5. Billing throughput with DynamoDB-like latency injected below the SDK, at concurrency 1 and the default.
//! 6. Collection of 10,000 statements through a Stripe-like server (300 ms per PaymentIntent) with the same
//!    DynamoDB latency, at the default `COLLECT_CONCURRENCY` and the largest: time and Stripe calls per second.
//!
//! Options: `--quick` (small counts, writes nothing unless `--out` is given), `--bin-dir DIR` (host binaries,
//! default target/release), `--out FILE`, `--stale-arm64` (lists binaries whose arm64 bootstrap needs a build),
//! `--billing` (only the billing throughput, printed, nothing written; needs no function binaries),
//! `--billing-purchases N` (purchases per billing run; default 100,000, 5,000 with `--quick`),
//! `--billing-concurrency 1,16` (the concurrencies measured; default 1 and the default concurrency),
//! `--consumption` (only the warm consumptions vs the bare TransactWriteItems each sends: without rules and with
//! rules far off at c=1 and 32, topping up every time at c=1; printed with their targets, nothing written; needs
//! no function binaries),
//! `--cold-start` (only the cold starts, with the bare calls their first-answer target needs; printed, nothing
//! written), `--cold-env NAME=VALUE` (repeatable: set on every cold-started process, to compare settings),
//! `--cold-start-stripe` (only the cold starts of collect-payments and stripe-webhook against the echo floor;
//! printed, nothing written), `--collection` (only the collection run, printed, nothing written; needs no
//! function binaries), `--collection-statements N` (default 10,000, 1,000 with `--quick`),
//! `--collection-concurrency 8,32` (default: the default concurrency and 32).

mod agency_clients;
mod artifacts;
mod billing;
mod collection;
mod inproc;
mod priority;
mod process;
mod report;
mod runtime_api;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use inproc::{Fixture, Scenario};
use process::{Engine, Expect, Function, event_bytes};
use report::{ColdRow, Machine, Results, SizeRow};

/// The consumption rows at c=1, and those also measured at c=32: the top-up row is sequential only (every
/// consumption moves the day's top-up count its next one is conditioned on, so concurrent ones on one account
/// re-plan by design).
const CONSUMPTION_SEQUENTIAL: [Scenario; 3] =
    [Scenario::Consumption, Scenario::ConsumptionRulesFar, Scenario::ConsumptionTopup];
const CONSUMPTION_CONCURRENT: [Scenario; 2] = [Scenario::Consumption, Scenario::ConsumptionRulesFar];

/// The functions benchmarked (and whose arm64 size is a target), then the floor they are compared with.
const FUNCTIONS: [&str; 2] = ["purchase-credits", "get-pricing"];
const ECHO: &str = "echo-lambda";
/// The system CA bundle (Debian's path), for the diagnostic cold-start variant.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

struct Plan {
    warmup: usize,
    sequential: usize,
    concurrency: usize,
    concurrent: usize,
    block: usize,
    stream: usize,
    cold_runs: usize,
}

const FULL: Plan =
    Plan { warmup: 100, sequential: 1000, concurrency: 32, concurrent: 2000, block: 250, stream: 2000, cold_runs: 20 };
const QUICK: Plan =
    Plan { warmup: 10, sequential: 100, concurrency: 32, concurrent: 256, block: 64, stream: 100, cold_runs: 3 };

struct Args {
    quick: bool,
    stale_arm64: bool,
    bin_dir: PathBuf,
    out: Option<PathBuf>,
    billing_only: bool,
    consumption_only: bool,
    agency_clients_only: bool,
    billing_purchases: Option<usize>,
    billing_concurrencies: Option<Vec<usize>>,
    cold_only: bool,
    cold_stripe_only: bool,
    collection_only: bool,
    collection_statements: Option<usize>,
    collection_concurrencies: Option<Vec<usize>>,
    cold_env: Vec<(&'static str, String)>,
}

/// `COLLECT_CONCURRENCY`'s largest accepted value (`shared::collection::CollectSettings::from_env`).
const COLLECT_CONCURRENCY_MAX: usize = 32;

/// The billing book: purchases spread over this many accounts and agencies.
const BILLING_ACCOUNTS: usize = 1_000;
const BILLING_AGENCIES: usize = 20;

fn parse_args(root: &std::path::Path) -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        stale_arm64: false,
        bin_dir: root.join("target/release"),
        out: None,
        billing_only: false,
        consumption_only: false,
        agency_clients_only: false,
        billing_purchases: None,
        billing_concurrencies: None,
        cold_only: false,
        cold_stripe_only: false,
        collection_only: false,
        collection_statements: None,
        collection_concurrencies: None,
        cold_env: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--stale-arm64" => args.stale_arm64 = true,
            "--bin-dir" => args.bin_dir = it.next().ok_or("--bin-dir needs a directory")?.into(),
            "--out" => args.out = Some(it.next().ok_or("--out needs a file")?.into()),
            "--billing" => args.billing_only = true,
            "--consumption" => args.consumption_only = true,
            "--agency-clients" => args.agency_clients_only = true,
            "--cold-start" => args.cold_only = true,
            "--cold-start-stripe" => args.cold_stripe_only = true,
            "--collection" => args.collection_only = true,
            "--collection-statements" => {
                let n = it.next().ok_or("--collection-statements needs a number")?;
                args.collection_statements =
                    Some(n.parse().map_err(|_| format!("--collection-statements {n}: not a number"))?);
            }
            "--collection-concurrency" => {
                let list = it.next().ok_or("--collection-concurrency needs a list like 8,32")?;
                let parsed: Result<Vec<usize>, _> = list.split(',').map(str::parse).collect();
                args.collection_concurrencies = Some(parsed.map_err(|_| format!("--collection-concurrency {list}"))?);
            }
            "--cold-env" => {
                let pair = it.next().ok_or("--cold-env needs NAME=VALUE")?;
                let (name, value) = pair.split_once('=').ok_or(format!("--cold-env {pair}: expected NAME=VALUE"))?;
                // Leaked once per argument: `Function` holds static names.
                args.cold_env.push((Box::leak(name.to_owned().into_boxed_str()), value.to_owned()));
            }
            "--billing-concurrency" => {
                let list = it.next().ok_or("--billing-concurrency needs a list like 1,16")?;
                let parsed: Result<Vec<usize>, _> = list.split(',').map(str::parse).collect();
                args.billing_concurrencies = Some(parsed.map_err(|_| format!("--billing-concurrency {list}"))?);
            }
            "--billing-purchases" => {
                let n = it.next().ok_or("--billing-purchases needs a number")?;
                args.billing_purchases = Some(n.parse().map_err(|_| format!("--billing-purchases {n}: not a number"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.out.is_none()
        && !args.quick
        && !args.billing_only
        && !args.consumption_only
        && !args.agency_clients_only
        && !args.cold_only
        && !args.cold_stripe_only
        && !args.collection_only
    {
        args.out = Some(root.join("bench/RESULTS.md"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The functions' log setup (`shared::runtime::start`: JSON lines, level info) writing to a sink: the
/// handler pays for formatting its log lines as in Lambda, and the bench's output stays readable.
fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(std::io::sink)
        .init();
}

fn phase(text: &str) {
    eprintln!("bench: {text}");
}

async fn run() -> Result<(), String> {
    let root = testkit::repo_root();
    let args = parse_args(&root)?;
    let all: Vec<&str> = FUNCTIONS.iter().copied().chain([ECHO]).collect();
    if args.stale_arm64 {
        println!("{}", artifacts::stale_arm64(&root, &all).join(" ")); // one line, for scripts/bench.sh
        return Ok(());
    }
    let plan = if args.quick { QUICK } else { FULL };
    let billing_purchases = args.billing_purchases.unwrap_or(if args.quick { 5_000 } else { 100_000 });
    let billing_concurrencies =
        args.billing_concurrencies.clone().unwrap_or(vec![1, shared::billing::DEFAULT_BILLING_CONCURRENCY]);
    if args.billing_only {
        init_tracing();
        phase(&format!("billing: {billing_purchases} purchases, c={billing_concurrencies:?}, DynamoDB-like latency"));
        let rows =
            billing::measure(billing_purchases, BILLING_ACCOUNTS, BILLING_AGENCIES, &billing_concurrencies).await?;
        println!("{}", report::billing_markdown(&rows));
        return Ok(());
    }
    let collection_statements = args.collection_statements.unwrap_or(if args.quick { 1_000 } else { 10_000 });
    let collection_concurrencies = args
        .collection_concurrencies
        .clone()
        .unwrap_or(vec![shared::collection::CollectSettings::default().concurrency, COLLECT_CONCURRENCY_MAX]);
    if args.collection_only {
        init_tracing();
        phase(&format!("collection: {collection_statements} statements, c={collection_concurrencies:?}"));
        let rows = collection::measure(collection_statements, &collection_concurrencies).await?;
        println!("{}", report::collection_markdown(&rows));
        return Ok(());
    }
    if args.agency_clients_only {
        init_tracing();
        phase("agency clients page: one client with 100,000 unbilled purchases");
        return agency_clients::measure(if args.quick { 10_000 } else { 100_000 }).await;
    }
    if args.consumption_only {
        init_tracing();
        phase("seeding an embedded dynoxide");
        let fx = Arc::new(Fixture::new().await?);
        fx.check_call_counts().await?;
        let mut comparisons = Vec::new();
        for scenario in CONSUMPTION_SEQUENTIAL {
            phase(&format!("c=1: {} vs bare {}", scenario.handler_name(), scenario.bare_name()));
            comparisons.push(inproc::sequential(&fx, scenario, plan.warmup, plan.sequential).await?);
        }
        for scenario in CONSUMPTION_CONCURRENT {
            phase(&format!("c={}: {} vs bare {}", plan.concurrency, scenario.handler_name(), scenario.bare_name()));
            comparisons.push(inproc::concurrent(&fx, scenario, plan.concurrency, plan.block, plan.concurrent).await?);
        }
        let targets: Vec<_> = comparisons.iter().map(report::consumption_target).collect();
        println!("{}\n{}", report::comparison_table(&comparisons), report::targets_table(&targets));
        return Ok(());
    }
    let function = |name: &'static str, expect: Expect| Function {
        name,
        binary: args.bin_dir.join(name),
        expect,
        extra_env: args.cold_env.clone(),
    };
    let echo = function(ECHO, Expect::Echo);
    if args.cold_stripe_only {
        return stripe_cold_starts(&plan, function, &echo).await;
    }
    let purchase = function("purchase-credits", Expect::Status(201));
    let pricing = function("get-pricing", Expect::Status(200));
    for f in [&purchase, &pricing, &echo] {
        if !f.binary.is_file() {
            return Err(format!("{} is missing: scripts/bench.sh builds it", f.binary.display()));
        }
    }

    init_tracing();
    let machine = Machine::describe(&root);
    phase("seeding an embedded dynoxide");
    let fx = Arc::new(Fixture::new().await?);
    fx.check_call_counts().await?;
    let engine = Engine { endpoint: fx.env.dynamo.endpoint(), table: fx.env.table.clone() };
    let purchase_event = testkit::event_json("purchase-credits.json");

    if args.cold_only {
        // The bare calls the first-answer target adds to the echo's time, then the cold starts alone.
        let mut comparisons = Vec::new();
        for scenario in [Scenario::PricingWarm] {
            comparisons.push(inproc::sequential(&fx, scenario, plan.warmup / 10, plan.sequential / 5).await?);
        }
        let (cold, cold_scheduling) =
            cold_starts(&plan, [&purchase, &pricing, &echo], &engine, &purchase_event).await?;
        let results = Results {
            machine,
            load_after: report::load_average(),
            comparisons,
            cold,
            cold_scheduling,
            sustained: Vec::new(),
            sizes: Vec::new(),
            billing: Vec::new(),
            collection: Vec::new(),
            notes: Vec::new(),
        };
        println!("{}{}", results.cold_markdown(), results.targets_markdown());
        return Ok(());
    }

    let scenarios = [Scenario::PurchaseMinimal, Scenario::PurchaseDefault, Scenario::PricingWarm];
    let mut comparisons = Vec::new();
    for scenario in scenarios.into_iter().chain(CONSUMPTION_SEQUENTIAL) {
        phase(&format!("c=1: {} vs bare {}", scenario.handler_name(), scenario.bare_name()));
        comparisons.push(inproc::sequential(&fx, scenario, plan.warmup, plan.sequential).await?);
    }
    for scenario in scenarios.into_iter().chain(CONSUMPTION_CONCURRENT) {
        phase(&format!("c={}: {} vs bare {}", plan.concurrency, scenario.handler_name(), scenario.bare_name()));
        comparisons.push(inproc::concurrent(&fx, scenario, plan.concurrency, plan.block, plan.concurrent).await?);
    }

    // Right after the c=32 phase, not during it: a second load on 2 cores would blur the interleaved figures.
    let stream_event = |i: usize| {
        let mut event = purchase_event.clone();
        event["headers"]["idempotency-key"] = json!(uuid::Uuid::now_v7().to_string());
        if i.is_multiple_of(2) {
            event["headers"]["prefer"] = json!("return=minimal");
        }
        event["requestContext"]["requestId"] = json!(format!("bench-stream-{i}"));
        event_bytes(&event)
    };
    let mut sustained = Vec::new();
    for f in [&purchase, &echo] {
        phase(&format!("memory: {} invocations, one at a time, into {}", plan.stream, f.name));
        sustained.push((f.name, process::sustained(f, &engine, plan.stream, stream_event).await?));
    }

    let (cold, cold_scheduling) = cold_starts(&plan, [&purchase, &pricing, &echo], &engine, &purchase_event).await?;

    phase(&format!("billing: {billing_purchases} purchases, c={billing_concurrencies:?}, DynamoDB-like latency"));
    let billing =
        billing::measure(billing_purchases, BILLING_ACCOUNTS, BILLING_AGENCIES, &billing_concurrencies).await?;

    phase(&format!("collection: {collection_statements} statements, c={collection_concurrencies:?}"));
    let collection = collection::measure(collection_statements, &collection_concurrencies).await?;

    let sizes = all
        .iter()
        .map(|name| SizeRow {
            name,
            arm64: artifacts::arm64(&root, name),
            host_bytes: artifacts::host_size(&args.bin_dir, name),
            is_function: *name != ECHO,
        })
        .collect();

    let results = Results {
        machine,
        load_after: report::load_average(),
        comparisons,
        cold,
        cold_scheduling,
        sustained,
        sizes,
        billing,
        collection,
        notes: notes(&plan),
    };
    let markdown = results.markdown();
    println!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out, &markdown).map_err(|e| format!("{}: {e}", out.display()))?;
        phase(&format!("wrote {}", out.display()));
    }
    Ok(())
}

/// Cold starts of the two functions and the echo floor (and the bundle-only diagnostic), in rotating rounds,
/// and how they were scheduled.
async fn cold_starts(
    plan: &Plan,
    [purchase, pricing, echo]: [&Function; 3],
    engine: &Engine,
    purchase_event: &serde_json::Value,
) -> Result<(Vec<ColdRow>, String), String> {
    phase(&format!("cold starts: {} rounds of {}, {} and {}", plan.cold_runs, purchase.name, pricing.name, echo.name));
    let pricing_event = event_bytes(&testkit::event_json("get-pricing.json"));
    let cold_event = |f: &Function| {
        if f.name == purchase.name { event_bytes(purchase_event) } else { pricing_event.clone() }
    };
    // Diagnostic variant: the system's root certificates as Lambda's AL2023 image has them (one bundle, no
    // directory of ~290 more files as on Debian). The functions now trust compiled-in roots and read neither, so
    // this row should match the first; it stays to show that (and would catch a return to the system roots).
    let mut bundle_only = purchase.clone();
    bundle_only.extra_env.extend([("SSL_CERT_FILE", CA_BUNDLE.into()), ("SSL_CERT_DIR", String::new())]);
    let mut order = vec![purchase, pricing, echo];
    if std::path::Path::new(CA_BUNDLE).is_file() {
        order.push(&bundle_only);
    }
    for f in &order {
        process::cold_start(f, engine, cold_event(f)).await?; // untimed: loads the binary into the page cache
    }
    let mut cold: Vec<ColdRow> = order
        .iter()
        .map(|f| {
            let diagnostic = std::ptr::eq(*f, &bundle_only);
            ColdRow {
                name: if diagnostic { format!("{} (CA bundle only; diagnostic)", f.name) } else { f.name.into() },
                diagnostic,
                samples: Vec::new(),
            }
        })
        .collect();
    let realtime = priority::Realtime::raise();
    for round in 0..plan.cold_runs {
        // Rotating the order spreads any drift (and whichever ran just before) over all three.
        for k in 0..order.len() {
            let i = (round + k) % order.len();
            cold[i].samples.push(process::cold_start(order[i], engine, cold_event(order[i])).await?);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok((cold, realtime.describe()))
}

fn notes(plan: &Plan) -> Vec<String> {
    vec![
        "Engine: dynoxide 3.2 embedded in the bench process (in-memory SQLite behind its HTTP server on 127.0.0.1), \
         sharing the 2 cores with the load it serves; absolute times are this machine's, the ratios are the point."
            .into(),
        "Both sides use an SDK client from `testkit::client_for` (the functions' timeouts and retry settings, the \
         default HTTP stack, each client with its own retry partition)."
            .into(),
        "Handler side: `shared::api` handlers called in process on an `App` built as a function builds it, with a \
         pricing-cache TTL longer than the run so every call is the warm path the row names. Requests are built \
         with `testkit::ApiEvent` before the clock starts (the runtime parses the event before a handler runs): \
         the body of events/purchase-credits.json (two lines, `expectedTotal`) with a fresh `Idempotency-Key`, \
         so each purchase is a five-item transaction. The functions' JSON log subscriber is installed, writing \
         to a sink, so the handler's log line is formatted as in Lambda."
            .into(),
        "Bare side: the same items (seven with the key) from `Store::purchase_transaction_for_bench` (fresh purchase id and key per call, \
         the purchase id as `ClientRequestToken`, as the Store sends it); for the default purchase the same \
         consistent `GetItem` of the account follows. Only `send()` is timed."
            .into(),
        "Consumption: `shared::consumption::consume_credits` (the consume-credits entry point) called in process \
         with a direct-invoke payload built before the clock starts (one audience credit, a fresh `consumptionId`; \
         the account is given 1,000,000 audience credits by an adjustment first), against the same three items \
         (balance update, ledger entry, consumption marker) from `Store::consumption_transaction_for_bench` sent \
         bare with the entry id as `ClientRequestToken`."
            .into(),
        "Consumption with rules (issue #25), each side on its own account of the same agency and its own \
         `Consumer` (same rules, line and balance): rules far off = an alert at 100 and a top-up below 50 on \
         1,000,000 credits; auto top-up each time = a rule below 100,000 buying 1 on 1,000 credits, a daily cap \
         of u32::MAX, so every consumption also buys one credit (purchase, price checks, agency line, purchase \
         ledger entry, events) in its one transaction. The bare side sends the items \
         `Consumer::next_transaction_for_bench` plans from its own remembered facts and prices, as \
         `consume-credits` would send them. Prices are remembered 30 s: a run longer than that pays a \
         `BatchGetItem` on the handler side every 30 s, as a deployed container does."
            .into(),
        "Call counts checked before timing with the counting client: warm minimal purchase = [TransactWriteItems], \
         default purchase = [TransactWriteItems, GetItem], warm get-pricing = [], warm consumption = \
         [TransactWriteItems], with rules far off = [TransactWriteItems] (32 at once: 32 TransactWriteItems, \
         no re-plan), topping up = [GetItem, BatchGetItem, TransactWriteItems] cold then [TransactWriteItems]."
            .into(),
        format!(
            "c=1: {} handler/bare pairs after {} warm-up pairs, alternating which side goes first; req/s = requests \
             ÷ time inside that side's calls. c={}: {} requests per side in blocks of {} with {} in flight, \
             handler and bare blocks alternating (ABBA) after one warm-up block each; req/s = requests ÷ wall \
             time of that side's blocks.",
            plan.sequential, plan.warmup, plan.concurrency, plan.concurrent, plan.block, plan.concurrency
        ),
        format!(
            "Cold start: a fresh process per run (x86_64 release build, same profile), environment limited to what \
             Lambda sets (runtime API, function name/memory/version, log group/stream, TABLE_NAME, region, \
             credentials, AWS_ENDPOINT_URL_DYNAMODB → the bench's dynoxide), stdout to /dev/null. First poll = \
             the first `GET /2018-06-01/runtime/invocation/next`; first answer = its `POST .../response` for \
             events/purchase-credits.json or events/get-pricing.json (echo gets the latter). One untimed run per \
             binary first (page cache), then {} rounds in rotating order. The diagnostic row runs the same \
             purchase-credits with `SSL_CERT_FILE={CA_BUNDLE}` and an empty `SSL_CERT_DIR`, the system roots \
             as Lambda's AL2023 image has them (one bundle) instead of the bundle plus every file in \
             /etc/ssl/certs on this Debian host; since the functions trust compiled-in roots (README \
             \"Cold start\") they read neither, and the row should match purchase-credits.",
            plan.cold_runs
        ),
        format!(
            "Memory: right after the c={} phase, one purchase-credits process was fed {} invocations one at a time \
             (events/purchase-credits.json, a fresh `Idempotency-Key` each, every other one with \
             `Prefer: return=minimal`); VmHWM/VmRSS from /proc/<pid>/status. Same stream into the echo binary for \
             the floor. Measured on the x86_64 build (arm64 cannot run here).",
            plan.concurrency, plan.stream
        ),
        "Sizes: `cargo lambda build --release --arm64` output (cargo-lambda adds panic=abort and \
         target-cpu=neoverse-n1) or `sam build`'s copy under .aws-sam/build, whichever is newer; scripts/bench.sh \
         rebuilds any older than its sources. Limits read as MiB."
            .into(),
    ]
}

/// `--cold-start-stripe`: cold starts of the two Stripe functions against the echo floor. Their secrets come as
/// the local stack gives them (`STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`: plain values), so the Secrets
/// Manager read a deployed cold start makes (one GetSecretValue, in parallel with the table client) is not in
/// these figures. collect-payments gets `{}` over the seeded table (nothing payable: one Query per partition,
/// no Stripe call); stripe-webhook a `payment_intent.succeeded` for an unknown statement (events/stripe-webhook.json,
/// signed just before it is sent: verified, one read, acknowledged with 200).
async fn stripe_cold_starts(
    plan: &Plan,
    function: impl Fn(&'static str, Expect) -> Function,
    echo: &Function,
) -> Result<(), String> {
    const WEBHOOK_SECRET: &str = "whsec_bench_local";
    let stripe_env = |mut f: Function| {
        f.extra_env.extend([
            ("STRIPE_SECRET_KEY", "sk_test_bench".to_owned()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            // Never contacted: nothing is payable.
            ("STRIPE_API_BASE", "http://127.0.0.1:9".to_owned()),
        ]);
        f
    };
    let collect = stripe_env(function("collect-payments", Expect::Object));
    let webhook = stripe_env(function("stripe-webhook", Expect::Status(200)));
    for f in [&collect, &webhook, echo] {
        if !f.binary.is_file() {
            return Err(format!(
                "{} is missing: cargo build --release -p collect-payments -p stripe-webhook -p echo-lambda",
                f.binary.display()
            ));
        }
    }
    init_tracing();
    let machine = Machine::describe(&testkit::repo_root());
    phase("seeding an embedded dynoxide");
    let fx = Arc::new(Fixture::new().await?);
    let engine = Engine { endpoint: fx.env.dynamo.endpoint(), table: fx.env.table.clone() };
    let pricing_event = event_bytes(&testkit::event_json("get-pricing.json"));
    let webhook_template = testkit::event_json("stripe-webhook.json");
    let signed_webhook = || {
        let mut event = webhook_template.clone();
        let body = event["body"].as_str().unwrap_or_default().to_owned();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let secret = shared::stripe::Secret::new(WEBHOOK_SECRET);
        event["headers"]["stripe-signature"] = json!(shared::stripe::signature::sign(&secret, now, body.as_bytes()));
        event_bytes(&event)
    };
    let event_for = |f: &Function| {
        if f.name == collect.name {
            axum::body::Bytes::from_static(b"{}")
        } else if f.name == webhook.name {
            signed_webhook()
        } else {
            pricing_event.clone()
        }
    };
    let order = [&collect, &webhook, echo];
    phase(&format!("cold starts: {} rounds of {}, {} and {}", plan.cold_runs, collect.name, webhook.name, echo.name));
    for f in order {
        process::cold_start(f, &engine, event_for(f)).await?; // untimed: loads the binary into the page cache
    }
    let mut cold: Vec<ColdRow> =
        order.iter().map(|f| ColdRow { name: f.name.into(), diagnostic: false, samples: Vec::new() }).collect();
    let realtime = priority::Realtime::raise();
    for round in 0..plan.cold_runs {
        for k in 0..order.len() {
            let i = (round + k) % order.len();
            cold[i].samples.push(process::cold_start(order[i], &engine, event_for(order[i])).await?);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let results = Results {
        machine,
        load_after: report::load_average(),
        comparisons: Vec::new(),
        cold,
        cold_scheduling: realtime.describe(),
        sustained: Vec::new(),
        sizes: Vec::new(),
        billing: Vec::new(),
        collection: Vec::new(),
        notes: Vec::new(),
    };
    println!("{}", results.cold_markdown());
    Ok(())
}
