//! The agency's clients page with one client of 100,000 unbilled purchases (issue 22.4): the page reads the
//! running unbilled sums on the account items, so its cost does not grow with what the clients bought. Beside it,
//! what the page used to do per client: read the client's whole `client-unbilled` index partition.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use rust_decimal::Decimal;
use shared::domain::{self, CreditType, PurchaseRecord, Quantities};
use shared::storage::{items, keys};
use shared::table::CLIENT_UNBILLED_INDEX;
use testkit::faults::Latency;
use testkit::{ApiEvent, COFFEE, TestEnv, answer};

const AGENCY: &str = "agency-northwind";
const PAGE_RUNS: usize = 20;

/// Writes `purchases` unbilled purchases of one client as the purchase transaction leaves them (the record with
/// its `client-unbilled` keys, and the account's running sums), 25 per BatchWriteItem without latency.
async fn fill(env: &TestEnv, purchases: usize) -> Result<(), String> {
    let store = &env.app.store;
    let (default, agency) = store.pricing(AGENCY).await.map_err(|e| e.to_string())?;
    let pricing = domain::resolve_pricing(AGENCY, &default, agency.as_ref()).map_err(|e| e.0)?;
    let base = humantime::parse_rfc3339("2026-11-01T00:00:00Z").expect("a timestamp");
    let (mut count, mut at_price, mut at_cost) = (0u64, Decimal::ZERO, Decimal::ZERO);
    let mut batch = Vec::with_capacity(25);
    for i in 0..purchases {
        let quote =
            domain::quote(&pricing, &Quantities::from_pairs([(CreditType::Pixel, 1)])).map_err(|e| format!("{e:?}"))?;
        let created = base + Duration::from_millis(i as u64);
        let purchase = PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), COFFEE, AGENCY, created, quote, None);
        (count, at_price, at_cost) = (count + 1, at_price + purchase.total, at_cost + purchase.total_at_cost);
        let mut item = items::to_item("purchase", &purchase).map_err(|e| e.to_string())?;
        item.extend(keys::key(keys::account(COFFEE), &keys::purchase_sk(&purchase.purchase_id)));
        item.insert(CLIENT_UNBILLED_INDEX.partition_key.to_owned(), items::s(keys::account(COFFEE)));
        item.insert(
            CLIENT_UNBILLED_INDEX.sort_key.to_owned(),
            items::s(format!("{}#{}", purchase.created_at, purchase.purchase_id)),
        );
        let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| e.to_string())?;
        batch.push(WriteRequest::builder().put_request(put).build());
        if batch.len() == 25 || i + 1 == purchases {
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
    let [count_name, price_name, cost_name] = keys::unbilled_sums_attributes(AGENCY);
    env.client
        .update_item()
        .table_name(&env.table)
        .set_key(Some(keys::key(keys::account(COFFEE), keys::ACCOUNT_SK)))
        .update_expression("SET #c = :c, #p = :p, #k = :k")
        .expression_attribute_names("#c", count_name)
        .expression_attribute_names("#p", price_name)
        .expression_attribute_names("#k", cost_name)
        .expression_attribute_values(":c", AttributeValue::N(count.to_string()))
        .expression_attribute_values(":p", AttributeValue::N(at_price.to_string()))
        .expression_attribute_values(":k", AttributeValue::N(at_cost.to_string()))
        .send()
        .await
        .map_err(|e| format!("UpdateItem: {e:?}"))?;
    Ok(())
}

/// Prints the page's median time and DynamoDB calls, and the old per-client read's time and pages.
pub async fn measure(purchases: usize) -> Result<(), String> {
    let env = TestEnv::seeded().await;
    let started = Instant::now();
    fill(&env, purchases).await?;
    let setup = started.elapsed();
    env.faults.set_latency(Some(Latency::dynamodb()));

    let mut times = Vec::with_capacity(PAGE_RUNS);
    let mut calls = 0;
    for _ in 0..PAGE_RUNS {
        env.operations.reset();
        let event = ApiEvent::agency("GET", "/agencies/{agencyId}/clients", AGENCY).as_agency_admin(AGENCY);
        let started = Instant::now();
        let page = answer(shared::api::agency_read(&env.app, event.request()).await);
        times.push(started.elapsed());
        calls = env.operations.operations().len();
        let coffee = page.body["clients"].as_array().and_then(|c| c.iter().find(|c| c["accountId"] == COFFEE));
        let counted = coffee.and_then(|c| c["unbilled"]["purchases"].as_u64());
        if page.status != 200 || counted != Some(purchases as u64) {
            return Err(format!("the clients page answered {} {}", page.status, page.body));
        }
    }
    times.sort();

    // What the page did per client before: the client's whole client-unbilled partition, page by page.
    let started = Instant::now();
    let mut pages = 0;
    let mut read = 0;
    let mut start = None;
    loop {
        let out = env
            .client
            .query()
            .table_name(&env.table)
            .index_name(CLIENT_UNBILLED_INDEX.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", CLIENT_UNBILLED_INDEX.partition_key)
            .expression_attribute_values(":pk", AttributeValue::S(keys::account(COFFEE)))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| format!("Query: {e:?}"))?;
        pages += 1;
        read += out.items().len();
        start = out.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let old = started.elapsed();
    env.faults.set_latency(None);
    println!(
        "agency clients page, one client with {purchases} unbilled purchases (setup {setup:.1?}), DynamoDB-like \
         latency: median {:.1?}, max {:.1?} over {PAGE_RUNS} pages, {calls} DynamoDB calls per page; the old \
         per-client read of that client alone (client-unbilled, {pages} Query pages, {read} items): {old:.1?} \
         (the engine's page size: ~1 MB, as DynamoDB's)",
        times[PAGE_RUNS / 2],
        times[PAGE_RUNS - 1],
    );
    Ok(())
}
