//! Billing runs, purchase history and statements in DynamoDB.
//!
//! Items added by billing (same table as the rest of `storage`):
//!
//! | item                      | pk                    | sk                                             |
//! |---------------------------|-----------------------|------------------------------------------------|
//! | client statement          | `ACCOUNT#{accountId}` | `STATEMENT#{cycleEnd}`                         |
//! | client statement part     | `ACCOUNT#{accountId}` | `STATEMENT#{cycleEnd}#PART#{firstPurchaseId}`  |
//! | agency statement          | `AGENCY#{agencyId}`   | `STATEMENT#{cycleEnd}`                         |
//! | agency statement part     | `AGENCY#{agencyId}`   | `STATEMENT#{cycleEnd}#PART#{firstPurchaseId}`  |
//!
//! A statement item holds the sums (`total`, `purchaseCount`, `quantity*`/`amount*` per credit type) as
//! numbers that each billing step `ADD`s to; the purchase ids live in one part item per step (at most 98),
//! so a statement never nears the 400 KB item limit however many purchases it covers.
//!
//! Exactly once: one step is one `TransactWriteItems` holding the statement's `ADD`s, the part and, for each
//! purchase, `SET billedTo… = true, …StatementId` + `REMOVE` of its unbilled index keys under the condition
//! `billedTo… = false`. Either all of it happens or none, so at every moment a statement's sums are the sums
//! of exactly the purchases marked with its id, and no purchase can be marked twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{PurchaseRecord, Store, StoreError, classify, internal, key, keys, n, s};
use crate::billing::{
    self, BillingError, BillingRun, RunSummary, STATUS_PENDING_PAYMENT, Statement, StatementDelta, StatementKind,
    StatementLine,
};
use crate::domain::{CreditType, round_to_cents};
use crate::table::{
    PARTITION_KEY, SORT_KEY, SparseIndex, UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX, UNBILLED_SHARDS,
};

const STATEMENT_SK_PREFIX: &str = "STATEMENT#";
const PART_MARKER: &str = "#PART#";

fn statement_sk(cycle_end: &str) -> String {
    format!("{STATEMENT_SK_PREFIX}{cycle_end}")
}

fn statement_part_sk(cycle_end: &str, first_purchase_id: &str) -> String {
    format!("{STATEMENT_SK_PREFIX}{cycle_end}{PART_MARKER}{first_purchase_id}")
}

/// Top-level number attributes of a statement per credit type (top-level so `ADD` can create them).
fn line_attributes(credit_type: CreditType) -> (&'static str, &'static str) {
    match credit_type {
        CreditType::Audience => ("quantityAudience", "amountAudience"),
        CreditType::Enrichment => ("quantityEnrichment", "amountEnrichment"),
        CreditType::Pixel => ("quantityPixel", "amountPixel"),
        CreditType::CustomModel => ("quantityCustomModel", "amountCustomModel"),
    }
}

/// Where one kind of billing lives in the table.
struct BillingSide {
    kind: StatementKind,
    index: SparseIndex,
    /// The purchase's flag and statement id attributes.
    billed_flag: &'static str,
    statement_id_attribute: &'static str,
    /// The attribute naming the owner on the statement item.
    owner_attribute: &'static str,
}

fn side(kind: StatementKind) -> BillingSide {
    match kind {
        StatementKind::Client => BillingSide {
            kind,
            index: UNBILLED_CLIENT_INDEX,
            billed_flag: "billedToClient",
            statement_id_attribute: "clientStatementId",
            owner_attribute: "accountId",
        },
        StatementKind::Agency => BillingSide {
            kind,
            index: UNBILLED_AGENCY_INDEX,
            billed_flag: "billedToAgency",
            statement_id_attribute: "agencyStatementId",
            owner_attribute: "agencyId",
        },
    }
}

impl BillingSide {
    fn statement_pk(&self, owner: &str) -> String {
        match self.kind {
            StatementKind::Client => keys::account(owner),
            StatementKind::Agency => keys::agency(owner),
        }
    }
}

/// What the client and agency sides of a run share.
struct RunState<'a> {
    run: &'a BillingRun,
    run_id: String,
    committed: AtomicUsize,
}

impl RunState<'_> {
    /// The test hook and the deadline are checked before each transaction, never inside one.
    fn may_start_transaction(&self) -> Result<(), BillingError> {
        let committed = self.committed.load(Ordering::SeqCst);
        if self.run.stop_after_batches.is_some_and(|limit| committed >= limit) {
            return Err(BillingError::Stopped { batches: committed });
        }
        if self.run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(BillingError::OutOfTime);
        }
        Ok(())
    }
}

/// One side's counts, kept even when it fails so the partial summary can be logged.
#[derive(Default)]
struct Tally {
    statements: BTreeSet<String>,
    purchases_billed: u64,
    amount: Decimal,
    items_read: u64,
    items_scanned: u64,
    queries: u64,
    transactions: u64,
    already_billed: u64,
    left_for_next_cycle: u64,
}

/// How a step's transaction ended when it did not fail outright.
enum StepOutcome {
    Committed,
    /// These positions (in the step's purchase list) were billed by someone else since we read them.
    AlreadyBilled(Vec<usize>),
    /// The statement is no longer `pending_payment` (or has another currency): it takes nothing more.
    StatementClosed,
}

impl Store {
    /// Bills every purchase created before the run's cycle end that is not yet billed, to its client and to its
    /// agency, independently. Reads only the sparse unbilled indexes (Query per shard, never a Scan), so the
    /// work grows with the unbilled purchases, not with the table. Safe to run again, concurrently or after a
    /// crash at any point: see the module comment.
    pub async fn run_billing(&self, run: &BillingRun) -> Result<RunSummary, BillingError> {
        let started = Instant::now();
        let state = RunState { run, run_id: uuid::Uuid::now_v7().to_string(), committed: AtomicUsize::new(0) };
        tracing::info!(run_id = %state.run_id, cycle_end = %run.cycle_end, "billing run started");
        // One side after the other, never both at once: both sides update the same purchase items, and DynamoDB
        // cancels a transaction touching an item another transaction is writing (TransactionConflict). The
        // agency side runs even if the client side failed, as the two are billed independently.
        let (client, client_result) = self.bill_side(StatementKind::Client, &state).await;
        let (agency, agency_result) = self.bill_side(StatementKind::Agency, &state).await;
        let summary = RunSummary {
            run_id: state.run_id.clone(),
            cycle_end: run.cycle_end.to_string(),
            client_statements_written: client.statements.len() as u64,
            agency_statements_written: agency.statements.len() as u64,
            purchases_billed_to_client: client.purchases_billed,
            purchases_billed_to_agency: agency.purchases_billed,
            // Sums of cent amounts: rounding only fixes the rendering at two places ("0.00").
            total_at_price: round_to_cents(client.amount),
            total_at_cost: round_to_cents(agency.amount),
            items_read: client.items_read + agency.items_read,
            items_scanned: client.items_scanned + agency.items_scanned,
            queries: client.queries + agency.queries,
            transactions: client.transactions + agency.transactions,
            purchases_already_billed: client.already_billed + agency.already_billed,
            purchases_left_for_next_cycle: client.left_for_next_cycle + agency.left_for_next_cycle,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        match client_result.and(agency_result) {
            Ok(()) => {
                log_summary(&summary, None);
                Ok(summary)
            }
            Err(err) => {
                log_summary(&summary, Some(&err));
                Err(err)
            }
        }
    }

    async fn bill_side(&self, kind: StatementKind, state: &RunState<'_>) -> (Tally, Result<(), BillingError>) {
        let mut tally = Tally::default();
        let result = self.bill_side_inner(&side(kind), state, &mut tally).await;
        (tally, result)
    }

    async fn bill_side_inner(
        &self,
        side: &BillingSide,
        state: &RunState<'_>,
        tally: &mut Tally,
    ) -> Result<(), BillingError> {
        let batch_size = state.run.purchases_per_transaction.clamp(1, billing::MAX_PURCHASES_PER_TRANSACTION);
        // Per owner, purchases read but not yet billed: batches fill across pages and shards.
        let mut pending: BTreeMap<String, Vec<PurchaseRecord>> = BTreeMap::new();
        let mut buffered = 0usize;
        for shard in 0..UNBILLED_SHARDS {
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                // Billing a purchase removes it from the index behind our position; the next page starts after
                // the last key read, so nothing is skipped or read twice.
                let page = self
                    .client
                    .query()
                    .table_name(&self.table_name)
                    .index_name(side.index.name)
                    .key_condition_expression("#shard = :shard AND #created < :cycleEnd")
                    .expression_attribute_names("#shard", side.index.partition_key)
                    .expression_attribute_names("#created", side.index.sort_key)
                    .expression_attribute_values(":shard", s(keys::unbilled(shard)))
                    .expression_attribute_values(":cycleEnd", s(state.run.cycle_end.as_str()))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| classify("Query unbilled purchases", e))?;
                tally.queries += 1;
                tally.items_read += page.count.max(0) as u64;
                tally.items_scanned += page.scanned_count.max(0) as u64;
                for item in page.items.unwrap_or_default() {
                    let purchase: PurchaseRecord =
                        serde_dynamo::from_item(item).map_err(|e| internal("unbilled purchase item", e))?;
                    let owner = side.kind.owner(&purchase).to_owned();
                    let batch = pending.entry(owner.clone()).or_default();
                    batch.push(purchase);
                    buffered += 1;
                    if batch.len() >= batch_size {
                        let batch = pending.remove(&owner).unwrap_or_default();
                        buffered -= batch.len();
                        self.bill_step(side, &owner, batch, state, tally).await?;
                    }
                }
                if buffered >= state.run.max_buffered_purchases {
                    for (owner, batch) in std::mem::take(&mut pending) {
                        self.bill_step(side, &owner, batch, state, tally).await?;
                    }
                    buffered = 0;
                }
                match page.last_evaluated_key {
                    Some(last) if !last.is_empty() => start = Some(last),
                    _ => break,
                }
            }
        }
        for (owner, batch) in pending {
            self.bill_step(side, &owner, batch, state, tally).await?;
        }
        Ok(())
    }

    /// Bills a batch of one owner's purchases in one transaction, dropping and retrying past purchases that were
    /// billed concurrently, and retrying transaction conflicts with bounded jittered backoff.
    async fn bill_step(
        &self,
        side: &BillingSide,
        owner: &str,
        mut purchases: Vec<PurchaseRecord>,
        state: &RunState<'_>,
        tally: &mut Tally,
    ) -> Result<(), BillingError> {
        let cycle_end = state.run.cycle_end.as_str();
        let statement_id = side.kind.statement_id(owner, &state.run.cycle_end);
        // Sorted and unique: a transaction may not touch one item twice, and the part is named by the first id.
        purchases.sort_by(|a, b| a.purchase_id.cmp(&b.purchase_id));
        purchases.dedup_by(|a, b| a.purchase_id == b.purchase_id);
        while !purchases.is_empty() {
            state.may_start_transaction()?;
            let delta = billing::statement_delta(side.kind, &purchases);
            let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            let items = self.step_items(side, owner, &statement_id, cycle_end, &purchases, &delta, &now)?;
            let token = step_token(&state.run_id, &statement_id, &purchases);
            match self.send_step(items, &token).await? {
                StepOutcome::Committed => {
                    state.committed.fetch_add(1, Ordering::SeqCst);
                    tally.transactions += 1;
                    tally.statements.insert(statement_id.clone());
                    tally.purchases_billed += delta.purchase_count;
                    tally.amount += delta.total;
                    return Ok(());
                }
                StepOutcome::AlreadyBilled(positions) => {
                    tracing::info!(statement_id = %statement_id, count = positions.len(), "purchases already billed by another run; dropped");
                    tally.already_billed += positions.len() as u64;
                    let dropped: BTreeSet<usize> = positions.into_iter().collect();
                    purchases = purchases
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !dropped.contains(i))
                        .map(|(_, p)| p)
                        .collect();
                }
                StepOutcome::StatementClosed => {
                    tracing::warn!(
                        statement_id = %statement_id,
                        count = purchases.len(),
                        "statement no longer pending_payment; its purchases stay unbilled for the next cycle"
                    );
                    tally.left_for_next_cycle += purchases.len() as u64;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Sends one step, resending the same items and token (bounded, with jittered backoff) while DynamoDB reports
    /// conflicts or the outcome is unknown.
    async fn send_step(&self, items: Vec<TransactWriteItem>, token: &str) -> Result<StepOutcome, StoreError> {
        let purchases = items.len().saturating_sub(2);
        let outcome = self
            .transact_with_retries("TransactWriteItems billing step", &items, token, true, |reasons| {
                let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
                if failed(0) {
                    return Ok(Some(StepOutcome::StatementClosed));
                }
                let billed: Vec<usize> = (0..purchases).filter(|i| failed(i + 2)).collect();
                if !billed.is_empty() {
                    return Ok(Some(StepOutcome::AlreadyBilled(billed)));
                }
                if failed(1) {
                    // A part exists for our first purchase only if that purchase was billed, which its own
                    // condition would have reported.
                    return Err(StoreError::Internal("statement part exists for an unbilled purchase".into()));
                }
                Ok(None)
            })
            .await?;
        Ok(outcome.unwrap_or(StepOutcome::Committed))
    }

    /// The step's items: [0] the statement's sums, [1] the part listing the purchase ids, [2..] each purchase.
    #[allow(clippy::too_many_arguments)]
    fn step_items(
        &self,
        side: &BillingSide,
        owner: &str,
        statement_id: &str,
        cycle_end: &str,
        purchases: &[PurchaseRecord],
        delta: &StatementDelta,
        now: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building a billing step", e);
        let currency = &purchases[0].currency;
        if purchases.iter().any(|p| &p.currency != currency) {
            return Err(StoreError::Internal(format!("purchases of {owner} in several currencies")));
        }
        let pk = side.statement_pk(owner);

        // 0. The statement: created by the first step, summed into by every step while it is pending payment.
        let mut names = HashMap::from([
            ("#id".to_owned(), "statementId".to_owned()),
            ("#kind".to_owned(), "kind".to_owned()),
            ("#owner".to_owned(), side.owner_attribute.to_owned()),
            ("#cycleEnd".to_owned(), "cycleEnd".to_owned()),
            ("#status".to_owned(), "status".to_owned()),
            ("#currency".to_owned(), "currency".to_owned()),
            ("#createdAt".to_owned(), "createdAt".to_owned()),
            ("#updatedAt".to_owned(), "updatedAt".to_owned()),
            ("#total".to_owned(), "total".to_owned()),
            ("#count".to_owned(), "purchaseCount".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":id".to_owned(), s(statement_id)),
            (":kind".to_owned(), s(side.kind.as_str())),
            (":owner".to_owned(), s(owner)),
            (":cycleEnd".to_owned(), s(cycle_end)),
            (":pending".to_owned(), s(STATUS_PENDING_PAYMENT)),
            (":currency".to_owned(), s(currency)),
            (":now".to_owned(), s(now)),
            (":total".to_owned(), n(delta.total)),
            (":count".to_owned(), n(delta.purchase_count)),
        ]);
        let mut adds = vec!["#total :total".to_owned(), "#count :count".to_owned()];
        for (i, (credit_type, sum)) in delta.lines.iter().enumerate() {
            let (quantity_attribute, amount_attribute) = line_attributes(*credit_type);
            names.insert(format!("#q{i}"), quantity_attribute.to_owned());
            names.insert(format!("#a{i}"), amount_attribute.to_owned());
            values.insert(format!(":q{i}"), n(sum.quantity));
            values.insert(format!(":a{i}"), n(sum.amount));
            adds.push(format!("#q{i} :q{i}"));
            adds.push(format!("#a{i} :a{i}"));
        }
        let statement_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(key(pk.clone(), &statement_sk(cycle_end))))
            .update_expression(format!(
                "SET #id = :id, #kind = :kind, #owner = :owner, #cycleEnd = :cycleEnd, #status = :pending, \
                 #currency = :currency, #createdAt = if_not_exists(#createdAt, :now), #updatedAt = :now ADD {}",
                adds.join(", ")
            ))
            // Once the payment step has taken the statement, nothing may be added to it.
            .condition_expression("attribute_not_exists(pk) OR (#status = :pending AND #currency = :currency)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build)?;

        // 1. The part: this step's purchase ids. Its key is unique because its first purchase is billed only once.
        let part = HashMap::from([
            (PARTITION_KEY.to_owned(), s(&pk)),
            (SORT_KEY.to_owned(), s(statement_part_sk(cycle_end, &purchases[0].purchase_id))),
            ("statementId".to_owned(), s(statement_id)),
            ("kind".to_owned(), s(side.kind.as_str())),
            ("purchaseIds".to_owned(), AttributeValue::Ss(purchases.iter().map(|p| p.purchase_id.clone()).collect())),
            ("purchaseCount".to_owned(), n(delta.purchase_count)),
            ("total".to_owned(), n(delta.total)),
            ("createdAt".to_owned(), s(now)),
        ]);
        let part_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(part))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;

        let mut items = vec![
            TransactWriteItem::builder().update(statement_update).build(),
            TransactWriteItem::builder().put(part_put).build(),
        ];

        // 2.. Each purchase: marked billed and out of the unbilled index, only if nobody billed it meanwhile.
        for purchase in purchases {
            let update = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(key(keys::account(&purchase.account_id), &keys::purchase_sk(&purchase.purchase_id))))
                .update_expression("SET #flag = :billed, #statement = :id REMOVE #indexPk, #indexSk")
                .condition_expression("#flag = :unbilled")
                .expression_attribute_names("#flag", side.billed_flag)
                .expression_attribute_names("#statement", side.statement_id_attribute)
                .expression_attribute_names("#indexPk", side.index.partition_key)
                .expression_attribute_names("#indexSk", side.index.sort_key)
                .expression_attribute_values(":billed", AttributeValue::Bool(true))
                .expression_attribute_values(":unbilled", AttributeValue::Bool(false))
                .expression_attribute_values(":id", s(statement_id))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }

    // ---- statements ------------------------------------------------------------------------------------------

    /// An account's client statements, newest cycle first, with their purchase ids.
    pub async fn client_statements(&self, account_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Client, keys::account(account_id)).await
    }

    /// An agency's statements (at cost), newest cycle first. Never exposed to clients.
    pub async fn agency_statements(&self, agency_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Agency, keys::agency(agency_id)).await
    }

    async fn statements(&self, kind: StatementKind, pk: String) -> Result<Vec<Statement>, StoreError> {
        let mut headers = Vec::new();
        let mut ids: HashMap<String, Vec<String>> = HashMap::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table_name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(STATEMENT_SK_PREFIX))
                .scan_index_forward(false)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query statements", e))?;
            for item in page.items.unwrap_or_default() {
                let sk = text(&item, SORT_KEY)?;
                if sk.contains(PART_MARKER) {
                    let part_ids = match item.get("purchaseIds") {
                        Some(AttributeValue::Ss(part_ids)) => part_ids.clone(),
                        _ => return Err(StoreError::Internal(format!("statement part {sk} lacks purchaseIds"))),
                    };
                    ids.entry(text(&item, "statementId")?).or_default().extend(part_ids);
                } else {
                    headers.push(statement_from_item(&item)?);
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        // The partition decides the kind already; checking it too means a client can never see an agency's sums.
        headers.retain(|statement: &Statement| statement.kind == kind);
        for statement in &mut headers {
            let mut purchase_ids = ids.remove(&statement.statement_id).unwrap_or_default();
            purchase_ids.sort();
            statement.purchase_ids = purchase_ids;
        }
        Ok(headers)
    }

    // ---- purchase history ------------------------------------------------------------------------------------

    /// Up to `limit` of an account's purchases, newest first, after `after` (the last key of the previous page).
    /// Also says whether more follow, by reading one item beyond the page.
    pub async fn purchases_newest_first(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&PurchaseKey>,
    ) -> Result<PurchasePage, StoreError> {
        let pk = keys::account(account_id);
        if after.is_some_and(|key| !key.is_purchase_of(account_id)) {
            return Err(StoreError::Internal("a history position of another account reached storage".into()));
        }
        let mut start = after.map(|k| key(k.pk.clone(), &k.sk));
        let mut purchases: Vec<PurchaseRecord> = Vec::with_capacity(limit + 1);
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table_name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(keys::PURCHASE_SK_PREFIX))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from(limit + 1 - purchases.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query purchase history", e))?;
            for item in page.items.unwrap_or_default() {
                purchases.push(serde_dynamo::from_item(item).map_err(|e| internal("purchase item", e))?);
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() && purchases.len() <= limit => start = Some(last),
                _ => break,
            }
        }
        let more = purchases.len() > limit;
        purchases.truncate(limit);
        let next = if more { purchases.last().map(|p| PurchaseKey::of(&p.account_id, &p.purchase_id)) } else { None };
        Ok(PurchasePage { purchases, next })
    }
}

/// One page of purchase history.
#[derive(Debug, Clone)]
pub struct PurchasePage {
    pub purchases: Vec<PurchaseRecord>,
    /// The key of the page's last purchase when more follow: where the next page starts.
    pub next: Option<PurchaseKey>,
}

/// The table key of a purchase, as a history cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseKey {
    pub pk: String,
    pub sk: String,
}

impl PurchaseKey {
    pub fn of(account_id: &str, purchase_id: &str) -> PurchaseKey {
        PurchaseKey { pk: keys::account(account_id), sk: keys::purchase_sk(purchase_id) }
    }

    /// Whether this is the key of a purchase of `account_id`: the account's partition and a purchase sort key
    /// holding a UUID in canonical form. Anything else must never reach a Query.
    pub fn is_purchase_of(&self, account_id: &str) -> bool {
        let Some(purchase_id) = self.sk.strip_prefix(keys::PURCHASE_SK_PREFIX) else { return false };
        self.pk == keys::account(account_id)
            && uuid::Uuid::parse_str(purchase_id).is_ok_and(|id| id.hyphenated().to_string() == purchase_id)
    }
}

/// One JSON log line with every figure as its own field, so Logs Insights can query and graph them.
fn log_summary(summary: &RunSummary, error: Option<&BillingError>) {
    macro_rules! log_with {
        ($level:ident, $message:literal $(, $extra:tt)*) => {
            tracing::$level!(
                $($extra,)*
                run_id = %summary.run_id,
                cycle_end = %summary.cycle_end,
                client_statements_written = summary.client_statements_written,
                agency_statements_written = summary.agency_statements_written,
                purchases_billed_to_client = summary.purchases_billed_to_client,
                purchases_billed_to_agency = summary.purchases_billed_to_agency,
                total_at_price = %summary.total_at_price,
                total_at_cost = %summary.total_at_cost,
                items_read = summary.items_read,
                items_scanned = summary.items_scanned,
                queries = summary.queries,
                transactions = summary.transactions,
                purchases_already_billed = summary.purchases_already_billed,
                purchases_left_for_next_cycle = summary.purchases_left_for_next_cycle,
                duration_ms = summary.duration_ms,
                $message
            )
        };
    }
    match error {
        None => log_with!(info, "billing run finished"),
        Some(err) => {
            let error = err.to_string();
            log_with!(error, "billing run did not finish; run it again with the same cycleEnd", error)
        }
    }
}

/// A client request token unique to this run, statement and set of purchases: a resend of the same step after
/// a lost response is a no-op for DynamoDB, while another run or a smaller retry set is a new request.
fn step_token(run_id: &str, statement_id: &str, purchases: &[PurchaseRecord]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(run_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(statement_id.as_bytes());
    for purchase in purchases {
        hasher.update(b"\n");
        hasher.update(purchase.purchase_id.as_bytes());
    }
    hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Internal(format!("statement item lacks {name}"))),
    }
}

/// Numbers are read from their decimal text, never through a float.
fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<Decimal>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(v)) => {
            Decimal::from_str_exact(v).map(Some).map_err(|e| internal(&format!("statement {name} {v:?}"), e))
        }
        Some(_) => Err(StoreError::Internal(format!("statement {name} is not a number"))),
    }
}

fn whole(value: Decimal, name: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|e| internal(&format!("statement {name}"), e))
}

fn statement_from_item(item: &HashMap<String, AttributeValue>) -> Result<Statement, StoreError> {
    let kind_text = text(item, "kind")?;
    let kind = StatementKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Internal(format!("statement kind {kind_text:?}")))?;
    let owner_id = text(item, side(kind).owner_attribute)?;
    let mut lines = Vec::new();
    for credit_type in CreditType::ALL {
        let (quantity_attribute, amount_attribute) = line_attributes(credit_type);
        let quantity =
            number(item, quantity_attribute)?.map(|q| whole(q, quantity_attribute)).transpose()?.unwrap_or(0);
        let amount = number(item, amount_attribute)?.unwrap_or_default();
        if quantity > 0 || !amount.is_zero() {
            lines.push(StatementLine { credit_type, quantity, amount: round_to_cents(amount) });
        }
    }
    Ok(Statement {
        statement_id: text(item, "statementId")?,
        kind,
        owner_id,
        cycle_end: text(item, "cycleEnd")?,
        status: text(item, "status")?,
        currency: text(item, "currency")?,
        lines,
        total: round_to_cents(number(item, "total")?.unwrap_or_default()),
        purchase_count: whole(number(item, "purchaseCount")?.unwrap_or_default(), "purchaseCount")?,
        purchase_ids: Vec::new(),
        created_at: text(item, "createdAt")?,
        updated_at: text(item, "updatedAt")?,
    })
}
