//! Billing throughput: the real billing run (`shared::billing::run_billing`) against the embedded dynoxide with
//! DynamoDB-like latency injected below the SDK (`testkit::faults::Latency::dynamodb`), at one step in flight
//! and at the default concurrency; purchases billed per second and the projection for a million.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use rust_decimal::Decimal;
use shared::billing::{self, BillingRun};
use shared::domain::billing::CycleEnd;
use shared::domain::{self, CreditType, PurchaseRecord, Quantities, Rate};
use shared::storage::{Store, items, keys, unbilled_shard};
use shared::table::{UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX};
use testkit::TestEnv;
use testkit::faults::Latency;
use tokio::sync::Semaphore;

/// One measured run.
pub struct BillingRow {
    pub concurrency: usize,
    pub purchases: usize,
    pub accounts: usize,
    pub agencies: usize,
    pub elapsed: Duration,
    /// Of `elapsed`, making the statements payable: grows with the statements, not the purchases.
    pub finish: Duration,
    pub transactions: u64,
    pub queries: u64,
    pub statements_made_payable: u64,
}

impl BillingRow {
    /// Purchases billed (to their client and to their agency) per second of billing proper (without making the statements payable).
    pub fn billing_per_second(&self) -> f64 {
        self.purchases as f64 / (self.elapsed - self.finish).as_secs_f64()
    }

    /// The time for a million: billing at this rate, plus making this run's statements payable (a million
    /// purchases of the same book have the same statements).
    pub fn million(&self) -> Duration {
        Duration::from_secs_f64(1_000_000.0 / self.billing_per_second()) + self.finish
    }
}

fn d(text: &str) -> Decimal {
    text.parse().expect("a decimal")
}

/// A fresh table holding `purchases` unbilled purchases over `accounts` accounts and `agencies` agencies,
/// written with BatchWriteItem (25 a call, no latency) as the purchase transaction leaves them: the record
/// and both unbilled index keys. Billing reads nothing else.
async fn fill(purchases: usize, accounts: usize, agencies: usize) -> Result<TestEnv, String> {
    let env = TestEnv::empty().await;
    let store = &env.app.store;
    let rates: BTreeMap<CreditType, Rate> = [
        (CreditType::Audience, Rate { price: d("30.00"), cost: d("18.00") }),
        (CreditType::Enrichment, Rate { price: d("0.0150"), cost: d("0.0045") }),
        (CreditType::Pixel, Rate { price: d("12.00"), cost: d("6.25") }),
        (CreditType::CustomModel, Rate { price: d("149.9999"), cost: d("80.0001") }),
    ]
    .into();
    store.upsert_default_pricing(&rates).await.map_err(|e| e.to_string())?;
    let (default, _) = store.pricing("agency-0").await.map_err(|e| e.to_string())?;
    let pricing = domain::resolve_pricing("agency-0", &default, None).map_err(|e| e.0)?;
    let base = humantime::parse_rfc3339("2026-11-01T00:00:00Z").expect("a timestamp");
    let permits = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    let mut batch = Vec::with_capacity(25);
    for i in 0..purchases {
        let account = format!("acct-{:05}", i % accounts);
        let agency = format!("agency-{}", (i % accounts) % agencies);
        let quantities =
            Quantities::from_pairs([(CreditType::Audience, 1 + (i % 3) as u64), (CreditType::Enrichment, 333)]);
        let quote = domain::quote(&pricing, &quantities).map_err(|e| format!("{e:?}"))?;
        let created = base + Duration::from_millis(i as u64);
        let purchase =
            PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), &account, &agency, created, quote, None);
        // The purchase item as `Store::purchase_transaction` writes it.
        let mut item = items::to_item("purchase", &purchase).map_err(|e| e.to_string())?;
        item.extend(keys::key(keys::account(&account), &keys::purchase_sk(&purchase.purchase_id)));
        let shard = items::s(keys::unbilled(unbilled_shard(&purchase.purchase_id)));
        let sort = items::s(format!("{}#{}", purchase.created_at, purchase.purchase_id));
        for index in [UNBILLED_CLIENT_INDEX, UNBILLED_AGENCY_INDEX] {
            item.insert(index.partition_key.to_owned(), shard.clone());
            item.insert(index.sort_key.to_owned(), sort.clone());
        }
        let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| e.to_string())?;
        batch.push(WriteRequest::builder().put_request(put).build());
        if batch.len() == 25 || i + 1 == purchases {
            let requests = std::mem::take(&mut batch);
            let (client, table) = (env.client.clone(), env.table.clone());
            let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            tasks.spawn(async move {
                let _permit = permit;
                let mut requests = requests;
                while !requests.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, requests)
                        .send()
                        .await
                        .map_err(|e| format!("BatchWriteItem: {e:?}"))?;
                    requests = out.unprocessed_items.and_then(|mut u| u.remove(&table)).unwrap_or_default();
                }
                Ok::<(), String>(())
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(env)
}

/// Bills `purchases` purchases once per concurrency, each on a fresh table, with DynamoDB-like latency.
pub async fn measure(
    purchases: usize,
    accounts: usize,
    agencies: usize,
    concurrencies: &[usize],
) -> Result<Vec<BillingRow>, String> {
    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let started = Instant::now();
        let env = fill(purchases, accounts, agencies).await?;
        let setup = started.elapsed();
        env.faults.set_latency(Some(Latency::dynamodb()));
        let run = BillingRun { concurrency, ..BillingRun::new(CycleEnd::parse("2026-11-20T00:00:00Z")?) };
        let store: &Store = &env.app.store;
        let started = Instant::now();
        let summary = billing::run_billing(store, &run).await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        env.faults.set_latency(None);
        if summary.purchases_billed_to_client != purchases as u64
            || summary.purchases_billed_to_agency != purchases as u64
            || !summary.complete
        {
            return Err(format!("the billing run did not bill every purchase once: {summary:?}"));
        }
        let row = BillingRow {
            concurrency,
            purchases,
            accounts,
            agencies,
            elapsed,
            finish: Duration::from_millis(summary.finish_ms),
            transactions: summary.transactions,
            queries: summary.queries,
            statements_made_payable: summary.statements_made_payable,
        };
        println!(
            "billing, c={concurrency}: {purchases} purchases in {:.2?} ({:.0}/s billing proper, {} transactions, \
             {} queries, {} statements made payable in {:.2?}; setup {:.2?}); 1,000,000 projected in {:.0?}",
            elapsed,
            row.billing_per_second(),
            row.transactions,
            row.queries,
            row.statements_made_payable,
            row.finish,
            setup,
            row.million()
        );
        rows.push(row);
    }
    Ok(rows)
}
