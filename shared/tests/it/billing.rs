//! The billing run against a real dynoxide server through the real SDK: sums to the cent, every purchase
//! billed exactly once, re-runs, crashes half way, concurrent purchases and runs, and reads that grow with
//! the unbilled purchases only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lambda_http::lambda_runtime::{Context, Diagnostic, LambdaEvent};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::api;
use shared::billing::{self, BillingError, BillingRun, RunSummary};
use shared::domain::PurchaseRecord;
use shared::domain::billing::{CycleEnd, Part, Statement, StatementKind, owner_part, statement_delta};
use shared::domain::{self, CreditType, EffectivePricing, Quantities, Rate, RateOverride};
use shared::storage::{RecordOutcome, Store};
use testkit::faults::Fault;
use testkit::{ApiEvent, COFFEE, DENTAL, TestEnv, answer, event_json};
use tokio::sync::Semaphore;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn cycle(text: &str) -> CycleEnd {
    CycleEnd::parse(text).unwrap()
}

/// A small deterministic generator, so two tables can be filled with identical purchases.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Agencies and accounts of a test book, with prices of two and four decimals.
struct Book {
    accounts: Vec<(String, String)>, // (account, agency)
    agencies: Vec<String>,
    pricing: HashMap<String, EffectivePricing>,
}

impl Book {
    fn agency_ids(&self) -> &[String] {
        &self.agencies
    }

    fn account_ids(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|(a, _)| a.as_str())
    }
}

async fn create_book(store: &Store, agencies: usize, accounts: usize) -> Book {
    let default: BTreeMap<CreditType, Rate> = [
        (CreditType::Audience, Rate { price: d("30.00"), cost: d("18.00") }),
        (CreditType::Enrichment, Rate { price: d("0.0150"), cost: d("0.0045") }),
        (CreditType::Pixel, Rate { price: d("12.00"), cost: d("6.25") }),
        (CreditType::CustomModel, Rate { price: d("149.9999"), cost: d("80.0001") }),
    ]
    .into();
    store.upsert_default_pricing(&default).await.unwrap();
    let mut agency_ids = Vec::new();
    for a in 0..agencies {
        let agency_id = format!("agency-{a}");
        let step = Decimal::from(a as u64);
        // Every agency overrides something else, some prices and costs with four decimals.
        let mut rates = BTreeMap::new();
        rates.insert(CreditType::Audience, RateOverride { price: Some(d("24.9975") + step * d("1.1375")), cost: None });
        if a % 2 == 0 {
            rates.insert(
                CreditType::Enrichment,
                RateOverride { price: Some(d("0.0125") + step * d("0.0011")), cost: Some(d("0.0033")) },
            );
        }
        if a % 3 == 1 {
            rates.insert(CreditType::Pixel, RateOverride { price: None, cost: Some(d("5.5555")) });
        }
        store.upsert_agency_pricing(&agency_id, &rates).await.unwrap();
        // Lines far above what the book buys: these tests are about billing, not limits.
        store.set_agency_ceiling(&agency_id, d("100000000.00")).await.unwrap();
        agency_ids.push(agency_id);
    }
    let mut pricing = HashMap::new();
    for agency_id in &agency_ids {
        let (default, agency) = store.pricing(agency_id).await.unwrap();
        pricing.insert(agency_id.clone(), domain::resolve_pricing(agency_id, &default, agency.as_ref()).unwrap());
    }
    let mut account_ids = Vec::new();
    for i in 0..accounts {
        let account_id = format!("acct-{i:04}");
        let agency_id = agency_ids[i % agencies].clone();
        store.upsert_account(&account_id, &agency_id, None, None).await.unwrap();
        store.set_credit_limit(&account_id, d("10000000.00")).await.unwrap();
        account_ids.push((account_id, agency_id));
    }
    Book { accounts: account_ids, agencies: agency_ids, pricing }
}

/// Purchases spread over the book's accounts, priced as the real purchase is, created `created_from` onwards.
fn make_purchases(book: &Book, count: usize, seed: u64, created_from: &str) -> Vec<PurchaseRecord> {
    let mut rng = Lcg(seed);
    let base = humantime::parse_rfc3339(created_from).unwrap();
    (0..count)
        .map(|i| {
            let (account_id, agency_id) = &book.accounts[i % book.accounts.len()];
            let mut quantities = Quantities::from_pairs([
                (CreditType::Audience, rng.next(4)),
                (CreditType::Enrichment, rng.next(3) * rng.next(5000)),
                (CreditType::Pixel, rng.next(3)),
                (CreditType::CustomModel, rng.next(5) / 4),
            ]);
            if quantities.non_zero().next().is_none() {
                quantities = Quantities::from_pairs([(CreditType::Enrichment, 333)]);
            }
            // Each line at least its minimum (a cent at price and at cost), as the purchase route demands.
            let pricing = &book.pricing[agency_id];
            let quantities = Quantities::from_pairs(quantities.non_zero().map(|(t, q)| {
                (t, q.max(domain::minimum_quantity(pricing.rate(t)).expect("every book price is above zero")))
            }));
            let quote = domain::quote(pricing, &quantities).expect("every line at or above its minimum");
            let created = base + Duration::from_millis(i as u64 * 7);
            PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), account_id, agency_id, created, quote, None)
        })
        .collect()
}

/// Records purchases through the real storage path (balance, record and index keys in one transaction),
/// with bounded concurrency.
async fn record_all(store: &Store, book: &Book, purchases: &[PurchaseRecord]) {
    let permits = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for purchase in purchases.iter().cloned() {
        let store = store.clone();
        let pricing = book.pricing[&purchase.agency_id].clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let outcome = store.record_purchase(&purchase, &pricing, None).await.unwrap();
            assert_eq!(outcome, RecordOutcome::Recorded);
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// The state of the books after (part of) a run, checked for consistency on the way.
#[derive(Debug, Default)]
struct Ledger {
    purchases: usize,
    total_at_price: Decimal,
    total_at_cost: Decimal,
    unbilled_to_client: usize,
    unbilled_to_agency: usize,
    client_statements: Vec<Statement>,
    agency_statements: Vec<Statement>,
    billed_at_price: Decimal,
    billed_at_cost: Decimal,
    records: Vec<PurchaseRecord>,
    /// The whole table as read at the end of the check.
    snapshot: Vec<Value>,
}

/// Reads every purchase and statement and checks, whatever point a run reached: each statement's sums,
/// lines and ids are exactly those of the purchases marked with its id; no purchase is in two statements;
/// a purchase is in an unbilled index exactly when it is not billed.
async fn ledger(env: &TestEnv, book: &Book) -> Ledger {
    let mut ledger = Ledger::default();
    // Reads run side by side: dynoxide serialises writes, not reads.
    let permits = Arc::new(Semaphore::new(4));
    let mut reads = tokio::task::JoinSet::new();
    for account_id in book.account_ids().map(str::to_owned) {
        let store = env.app.store.clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        reads.spawn(async move {
            let _permit = permit;
            let records = store.all_purchases(&account_id).await.unwrap();
            (records, store.client_statements(&account_id).await.unwrap(), Vec::new())
        });
    }
    for agency_id in book.agency_ids().to_vec() {
        let store = env.app.store.clone();
        reads.spawn(async move { (Vec::new(), Vec::new(), store.agency_statements(&agency_id).await.unwrap()) });
    }
    while let Some(read) = reads.join_next().await {
        let (records, client_statements, agency_statements) = read.unwrap();
        ledger.records.extend(records);
        ledger.client_statements.extend(client_statements);
        ledger.agency_statements.extend(agency_statements);
    }
    ledger.purchases = ledger.records.len();
    for record in &ledger.records {
        ledger.total_at_price += record.total;
        ledger.total_at_cost += record.total_at_cost;
        assert_eq!(record.billed_to_client, record.client_statement_id.is_some(), "{record:?}");
        assert_eq!(record.billed_to_agency, record.agency_statement_id.is_some(), "{record:?}");
        ledger.unbilled_to_client += usize::from(!record.billed_to_client);
        ledger.unbilled_to_agency += usize::from(!record.billed_to_agency);
    }
    for (kind, statements) in
        [(StatementKind::Client, &ledger.client_statements), (StatementKind::Agency, &ledger.agency_statements)]
    {
        // Purchases by the statement id they are marked with.
        let mut by_statement: HashMap<&str, Vec<&PurchaseRecord>> = HashMap::new();
        for record in &ledger.records {
            let marked_with = match kind {
                StatementKind::Client => record.client_statement_id.as_deref(),
                StatementKind::Agency => record.agency_statement_id.as_deref(),
            };
            if let Some(id) = marked_with {
                by_statement.entry(id).or_default().push(record);
            }
        }
        let statement_ids: BTreeSet<&str> = statements.iter().map(|s| s.statement_id.as_str()).collect();
        assert!(
            by_statement.keys().all(|id| statement_ids.contains(id)),
            "a purchase is marked with a missing statement"
        );
        let mut seen = BTreeSet::new();
        for statement in statements {
            assert_eq!(statement.kind, kind);
            // Payable once its cycle's run finished; still building in a run that stopped half way.
            assert!(["building", "pending_payment"].contains(&statement.status.as_str()), "{}", statement.status);
            assert_eq!(statement.currency, "USD");
            let marked = by_statement.remove(statement.statement_id.as_str()).unwrap_or_default();
            let mut marked_ids: Vec<String> = marked.iter().map(|r| r.purchase_id.clone()).collect();
            marked_ids.sort();
            assert_eq!(statement.purchase_ids, marked_ids, "{} lists exactly its purchases", statement.statement_id);
            assert_eq!(statement.purchase_count as usize, marked.len());
            for id in &statement.purchase_ids {
                assert!(seen.insert(id.clone()), "purchase {id} is in two {kind:?} statements");
            }
            let delta = statement_delta(kind, &marked.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
            assert_eq!(statement.total, delta.total, "{} total", statement.statement_id);
            let lines: BTreeMap<CreditType, (u64, Decimal)> =
                statement.lines.iter().map(|l| (l.credit_type, (l.quantity, l.amount))).collect();
            let expected: BTreeMap<CreditType, (u64, Decimal)> =
                delta.lines.iter().map(|(t, s)| (*t, (s.quantity, s.amount))).collect();
            assert_eq!(lines, expected, "{} lines", statement.statement_id);
            assert_eq!(statement.lines.iter().map(|l| l.amount).sum::<Decimal>(), statement.total);
        }
    }
    ledger.billed_at_price = ledger.client_statements.iter().map(|s| s.total).sum();
    ledger.billed_at_cost = ledger.agency_statements.iter().map(|s| s.total).sum();

    // Billed ⇔ out of the index: the snapshot holds every item's attributes as stored.
    ledger.snapshot = env.snapshot().await;
    for item in &ledger.snapshot {
        if !item["sk"]["S"].as_str().unwrap_or("").starts_with("PURCHASE#") {
            continue;
        }
        let billed_to_client = item["billedToClient"]["BOOL"].as_bool().unwrap();
        let billed_to_agency = item["billedToAgency"]["BOOL"].as_bool().unwrap();
        assert_eq!(item.get("unbilledClientPk").is_some(), !billed_to_client, "{item}");
        assert_eq!(item.get("unbilledClientSk").is_some(), !billed_to_client, "{item}");
        assert_eq!(item.get("unbilledAgencyPk").is_some(), !billed_to_agency, "{item}");
        assert_eq!(item.get("unbilledAgencySk").is_some(), !billed_to_agency, "{item}");
    }
    ledger
}

fn assert_all_billed(ledger: &Ledger, purchases: usize) {
    assert_eq!(ledger.purchases, purchases);
    // Every purchase billed means some run finished the cycle: every statement is payable.
    for statement in ledger.client_statements.iter().chain(&ledger.agency_statements) {
        assert_eq!(statement.status, "pending_payment", "{}", statement.statement_id);
    }
    assert_eq!(ledger.unbilled_to_client, 0);
    assert_eq!(ledger.unbilled_to_agency, 0);
    assert_eq!(ledger.billed_at_price, ledger.total_at_price, "client statements vs purchases at price");
    assert_eq!(ledger.billed_at_cost, ledger.total_at_cost, "agency statements vs purchases at cost");
}

/// Statements and purchases with the run-dependent timestamps blanked, for comparing two tables.
fn comparable(ledger: &Ledger) -> (Vec<Statement>, Vec<PurchaseRecord>) {
    let mut statements: Vec<Statement> = ledger
        .client_statements
        .iter()
        .chain(&ledger.agency_statements)
        .cloned()
        .map(|mut s| {
            s.created_at.clear();
            s.updated_at.clear();
            // Counted from the day the run made it payable: run-dependent too.
            s.due_at = None;
            s
        })
        .collect();
    statements.sort_by(|a, b| a.statement_id.cmp(&b.statement_id));
    let mut records = ledger.records.clone();
    records.sort_by(|a, b| a.purchase_id.cmp(&b.purchase_id));
    (statements, records)
}

fn print_summary(label: &str, summary: &RunSummary, took: Duration) {
    println!(
        "{label}: {:.2?}, items read {} (scanned {}, {} queries), statements written {} client + {} agency, \
         purchases billed {} to clients + {} to agencies in {} transactions, at price {}, at cost {}, already billed {}",
        took,
        summary.items_read,
        summary.items_scanned,
        summary.queries,
        summary.client_statements_written,
        summary.agency_statements_written,
        summary.purchases_billed_to_client,
        summary.purchases_billed_to_agency,
        summary.transactions,
        summary.total_at_price,
        summary.total_at_cost,
        summary.purchases_already_billed,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_purchases_are_billed_exactly_once_to_the_cent() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 5, 200).await;
    let purchases = make_purchases(&book, 10_000, 42, "2026-11-01T00:00:00Z");
    let started = Instant::now();
    record_all(store, &book, &purchases).await;
    println!("setup: 10000 purchases over 200 accounts and 5 agencies recorded in {:.2?}", started.elapsed());

    let started = Instant::now();
    let summary = billing::run_billing(store, &BillingRun::new(cycle("2026-11-20T00:00:00Z"))).await.unwrap();
    let took = started.elapsed();
    print_summary("billing run, 10000 purchases", &summary, took);
    assert_eq!(summary.purchases_billed_to_client, 10_000);
    assert_eq!(summary.purchases_billed_to_agency, 10_000);
    assert_eq!(summary.client_statements_written, 200);
    assert_eq!(summary.agency_statements_written, 5);
    assert_eq!(summary.items_read, 20_000, "each purchase is read once per index");
    // dynoxide counts one look-ahead item per truncated page in ScannedCount.
    assert!(summary.items_scanned <= summary.items_read + summary.queries, "{summary:?}");
    assert_eq!(summary.purchases_already_billed, 0);

    let started = Instant::now();
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 10_000);
    println!("ledger check: {:.2?}", started.elapsed());
    assert_eq!(summary.total_at_price, books.total_at_price);
    assert_eq!(summary.total_at_cost, books.total_at_cost);
    assert_eq!(books.client_statements.len(), 200);
    assert_eq!(books.agency_statements.len(), 5);
    // Four-decimal prices make half-cent line amounts; the statements still add up to the cent.
    assert!(books.total_at_price.scale() <= 2 && books.total_at_cost.scale() <= 2);
    println!(
        "books: {} purchases, at price {} = client statements {}, at cost {} = agency statements {}",
        books.purchases, books.total_at_price, books.billed_at_price, books.total_at_cost, books.billed_at_cost
    );

    // The same cycle again finds nothing to do and changes nothing.
    let before = books.snapshot;
    let again = billing::run_billing(store, &BillingRun::new(cycle("2026-11-20T00:00:00Z"))).await.unwrap();
    assert_eq!(env.snapshot().await, before, "a second run for the same cycle changed the table");
    assert_eq!((again.items_read, again.transactions, again.purchases_billed_to_client), (0, 0, 0));

    // Reads grow with the unbilled purchases, not with the table: 10,000 billed, 50 new.
    let new = make_purchases(&book, 50, 7, "2026-11-20T12:00:00Z");
    record_all(store, &book, &new).await;
    let started = Instant::now();
    let next = billing::run_billing(store, &BillingRun::new(cycle("2026-12-01T00:00:00Z"))).await.unwrap();
    print_summary("next cycle, 10000 billed + 50 unbilled", &next, started.elapsed());
    assert_eq!(next.items_read, 100, "50 unbilled purchases, read once per index");
    assert!(next.items_scanned <= next.items_read + next.queries, "{next:?}");
    assert_eq!(next.purchases_billed_to_client, 50);
    assert_eq!(next.client_statements_written, 50);
    assert_eq!(next.agency_statements_written, 5);
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 10_050);
    assert_eq!(books.client_statements.len(), 250);
    assert_eq!(books.agency_statements.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_dies_half_way_and_runs_again_ends_as_an_uninterrupted_run() {
    // Two tables with identical purchases: one billed in one go, one stopped after a few steps and re-run.
    let whole = TestEnv::empty().await;
    let broken = TestEnv::empty().await;
    let book = create_book(&whole.app.store, 3, 12).await;
    let book_broken = create_book(&broken.app.store, 3, 12).await;
    let purchases = make_purchases(&book, 300, 9, "2026-11-02T00:00:00Z");
    record_all(&whole.app.store, &book, &purchases).await;
    record_all(&broken.app.store, &book_broken, &purchases).await;

    // Small steps, so each statement is built in several transactions and the stop lands inside statements.
    let run = BillingRun { purchases_per_transaction: 7, ..BillingRun::new(cycle("2026-11-20T00:00:00Z")) };
    let summary = billing::run_billing(&whole.app.store, &run).await.unwrap();
    assert!(summary.transactions > 60, "{summary:?}");
    let expected = ledger(&whole, &book).await;
    assert_all_billed(&expected, 300);

    let mut stops = Vec::new();
    for stop_after in [5, 20, 35] {
        // The process "dies" after `stop_after` transactions: every later one is refused outright.
        broken.faults.fail_after("TransactWriteItems", stop_after, Fault::Refused);
        match billing::run_billing(&broken.app.store, &run).await {
            Err(BillingError::Storage(_)) => stops.push(stop_after),
            other => panic!("expected the refused transaction to stop the run, got {other:?}"),
        }
        broken.faults.clear();
        // Consistent at every step: `ledger` checks each statement against the purchases marked with its id.
        let partial = ledger(&broken, &book_broken).await;
        assert!(partial.unbilled_to_client + partial.unbilled_to_agency > 0);
    }
    let finish = billing::run_billing(&broken.app.store, &run).await.unwrap();
    println!("stopped runs committed {stops:?} transactions; the re-run finished with {} more", finish.transactions);
    let finished = ledger(&broken, &book_broken).await;
    assert_all_billed(&finished, 300);
    assert_eq!(comparable(&finished), comparable(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_during_a_run_are_billed_now_or_next_cycle_never_lost_or_twice() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 2, 10).await;
    let before = make_purchases(&book, 400, 3, "2026-11-03T00:00:00Z");
    record_all(store, &book, &before).await;

    // Purchases through the real handler (createdAt = now) while a run bills a cycle ending after now, so
    // each new purchase lands either before or behind the run's position in the index.
    let purchasing = {
        let app = env.app.clone();
        let accounts: Vec<String> = book.account_ids().map(str::to_owned).collect();
        tokio::spawn(async move {
            let mut created = 0;
            for i in 0..100 {
                let account = &accounts[i % accounts.len()];
                let event = ApiEvent::new("POST", "/accounts/{accountId}/credit-purchases", account)
                    .as_account(account)
                    .json(&json!({"quantities": {"audience": 1 + i % 3, "enrichment": 7 * i}}));
                let a = answer(api::purchase_credits(&app, event.request()).await);
                assert_eq!(a.status, 201, "{}", a.body);
                created += 1;
            }
            created
        })
    };
    let in_an_hour = CycleEnd::at(SystemTime::now() + Duration::from_secs(3600));
    let during =
        billing::run_billing(store, &BillingRun { purchases_per_transaction: 5, ..BillingRun::new(in_an_hour) })
            .await
            .unwrap();
    let created = purchasing.await.unwrap();
    print_summary("run during 100 purchases", &during, Duration::from_millis(during.duration_ms));
    assert!(during.purchases_billed_to_client >= 400);

    // Whatever the first run missed, the next cycle bills; nothing is lost or billed twice.
    let later = CycleEnd::at(SystemTime::now() + Duration::from_secs(7200));
    let after = billing::run_billing(store, &BillingRun::new(later)).await.unwrap();
    println!(
        "purchases made during the run: {created}; billed to clients by that run {} and by the next cycle {}, \
         to agencies by that run {} and by the next cycle {}",
        during.purchases_billed_to_client - 400,
        after.purchases_billed_to_client,
        during.purchases_billed_to_agency - 400,
        after.purchases_billed_to_agency
    );
    assert_eq!(during.purchases_billed_to_client + after.purchases_billed_to_client, 400 + created as u64);
    assert_eq!(during.purchases_billed_to_agency + after.purchases_billed_to_agency, 400 + created as u64);
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 400 + created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_cycle_bill_each_purchase_once() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 2, 6).await;
    let purchases = make_purchases(&book, 400, 5, "2026-11-04T00:00:00Z");
    record_all(store, &book, &purchases).await;

    let run = BillingRun { purchases_per_transaction: 5, ..BillingRun::new(cycle("2026-11-20T00:00:00Z")) };
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            let run = run.clone();
            tokio::spawn(async move { billing::run_billing(&store, &run).await.unwrap() })
        })
        .collect();
    let mut billed_to_client = 0;
    let mut billed_to_agency = 0;
    let mut dropped = 0;
    for handle in runs {
        let summary = handle.await.unwrap();
        billed_to_client += summary.purchases_billed_to_client;
        billed_to_agency += summary.purchases_billed_to_agency;
        dropped += summary.purchases_already_billed;
    }
    println!("three concurrent runs: {billed_to_client} billed to clients, {dropped} dropped as already billed");
    assert_eq!(billed_to_client, 400);
    assert_eq!(billed_to_agency, 400);
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 400);
}

#[tokio::test]
async fn a_statement_taken_by_payment_takes_nothing_more() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 1).await;
    let first = make_purchases(&book, 3, 1, "2026-11-05T00:00:00Z");
    record_all(store, &book, &first).await;
    let cycle_end = cycle("2026-11-20T00:00:00Z");
    billing::run_billing(store, &BillingRun::new(cycle_end.clone())).await.unwrap();

    // The payment step moves the statement on (simulated here with a plain update), then a straggler with
    // an earlier createdAt shows up and the same cycle is run again.
    env.client
        .update_item()
        .table_name(&env.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("ACCOUNT#acct-0000".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("STATEMENT#{cycle_end}")))
        .update_expression("SET #s = :paid")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":paid", aws_sdk_dynamodb::types::AttributeValue::S("paid".into()))
        .send()
        .await
        .unwrap();
    let straggler = make_purchases(&book, 1, 2, "2026-11-06T00:00:00Z");
    record_all(store, &book, &straggler).await;
    let rerun = billing::run_billing(store, &BillingRun::new(cycle_end)).await.unwrap();
    // The first run finished the cycle: both statements are payable and take nothing more.
    assert_eq!(rerun.purchases_left_for_next_cycle, 2);
    assert_eq!(rerun.purchases_billed_to_client, 0);
    assert_eq!(rerun.purchases_billed_to_agency, 0, "the agency statement is payable too");
    let statements = store.client_statements("acct-0000").await.unwrap();
    assert_eq!((statements.len(), statements[0].purchase_count, statements[0].status.as_str()), (1, 3, "paid"));

    // The next cycle bills it.
    let next = billing::run_billing(store, &BillingRun::new(cycle("2026-12-01T00:00:00Z"))).await.unwrap();
    assert_eq!(next.purchases_billed_to_client, 1);
    let statements = store.client_statements("acct-0000").await.unwrap();
    assert_eq!(statements[0].cycle_end, "2026-12-01T00:00:00.000Z", "newest cycle first");
    assert_eq!(statements[0].purchase_ids, vec![straggler[0].purchase_id.clone()]);
}

/// A purchase of a seeded account recorded through the real storage path, created at `created_at`.
async fn record_seeded(store: &Store, account: &str, agency: &str, created_at: &str, quantities: &[(CreditType, u64)]) {
    let (default, agency_pricing) = store.pricing(agency).await.unwrap();
    let pricing = domain::resolve_pricing(agency, &default, agency_pricing.as_ref()).unwrap();
    let quote = domain::quote(&pricing, &Quantities::from_pairs(quantities.iter().copied())).unwrap();
    let created = humantime::parse_rfc3339(created_at).unwrap();
    let purchase = PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), account, agency, created, quote, None);
    assert_eq!(store.record_purchase(&purchase, &pricing, None).await.unwrap(), RecordOutcome::Recorded);
}

/// The function's handler as Lambda calls it: the event and a context with this deadline (ms since the epoch).
async fn invoke(store: &Store, payload: Value, deadline_ms: u64) -> Result<RunSummary, Diagnostic> {
    let mut context = Context::default();
    context.deadline = deadline_ms;
    // Exactly what billing-run's main does with the event.
    let event = LambdaEvent::new(payload, context);
    shared::metrics::run_billing_from_event(
        store,
        &Default::default(),
        &event.payload,
        Some(event.context.deadline()),
        SystemTime::now(),
    )
    .await
    .map_err(Diagnostic::from)
}

fn ms_from_now(ms: u64) -> u64 {
    (SystemTime::now() + Duration::from_millis(ms)).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn the_function_reads_its_cycle_from_the_event_and_refuses_bad_ones() {
    let env = TestEnv::seeded().await;
    let store = &env.app.store;
    // Two purchases in October, one now (after the sample event's cycle end).
    record_seeded(
        store,
        COFFEE,
        "agency-northwind",
        "2026-10-20T10:00:00Z",
        &[(CreditType::Audience, 10), (CreditType::Pixel, 5)],
    )
    .await;
    record_seeded(store, DENTAL, "agency-brightside", "2026-10-31T23:59:59.999Z", &[(CreditType::Enrichment, 333)])
        .await;
    let event = ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 1}}));
    assert_eq!(answer(api::purchase_credits(&env.app, event.request()).await).status, 201);

    let before = env.snapshot().await;
    let in_a_day = CycleEnd::at(SystemTime::now() + Duration::from_secs(86_400));
    let in_two_minutes = CycleEnd::at(SystemTime::now() + Duration::from_secs(120));
    for bad in [
        json!({"cycleEnd": "next month"}),
        json!({"cycleEnd": 20261201}),
        json!({"cycle": "x"}),
        json!([]),
        // "Now" is the schedule's business: a manual run names its cycle end.
        json!({}),
        Value::Null,
        json!({"cycleEnd": null}),
        // A cycle that has not ended yet (a typo would bill early).
        json!({"cycleEnd": in_a_day.as_str()}),
        json!({"cycleEnd": in_two_minutes.as_str()}),
        json!({"cycleEnd": "2027-11-01T00:00:00Z"}),
        json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": in_a_day.as_str()}),
        // A Scheduled Event always carries its `time`; without it, it is no event of ours.
        json!({"detail-type": "Scheduled Event", "source": "aws.events"}),
        // A slice needs a side, a known side and a part within bounds.
        json!({"cycleEnd": "2026-11-01T00:00:00Z", "part": {"index": 0, "of": 2}}),
        json!({"cycleEnd": "2026-11-01T00:00:00Z", "side": "both"}),
        json!({"cycleEnd": "2026-11-01T00:00:00Z", "side": "client", "part": {"index": 2, "of": 2}}),
        json!({"cycleEnd": "2026-11-01T00:00:00Z", "side": "agency", "part": {"index": 0, "of": 65}}),
        // Not a cycle boundary (1-9 November on a statement of its own), unless the event says it is meant.
        json!({"cycleEnd": "2026-11-10T00:00:00Z"}),
        json!({"cycleEnd": "2026-11-10T00:00:00Z", "offCycle": "true"}),
        // Within the grace period: purchases stamped before it may still be committing.
        json!({"cycleEnd": CycleEnd::at(SystemTime::now() - Duration::from_secs(30)).as_str(), "offCycle": true}),
    ] {
        let err = billing::run_from_event(store, &Default::default(), &bad, None, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, BillingError::InvalidEvent(_)), "{bad}: {err}");
        // What Lambda reports: a meaningful `errorType`, not the Rust type of a boxed error.
        let diagnostic = invoke(store, bad.clone(), ms_from_now(600_000)).await.unwrap_err();
        assert_eq!(diagnostic.error_type, "InvalidBillingEvent", "{bad}: {diagnostic:?}");
        assert!(diagnostic.error_message.starts_with("invalid billing event: "), "{diagnostic:?}");
    }
    assert_eq!(env.snapshot().await, before, "a refused event wrote something");

    // The sample event names a cycle end that has passed (2026-11-01): October's purchases, not today's.
    let sample = event_json("billing-run.json");
    assert_eq!(sample, json!({"cycleEnd": "2026-11-01T00:00:00Z"}));
    // The sample of a state machine's branch: client side, part 0 of 4, handing over.
    let part_sample = event_json("billing-run-part.json");
    assert_eq!(
        billing::cycle_end_from_event(&part_sample, SystemTime::now()).unwrap().as_str(),
        "2026-11-01T00:00:00.000Z"
    );
    assert_eq!(
        billing::slice_from_event(&part_sample).unwrap(),
        Some(billing::BillingSlice { side: StatementKind::Client, part: Some(Part::new(0, 4).unwrap()) })
    );
    assert_eq!(part_sample["handOver"], json!(true));
    let summary = invoke(store, sample, ms_from_now(600_000)).await.unwrap();
    assert_eq!(summary.cycle_end, "2026-11-01T00:00:00.000Z");
    assert_eq!(summary.purchases_billed_to_client, 2);
    assert_eq!(summary.client_statements_written, 2);
    assert_eq!(summary.agency_statements_written, 2);
    assert_eq!(summary.total_at_price, d("438.20")); // 300.00 + 333 × 0.4150 = 138.195 → 138.20
    let response = serde_json::to_value(&summary).unwrap();
    assert_eq!(response["totalAtPrice"], "438.20", "money is a decimal string: {response}");

    // A scheduled event bills the cycle ending at its scheduled time; the same event again changes nothing.
    let scheduled = json!({"version": "0", "id": "e", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {}});
    let before = env.snapshot().await;
    let again = billing::run_from_event(store, &Default::default(), &scheduled, None, SystemTime::now()).await.unwrap();
    assert_eq!((again.cycle_end.as_str(), again.transactions), ("2026-11-01T00:00:00.000Z", 0));
    assert_eq!(env.snapshot().await, before);

    // A deadline too close: the run refuses to start a transaction, and Lambda hears `OutOfTime`. (An off-cycle
    // run up to just past the grace period: the purchase made above, moments ago, is after it.)
    record_seeded(store, COFFEE, "agency-northwind", "2026-11-15T00:00:00Z", &[(CreditType::Pixel, 2)]).await;
    let now = CycleEnd::at(SystemTime::now() - billing::BILLING_GRACE - Duration::from_secs(1));
    let off_cycle = json!({"cycleEnd": now.as_str(), "offCycle": true});
    let diagnostic = invoke(store, off_cycle.clone(), ms_from_now(1)).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "OutOfTime", "{diagnostic:?}");
    // One from before any real invocation (`cargo lambda watch` sends 600000 ms after the epoch) is ignored.
    let summary = invoke(store, off_cycle, 600_000).await.unwrap();
    assert_eq!(summary.purchases_billed_to_client, 1);

    // Storage failures are told apart: an outage (retry later) from a defect.
    let later =
        json!({"cycleEnd": CycleEnd::at(SystemTime::now() - billing::BILLING_GRACE).as_str(), "offCycle": true});
    record_seeded(store, COFFEE, "agency-northwind", "2026-11-02T00:00:00Z", &[(CreditType::Pixel, 1)]).await;
    env.faults.inject("Query", Fault::Throttling, 100);
    let diagnostic = invoke(store, later.clone(), ms_from_now(600_000)).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "StorageUnavailable", "{diagnostic:?}");
    env.faults.clear();
    env.faults.inject("TransactWriteItems", Fault::Refused, 100);
    let diagnostic = invoke(store, later, ms_from_now(600_000)).await.unwrap_err();
    assert_eq!(diagnostic.error_type, "StorageError", "{diagnostic:?}");
    env.faults.clear();
}

#[tokio::test]
async fn conflicts_throttling_and_lost_responses_still_bill_each_purchase_once() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 3).await;
    let purchases = make_purchases(&book, 60, 11, "2026-11-07T00:00:00Z");
    record_all(store, &book, &purchases).await;

    // Faults below the real SDK: cancelled transactions, throttling, and steps applied whose answers are lost.
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 3);
    env.faults.inject("TransactWriteItems", Fault::Throttling, 2);
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 2);
    env.faults.inject("Query", Fault::Throttling, 1);
    let run = BillingRun { purchases_per_transaction: 10, ..BillingRun::new(cycle("2026-11-20T00:00:00Z")) };
    let summary = billing::run_billing(store, &run).await.unwrap();
    assert_eq!(env.faults.pending(), 0);
    // A lost answer is resent with the same client request token: DynamoDB answers the first outcome, so the
    // step counts as billed by this run, not as billed by someone else.
    assert_eq!((summary.purchases_billed_to_client, summary.purchases_billed_to_agency), (60, 60));
    assert_eq!(summary.purchases_already_billed, 0);
    assert_all_billed(&ledger(&env, &book).await, 60);
}

#[tokio::test]
async fn endless_conflicts_fail_the_run_cleanly_and_a_rerun_finishes() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 2).await;
    let purchases = make_purchases(&book, 30, 13, "2026-11-08T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let before = env.snapshot().await;

    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 1000);
    let run = BillingRun::new(cycle("2026-11-20T00:00:00Z"));
    let started = Instant::now();
    let err = billing::run_billing(store, &run).await.unwrap_err();
    assert!(matches!(err, BillingError::Storage(shared::storage::StoreError::Unavailable(_))), "{err}");
    let attempts = env.faults.injected().len();
    println!("endless conflicts: the run gave up after {attempts} attempts in {:.2?}", started.elapsed());
    assert!((2..=12).contains(&attempts), "bounded retries, got {attempts}");
    assert_eq!(env.snapshot().await, before, "a cancelled step wrote something");

    // The same cycle through a client without faults finishes the job.
    let healthy = Store::new(env.client.clone(), &env.table);
    billing::run_billing(&healthy, &run).await.unwrap();
    assert_all_billed(&ledger(&env, &book).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_steps_under_dynamodb_latency_and_conflicts_bill_each_purchase_once() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 3, 30).await;
    let purchases = make_purchases(&book, 600, 17, "2026-11-09T00:00:00Z");
    record_all(store, &book, &purchases).await;

    // From here every call takes as long as DynamoDB's would, and some transactions are cancelled by
    // conflicts, some throttled and some applied with their answer lost.
    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    env.faults.inject("TransactWriteItems", Fault::TransactionConflict, 6);
    env.faults.inject("TransactWriteItems", Fault::Throttling, 2);
    env.faults.inject("TransactWriteItems", Fault::LoseResponse, 3);
    // Two runs of the same cycle at once, each with 8 steps in flight, racing for the same purchases.
    let run =
        BillingRun { purchases_per_transaction: 9, concurrency: 8, ..BillingRun::new(cycle("2026-11-20T00:00:00Z")) };
    let started = Instant::now();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let run = run.clone();
            tokio::spawn(async move { billing::run_billing(&store, &run).await.unwrap() })
        })
        .collect();
    let mut summaries = Vec::new();
    for handle in runs {
        summaries.push(handle.await.unwrap());
    }
    let took = started.elapsed();
    env.faults.set_latency(None);
    for summary in &summaries {
        print_summary("parallel run under latency", summary, took);
        assert!(summary.complete);
    }
    assert_eq!(env.faults.pending(), 0, "every injected fault was met");
    let billed_to_client: u64 = summaries.iter().map(|s| s.purchases_billed_to_client).sum();
    let billed_to_agency: u64 = summaries.iter().map(|s| s.purchases_billed_to_agency).sum();
    assert_eq!((billed_to_client, billed_to_agency), (600, 600));
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 600);
    assert_eq!(books.client_statements.len(), 30);
    assert_eq!(books.agency_statements.len(), 3);

    // Parallel and one-at-a-time runs of identical purchases end in identical books.
    let serial_env = TestEnv::empty().await;
    let serial_book = create_book(&serial_env.app.store, 3, 30).await;
    record_all(&serial_env.app.store, &serial_book, &purchases).await;
    let serial = BillingRun { concurrency: 1, ..run.clone() };
    billing::run_billing(&serial_env.app.store, &serial).await.unwrap();
    let serial_books = ledger(&serial_env, &serial_book).await;
    assert_eq!(comparable(&serial_books), comparable(&books));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_time_hands_over_and_its_continuations_finish_the_cycle() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 2, 8).await;
    let purchases = make_purchases(&book, 240, 19, "2026-11-10T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let expected = {
        let whole = TestEnv::empty().await;
        let whole_book = create_book(&whole.app.store, 2, 8).await;
        record_all(&whole.app.store, &whole_book, &purchases).await;
        billing::run_billing(&whole.app.store, &BillingRun::new(cycle("2026-11-20T00:00:00Z"))).await.unwrap();
        comparable(&ledger(&whole, &whole_book).await)
    };

    // `handOver` must be a boolean.
    for bad in
        [json!({"cycleEnd": "2026-11-20T00:00:00Z", "handOver": "yes", "offCycle": true}), json!({"handOver": true})]
    {
        let err = billing::run_from_event(store, &Default::default(), &bad, None, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, BillingError::InvalidEvent(_)), "{bad}: {err}");
    }

    // Slow steps (~55 ms each, 2 in flight, 5 purchases each: ~100 per side) and a short time budget per
    // invocation: each invocation bills part of the cycle and answers where to go on.
    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    let mut event = json!({"cycleEnd": "2026-11-20T00:00:00Z", "handOver": true, "offCycle": true});
    let mut invocations = 0;
    let mut billed = 0;
    let mut made_payable = 0;
    let last = loop {
        invocations += 1;
        assert!(invocations <= 60, "the hand-overs never finished");
        let cycle_end = billing::cycle_end_from_event(&event, SystemTime::now()).unwrap();
        let run = BillingRun {
            purchases_per_transaction: 5,
            concurrency: 2,
            hand_over: event["handOver"] == json!(true),
            deadline: Some(Instant::now() + Duration::from_millis(600)),
            ..BillingRun::new(cycle_end)
        };
        let summary = billing::run_billing(store, &run).await.unwrap();
        billed += summary.purchases_billed_to_client + summary.purchases_billed_to_agency;
        made_payable += summary.statements_made_payable;
        // What the function answers: `complete`, and the event that continues the run when it is not.
        let answer = serde_json::to_value(&summary).unwrap();
        assert_eq!(answer["complete"], json!(summary.complete), "{answer}");
        if summary.complete {
            assert!(answer.get("continueWith").is_none(), "{answer}");
            break summary;
        }
        assert!(summary.transactions + summary.statements_made_payable > 0, "a hand-over always made progress");
        // Consistent at every hand-over; statements are made payable only once every purchase is billed (a
        // hand-over while finishing has made some payable).
        let partial = ledger(&env, &book).await;
        let unbilled = partial.unbilled_to_client + partial.unbilled_to_agency;
        assert!(summary.statements_made_payable == 0 || unbilled == 0, "{summary:?}");
        event = answer["continueWith"].clone();
        assert_eq!(event, json!({"cycleEnd": "2026-11-20T00:00:00.000Z", "handOver": true, "offCycle": true}));
    };
    env.faults.set_latency(None);
    println!("240 purchases billed over {invocations} invocations with hand-overs");
    assert!(invocations > 2, "the time budget was meant to stop the first runs");
    assert_eq!(billed, 480, "each purchase billed once to its client and once to its agency");
    // Making the statements payable is paged too: the last invocation may only confirm none is left.
    assert!(last.complete && made_payable > 0, "{last:?}");
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, 240);
    assert_eq!(comparable(&books), expected);

    // Without `handOver`, a run stopped by its deadline still fails with OutOfTime (the schedule's retry).
    let more = make_purchases(&book, 40, 23, "2026-11-21T00:00:00Z");
    record_all(store, &book, &more).await;
    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    let run = BillingRun {
        purchases_per_transaction: 1,
        concurrency: 1,
        deadline: Some(Instant::now() + Duration::from_millis(200)),
        ..BillingRun::new(cycle("2026-12-01T00:00:00Z"))
    };
    assert_eq!(billing::run_billing(store, &run).await.unwrap_err(), BillingError::OutOfTime);
    env.faults.set_latency(None);
    // A plain re-run finishes the cycle.
    let rest = billing::run_billing(store, &BillingRun::new(cycle("2026-12-01T00:00:00Z"))).await.unwrap();
    assert!(rest.complete);
    assert_all_billed(&ledger(&env, &book).await, 280);
}

/// The state machine's fan-out: each side's owners split into `PARTS` parts billed by concurrent runs (events
/// as the Map state sends them), first the client side, then the agency side, then one plain run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_fanned_out_over_parts_of_each_side_bills_each_purchase_once_without_conflicts() {
    const PARTS: u32 = 3;
    const PURCHASES: u64 = 1_260;
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 7, 84).await;
    let purchases = make_purchases(&book, PURCHASES as usize, 29, "2026-11-11T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let owners_in =
        |owners: Vec<&str>, index: u32| owners.into_iter().filter(|o| owner_part(o, PARTS) == index).count();
    for index in 0..PARTS {
        // Every branch has statements to build on each side, or the test would prove less than it claims.
        assert!(owners_in(book.account_ids().collect(), index) > 0);
        assert!(owners_in(book.agency_ids().iter().map(String::as_str).collect(), index) > 0);
    }
    let cycle_end = "2026-11-20T00:00:00.000Z";

    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    env.operations.reset();
    let mut transactions = 0;
    for (kind, statements) in [(StatementKind::Client, 84), (StatementKind::Agency, 7)] {
        let started = Instant::now();
        let runs: Vec<_> = (0..PARTS)
            .map(|index| {
                let store = store.clone();
                let event = json!({"cycleEnd": cycle_end, "handOver": true, "offCycle": true, "side": kind.as_str(),
                    "part": {"index": index, "of": PARTS}});
                tokio::spawn(async move {
                    billing::run_from_event(&store, &Default::default(), &event, None, SystemTime::now()).await.unwrap()
                })
            })
            .collect();
        let mut summaries = Vec::new();
        for handle in runs {
            summaries.push(handle.await.unwrap());
        }
        let took = started.elapsed();
        let (mut billed, mut written) = (0, 0);
        for (index, summary) in (0..PARTS).zip(&summaries) {
            print_summary(&format!("{} part {index}/{PARTS}", kind.as_str()), summary, took);
            println!("  read but left to the other parts: {:?}", summary.purchases_in_other_parts);
            assert!(summary.complete && summary.continue_with.is_none(), "{summary:?}");
            assert_eq!((summary.side, summary.part), (Some(kind), Some(Part::new(index, PARTS).unwrap())));
            let answer = serde_json::to_value(summary).unwrap();
            assert_eq!(
                (&answer["side"], &answer["part"]),
                (&json!(kind.as_str()), &json!({"index": index, "of": PARTS}))
            );
            // Disjoint owners: nothing billed by another part under our feet, nothing made payable yet.
            assert_eq!(summary.purchases_already_billed, 0, "{summary:?}");
            assert_eq!(summary.purchases_left_for_next_cycle, 0);
            assert_eq!(summary.statements_made_payable, 0, "a slice never finishes the cycle");
            let (own_billed, own_written, other_billed, other_written) = match kind {
                StatementKind::Client => (
                    summary.purchases_billed_to_client,
                    summary.client_statements_written,
                    summary.purchases_billed_to_agency,
                    summary.agency_statements_written,
                ),
                StatementKind::Agency => (
                    summary.purchases_billed_to_agency,
                    summary.agency_statements_written,
                    summary.purchases_billed_to_client,
                    summary.client_statements_written,
                ),
            };
            assert_eq!((other_billed, other_written), (0, 0), "a slice bills its side only");
            let owners = match kind {
                StatementKind::Client => owners_in(book.account_ids().collect(), index),
                StatementKind::Agency => owners_in(book.agency_ids().iter().map(String::as_str).collect(), index),
            };
            assert_eq!(own_written, owners as u64, "one statement per owner of the part");
            // Every item read is either billed here or left to its part.
            assert_eq!(summary.items_read, own_billed + summary.purchases_in_other_parts.unwrap(), "{summary:?}");
            billed += own_billed;
            written += own_written;
            transactions += summary.transactions;
        }
        assert_eq!((billed, written), (PURCHASES, statements));
        println!("{} side in {PARTS} concurrent parts: {took:.2?}", kind.as_str());

        // Between the sides: every statement of the cycle still building, each one's sums its purchases'.
        let books = ledger(&env, &book).await;
        for statement in books.client_statements.iter().chain(&books.agency_statements) {
            assert_eq!(statement.status, "building", "{}", statement.statement_id);
        }
        match kind {
            StatementKind::Client => assert_eq!((books.unbilled_to_client, books.unbilled_to_agency), (0, 1_260)),
            StatementKind::Agency => assert_eq!((books.unbilled_to_client, books.unbilled_to_agency), (0, 0)),
        }
    }
    // No transaction was sent twice: no part's step was ever cancelled by a conflict (a cancelled one is resent
    // with the same token, and the counter sees each send).
    let sent = env.operations.operations().iter().filter(|op| *op == "TransactWriteItems").count() as u64;
    assert_eq!(sent, transactions, "every billing transaction sent once");
    env.faults.set_latency(None);

    // The final plain run finds nothing left and makes the statements payable.
    let last = billing::run_from_event(
        store,
        &Default::default(),
        &json!({"cycleEnd": cycle_end, "offCycle": true}),
        None,
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!((last.transactions, last.purchases_billed_to_client, last.purchases_billed_to_agency), (0, 0, 0));
    assert_eq!((last.side, last.part, last.purchases_in_other_parts), (None, None, None));
    assert!(last.complete);
    assert_eq!(last.statements_made_payable, 84 + 7);
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, PURCHASES as usize);
    assert_eq!((books.client_statements.len(), books.agency_statements.len()), (84, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_out_of_time_hands_over_the_same_slice_until_it_is_billed() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 2, 12).await;
    let purchases = make_purchases(&book, 240, 31, "2026-11-12T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let in_part = |account: &str| owner_part(account, 3) == 1;
    let expected: u64 = purchases.iter().filter(|p| in_part(&p.account_id)).count() as u64;
    assert!(expected > 0);

    // Slow steps and a short budget per invocation, as in the whole-cycle hand-over test.
    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    let own_event = json!({"cycleEnd": "2026-11-20T00:00:00.000Z", "handOver": true, "offCycle": true, "side": "client",
        "part": {"index": 1, "of": 3}});
    let mut event = own_event.clone();
    let mut invocations = 0;
    let mut billed = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 40, "the hand-overs never finished");
        let cycle_end = billing::cycle_end_from_event(&event, SystemTime::now()).unwrap();
        let slice = billing::slice_from_event(&event).unwrap();
        let run = BillingRun {
            purchases_per_transaction: 2,
            concurrency: 2,
            hand_over: event["handOver"] == json!(true),
            slice,
            resume: billing::resume_from_event(&event, slice.as_ref(), &cycle_end).unwrap(),
            deadline: Some(Instant::now() + Duration::from_millis(250)),
            ..BillingRun::new(cycle_end)
        };
        let summary = match billing::run_billing(store, &run).await {
            Ok(summary) => summary,
            // The deadline is checked per index page: on a loaded machine a run may end before its first step
            // (the state machine retries OutOfTime, and so does this loop).
            Err(BillingError::OutOfTime) => continue,
            Err(other) => panic!("{other}"),
        };
        billed += summary.purchases_billed_to_client;
        assert_eq!((summary.purchases_billed_to_agency, summary.statements_made_payable), (0, 0));
        let answer = serde_json::to_value(&summary).unwrap();
        if summary.complete {
            assert!(answer.get("continueWith").is_none(), "{answer}");
            break;
        }
        let mut next = answer["continueWith"].clone();
        let resume = next.as_object_mut().unwrap().remove("resumeAt");
        assert!(summary.transactions > 0 || resume.is_some(), "a hand-over always made progress");
        // The same slice again (and where its reading stopped): the loop of one Map branch goes on with its
        // own event.
        assert_eq!(next, own_event, "{answer}");
        event = answer["continueWith"].clone();
    }
    env.faults.set_latency(None);
    println!("client part 1/3: {billed} purchases billed over {invocations} invocations with hand-overs");
    assert!(invocations > 2, "the time budget was meant to stop the first runs");
    assert_eq!(billed, expected);

    // Only the slice is billed, still building; the rest waits for its own runs.
    let books = ledger(&env, &book).await;
    for record in &books.records {
        assert_eq!(record.billed_to_client, in_part(&record.account_id), "{record:?}");
        assert!(!record.billed_to_agency);
    }
    assert!(books.client_statements.iter().all(|s| s.status == "building"));
    let rest = billing::run_billing(store, &BillingRun::new(cycle("2026-11-20T00:00:00Z"))).await.unwrap();
    assert_eq!(rest.purchases_billed_to_client, 240 - expected);
    assert_all_billed(&ledger(&env, &book).await, 240);
}

#[tokio::test]
async fn a_throttled_run_that_made_progress_hands_over_and_one_that_made_none_fails() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 3).await;
    let purchases = make_purchases(&book, 24, 7, "2026-11-10T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let cycle_end = cycle("2026-11-20T00:00:00Z");
    let run = |hand_over: bool| BillingRun {
        purchases_per_transaction: 2,
        concurrency: 1,
        hand_over,
        ..BillingRun::new(cycle_end.clone())
    };

    // Three steps go through, then the table throttles every write past the SDK's retries.
    env.faults.fail_after("TransactWriteItems", 3, Fault::Throttling);
    let summary = billing::run_billing(store, &run(true)).await.unwrap();
    let answer = serde_json::to_value(&summary).unwrap();
    assert!(!summary.complete, "{answer}");
    assert_eq!(summary.transactions, 3, "{answer}");
    assert_eq!(answer["handedOverOn"], json!("StorageUnavailable"), "{answer}");
    assert_eq!(
        answer["continueWith"],
        json!({"cycleEnd": cycle_end.as_str(), "handOver": true, "offCycle": true}),
        "{answer}"
    );
    assert_eq!(summary.statements_made_payable, 0, "an unfinished run made statements payable");

    // Still throttled: a run that commits nothing fails, so a loop on `complete` cannot spin; and without
    // `handOver` (an asynchronous invoke) a throttled run fails as before, whatever it committed.
    let none = billing::run_billing(store, &run(true)).await.unwrap_err();
    assert!(matches!(none, BillingError::Storage(shared::storage::StoreError::Unavailable(_))), "{none}");
    env.faults.clear();
    env.faults.fail_after("TransactWriteItems", 1, Fault::Throttling);
    let without = billing::run_billing(store, &run(false)).await.unwrap_err();
    assert_eq!(without.error_type(), "StorageUnavailable");

    // Once the table takes writes again, the continuation finishes the cycle, each purchase billed once.
    env.faults.clear();
    let rest = billing::run_billing(store, &run(true)).await.unwrap();
    assert!(rest.complete && rest.handed_over_on.is_none(), "{rest:?}");
    assert_all_billed(&ledger(&env, &book).await, 24);
}

/// Bills the cycle's purchases as the state machine's parts do (each side as one slice), leaving every
/// statement `building` for a final run.
async fn bill_both_sides_as_slices(store: &Store, cycle_end: &CycleEnd) {
    for side in [StatementKind::Client, StatementKind::Agency] {
        let slice = Some(billing::BillingSlice { side, part: None });
        let summary =
            billing::run_billing(store, &BillingRun { slice, ..BillingRun::new(cycle_end.clone()) }).await.unwrap();
        assert!(summary.complete && summary.statements_made_payable == 0, "{summary:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_written_after_the_finishing_query_still_becomes_payable() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 3).await;
    let cycle_end = cycle("2026-11-20T00:00:00Z");
    // Two accounts' purchases billed by the parts: their statements are in the building set.
    let early: Vec<_> = make_purchases(&book, 6, 41, "2026-11-05T00:00:00Z")
        .into_iter()
        .filter(|p| p.account_id != "acct-0002")
        .collect();
    record_all(store, &book, &early).await;
    bill_both_sides_as_slices(store, &cycle_end).await;

    // The final run's first read of the building set is answered late (read at once, answered 0.8 s later,
    // within the SDK's 1.5 s attempt timeout, so it is not retried);
    // meanwhile a straggling part bills a third account: a statement the first read cannot have seen, as
    // when the index has not yet caught up with the last part's final step.
    env.faults.inject_where("Query", "BUILDING#", Fault::SlowResponse(Duration::from_millis(800)), 1);
    let finishing = {
        let store = store.clone();
        let cycle_end = cycle_end.clone();
        tokio::spawn(async move { billing::run_billing(&store, &BillingRun::new(cycle_end)).await.unwrap() })
    };
    let waited = Instant::now();
    while env.faults.injected().is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(10), "the final run never read the building set");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let straggler: Vec<_> = make_purchases(&book, 3, 43, "2026-11-06T00:00:00Z")
        .into_iter()
        .filter(|p| p.account_id == "acct-0002")
        .collect();
    record_all(store, &book, &straggler).await;
    bill_both_sides_as_slices(store, &cycle_end).await;
    // Written while the first read's answer was on its way.
    assert!(waited.elapsed() < Duration::from_millis(800), "the straggler took too long: {:?}", waited.elapsed());
    let last = finishing.await.unwrap();

    // 3 client statements and 1 agency statement, all payable: none left building.
    println!("final run made {} statements payable", last.statements_made_payable);
    assert_eq!(last.statements_made_payable, 4, "{last:?}");
    let books = ledger(&env, &book).await;
    assert_all_billed(&books, early.len() + straggler.len());
    assert_eq!(books.client_statements.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_owns_nothing_stops_reading_at_its_deadline() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 4).await;
    let purchases = make_purchases(&book, 40, 47, "2026-11-05T00:00:00Z");
    record_all(store, &book, &purchases).await;
    // A part of the client side that holds none of the book's accounts: it reads every page and bills nothing.
    let of = 16;
    let index = (0..of).find(|k| book.account_ids().all(|a| owner_part(a, of) != *k)).unwrap();
    // Each index page takes 300 ms; the run has 200 ms.
    env.faults.set_latency(Some(testkit::faults::Latency {
        query_page: Duration::from_millis(300),
        ..testkit::faults::Latency::dynamodb()
    }));
    let run = BillingRun {
        hand_over: true,
        slice: Some(billing::BillingSlice { side: StatementKind::Client, part: Some(Part::new(index, of).unwrap()) }),
        deadline: Some(Instant::now() + Duration::from_millis(200)),
        ..BillingRun::new(cycle("2026-11-20T00:00:00Z"))
    };
    let started = Instant::now();
    let result = billing::run_billing(store, &run).await;
    let took = started.elapsed();
    env.faults.set_latency(None);
    println!("a part owning nothing answered after {took:.2?}: {result:?}");
    // It stops at the first page boundary past its deadline, not after all 4 shards (1.2 s).
    assert!(took < Duration::from_millis(650), "{took:?}");
    assert!(!matches!(&result, Ok(summary) if summary.complete), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_many_statements_hands_over_at_its_deadline_and_the_next_invocation_completes() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 2, 60).await;
    let purchases = make_purchases(&book, 60, 53, "2026-11-05T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let cycle_end = cycle("2026-11-20T00:00:00Z");
    bill_both_sides_as_slices(store, &cycle_end).await;

    // 62 statements to make payable at DynamoDB's latency, one update at a time, 10 per page, 250 ms per
    // invocation: each invocation makes some payable and hands over.
    env.faults.set_latency(Some(testkit::faults::Latency::dynamodb()));
    let mut event = json!({"cycleEnd": cycle_end.as_str(), "handOver": true, "offCycle": true});
    let (mut invocations, mut made_payable) = (0, 0);
    loop {
        invocations += 1;
        assert!(invocations <= 40, "the hand-overs never finished");
        let run = BillingRun {
            concurrency: 1,
            finish_page_size: 10,
            hand_over: true,
            deadline: Some(Instant::now() + Duration::from_millis(250)),
            ..BillingRun::new(billing::cycle_end_from_event(&event, SystemTime::now()).unwrap())
        };
        let summary = match billing::run_billing(store, &run).await {
            Ok(summary) => summary,
            // A loaded test machine may spend the whole budget before the first page: the state machine
            // retries OutOfTime, and so does this loop.
            Err(BillingError::OutOfTime) => continue,
            Err(other) => panic!("{other}"),
        };
        made_payable += summary.statements_made_payable;
        if summary.complete {
            break;
        }
        assert_eq!(summary.handed_over_on, Some("OutOfTime"), "{summary:?}");
        assert!(summary.statements_made_payable > 0, "a hand-over always made progress");
        event = serde_json::to_value(&summary).unwrap()["continueWith"].clone();
    }
    env.faults.set_latency(None);
    println!("62 statements made payable over {invocations} invocations");
    assert!(invocations > 1, "the deadline was meant to stop the first invocation");
    assert_eq!(made_payable, 62);
    assert_all_billed(&ledger(&env, &book).await, 60);
}

#[tokio::test]
async fn a_cycle_finished_days_after_its_end_gives_clients_the_due_days_from_then() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 2).await;
    let purchases = make_purchases(&book, 4, 59, "2026-10-10T00:00:00Z");
    record_all(store, &book, &purchases).await;
    // A cycle that ended weeks ago (its run failed and is re-run today), 30 due days.
    let cycle_end = cycle("2026-11-01T00:00:00Z");
    let payable_from = SystemTime::now();
    let summary = billing::run_billing(store, &BillingRun::new(cycle_end.clone())).await.unwrap();
    assert_eq!(summary.statements_made_payable, 3);
    let payable_until = SystemTime::now();
    // Due at the end of the 30th day after today, anywhere on Earth: 12:00 UTC the day after.
    let expected: BTreeSet<String> = [payable_from, payable_until]
        .into_iter()
        .map(|at| shared::domain::billing::due_at(&cycle_end, at, 30))
        .collect();
    let day = |text: &str| humantime::parse_rfc3339(text).unwrap();
    for account in book.account_ids() {
        let statement = &store.client_statements(account).await.unwrap()[0];
        let due = statement.due_at.clone().unwrap();
        assert!(expected.contains(&due), "{due} not in {expected:?}");
        assert!(due.ends_with("T12:00:00.000Z"), "{due}");
        let days_after_payable = day(&due).duration_since(payable_from).unwrap().as_secs() / 86_400;
        assert!((30..=31).contains(&days_after_payable), "{due}: {days_after_payable} days after today");
        // Not the cycle end plus 30 days (1 December), long past.
        assert!(due.as_str() > "2026-12-31", "{due}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_owns_nothing_hands_over_where_its_reading_stopped_and_resumes_there() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let book = create_book(store, 1, 4).await;
    let purchases = make_purchases(&book, 40, 53, "2026-11-05T00:00:00Z");
    record_all(store, &book, &purchases).await;
    // A part of the client side that holds none of the book's accounts: it reads every page and bills nothing.
    let of = 16;
    let index = (0..of).find(|k| book.account_ids().all(|a| owner_part(a, of) != *k)).unwrap();
    let slice = Some(billing::BillingSlice { side: StatementKind::Client, part: Some(Part::new(index, of).unwrap()) });
    // Pages of 3 purchases, each answered after 100 ms; the run has 350 ms: a few pages, not the 40 purchases.
    env.faults.set_latency(Some(testkit::faults::Latency {
        query_page: Duration::from_millis(100),
        ..testkit::faults::Latency::dynamodb()
    }));
    let run = BillingRun {
        hand_over: true,
        slice,
        read_page_size: Some(3),
        deadline: Some(Instant::now() + Duration::from_millis(350)),
        ..BillingRun::new(cycle("2026-11-20T00:00:00Z"))
    };
    // Pages read are progress: it hands over with where it stopped, instead of failing OutOfTime.
    let first = billing::run_billing(store, &run).await.unwrap();
    env.faults.set_latency(None);
    let answer = serde_json::to_value(&first).unwrap();
    println!("first: {answer}");
    assert!(!first.complete && first.handed_over_on == Some("OutOfTime"), "{answer}");
    assert!(first.items_read > 0 && first.items_read < 40, "{answer}");
    let next = answer["continueWith"].clone();
    assert!(next["resumeAt"]["shard"].is_u64(), "{next}");
    assert_eq!(next["side"], json!("client"));

    // The continuation (as the state machine sends it, through the function's event checks) reads on from
    // there: every purchase is read once over the two invocations, not the first pages again.
    let mut rest = next;
    let mut read = first.items_read;
    loop {
        let summary = invoke(store, rest.clone(), ms_from_now(60_000)).await.unwrap();
        read += summary.items_read;
        if summary.complete {
            break;
        }
        rest = summary.continue_with.unwrap();
    }
    assert_eq!(read, 40, "each unbilled purchase read once over the hand-over");
}

#[tokio::test]
async fn a_throttled_part_resumes_after_what_it_settled_and_bills_every_purchase_once() {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    // Two accounts in different parts: every page holds purchases of both, and the part bills one account's,
    // two a step, so its pages settle as their steps commit.
    let book = create_book(store, 1, 2).await;
    let ids: Vec<&str> = book.account_ids().collect();
    let of = (2..64).find(|of| owner_part(ids[0], *of) != owner_part(ids[1], *of)).unwrap();
    let part = Part::new(owner_part(ids[0], of), of).unwrap();
    let purchases = make_purchases(&book, 80, 59, "2026-11-05T00:00:00Z");
    record_all(store, &book, &purchases).await;
    let cycle_end = cycle("2026-11-20T00:00:00Z");
    let run = BillingRun {
        hand_over: true,
        purchases_per_transaction: 2,
        concurrency: 1,
        read_page_size: Some(4),
        slice: Some(billing::BillingSlice { side: StatementKind::Client, part: Some(part) }),
        ..BillingRun::new(cycle_end.clone())
    };
    // Six steps go through, then the table throttles every write past the SDK's retries.
    env.faults.fail_after("TransactWriteItems", 6, Fault::Throttling);
    let first = billing::run_billing(store, &run).await.unwrap();
    env.faults.clear();
    let answer = serde_json::to_value(&first).unwrap();
    println!("first: {answer}");
    assert_eq!(answer["handedOverOn"], json!("StorageUnavailable"), "{answer}");
    assert_eq!(first.purchases_billed_to_client, 12, "{answer}");
    let next = answer["continueWith"].clone();
    // After the pages it settled: within a shard (`after`), or at the start of a later shard when every page of
    // the earlier ones had settled by the time the table throttled (which depends on how far reading ran ahead).
    let resume = &next["resumeAt"];
    assert!(
        resume["after"].is_object() || resume["shard"].as_u64().is_some_and(|shard| shard > 0),
        "the part resumes after the pages it settled: {next}"
    );

    // The continuation (through the function's event checks) starts after what was settled: it does not read
    // the other part's purchases of those pages again, and
    // bills every purchase of its part left, once.
    let rest = invoke(store, next, ms_from_now(60_000)).await.unwrap();
    println!("rest: {}", serde_json::to_value(&rest).unwrap());
    assert!(rest.complete, "{rest:?}");
    assert_eq!(rest.purchases_billed_to_client, 40 - 12);
    // From the start it would read every purchase still unbilled on this side (80 - 12); it skips at least the
    // first settled page.
    assert!(rest.items_read < 80 - 12, "read from the start again: {}", rest.items_read);
    // The other part, the agency side and the final run: every purchase billed once on both sides.
    billing::run_billing(store, &BillingRun::new(cycle_end)).await.unwrap();
    assert_all_billed(&ledger(&env, &book).await, 80);
}
