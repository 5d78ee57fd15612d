//! What the billing run is built from: pages of unbilled purchases, one step (one transaction), and the
//! statements it writes.
//!
//! A statement item holds the sums (`total`, `purchaseCount`, `quantity*`/`amount*` per credit type) as
//! numbers that each billing step `ADD`s to; the purchase ids live in one part item per step (at most 97),
//! so a statement never nears the 400 KB item limit however many purchases it covers.
//!
//! Exactly once: one step is one `TransactWriteItems` holding the statement's `ADD`s, the part and, for each
//! purchase, `SET billedTo… = true, …StatementId` + `REMOVE` of its unbilled index keys under the condition
//! `billedTo… = false`. Either all of it happens or none, so at every moment a statement's sums are the sums
//! of exactly the purchases marked with its id, and no purchase can be marked twice.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_smithy_runtime_api::client::result::SdkError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::items::{Attributes, Item, from_item, n, s, statement_from_item, statement_owner_attribute};
use super::statements::{AGENCY_UNPAID_PARTITION, UNPAID_PARTITION, building_partition};
use super::transact::condition_failed;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::billing::{
    CycleEnd, STATUS_BUILDING, STATUS_PENDING_PAYMENT, Statement, StatementDelta, StatementKind, Step, statement_delta,
};
use crate::domain::{PurchaseRecord, time};
use crate::table::{
    CLIENT_UNBILLED_INDEX, PARTITION_KEY, SORT_KEY, STATEMENT_STATE_INDEX, SparseIndex, UNBILLED_AGENCY_INDEX,
    UNBILLED_CLIENT_INDEX,
};

/// DynamoDB allows 100 items per `TransactWriteItems`; each step also writes the statement, one statement part
/// and (client side) the account's running unbilled sums, which leaves 97 purchases.
pub const MAX_PURCHASES_PER_STEP: usize = 97;

/// The sparse index listing one side's unbilled purchases.
fn unbilled_index(kind: StatementKind) -> SparseIndex {
    match kind {
        StatementKind::Client => UNBILLED_CLIENT_INDEX,
        StatementKind::Agency => UNBILLED_AGENCY_INDEX,
    }
}

/// The purchase's billed flag and statement id attributes for one side.
fn billed_attributes(kind: StatementKind) -> (&'static str, &'static str) {
    match kind {
        StatementKind::Client => ("billedToClient", "clientStatementId"),
        StatementKind::Agency => ("billedToAgency", "agencyStatementId"),
    }
}

/// One page of unbilled purchases, with what the Query read (`Count`) and evaluated (`ScannedCount`).
#[derive(Debug)]
pub struct UnbilledPage {
    pub purchases: Vec<PurchaseRecord>,
    pub items_read: u64,
    pub items_scanned: u64,
}

/// The pages of one shard of an unbilled index, created before the cycle end, oldest first, from a position
/// (the key of the last item an earlier page read) or from the start.
pub struct UnbilledPages {
    store: Store,
    kind: StatementKind,
    shard: u32,
    cycle_end: CycleEnd,
    limit: Option<i32>,
    /// Where the next page starts (`None`: the start of the shard, or nothing left once `done`).
    start: Option<PageKey>,
    done: bool,
}

impl UnbilledPages {
    /// Where the next page starts: `None` before the first page of the shard (and once it is read to the end).
    pub fn position(&self) -> Option<&PageKey> {
        self.start.as_ref()
    }

    pub async fn next(&mut self) -> Option<Result<UnbilledPage, StoreError>> {
        if self.done {
            return None;
        }
        let output = self
            .store
            .index_query(unbilled_index(self.kind), keys::unbilled(self.shard), Some(self.cycle_end.as_str()))
            .set_limit(self.limit)
            .set_exclusive_start_key(self.start.clone().map(|key| key.0))
            .send()
            .await;
        let page = match output {
            Ok(page) => page,
            Err(e) => return Some(Err(classify("Query unbilled purchases", e))),
        };
        self.start = page.last_evaluated_key.filter(|key| !key.is_empty()).map(PageKey);
        self.done = self.start.is_none();
        let purchases: Result<Vec<_>, _> =
            page.items.unwrap_or_default().into_iter().map(|item| from_item("unbilled purchase", item)).collect();
        Some(purchases.map(|purchases| UnbilledPage {
            purchases,
            items_read: page.count.max(0) as u64,
            items_scanned: page.scanned_count.max(0) as u64,
        }))
    }
}

impl PageKey {
    /// The key as JSON (every key attribute is a string), for a hand-over event.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        let mut names: Vec<_> = self.0.keys().collect();
        names.sort();
        for name in names {
            if let Ok(text) = self.0[name].as_s() {
                object.insert(name.clone(), serde_json::Value::String(text.clone()));
            }
        }
        serde_json::Value::Object(object)
    }

    /// A position in shard `shard` of `kind`'s unbilled index from an event, checked strictly: exactly the
    /// table's and the index's key attributes, all strings, the index partition of that shard, a sort key
    /// before the cycle end (the Query reads only those), a purchase's key in an account's partition. Anything
    /// else is refused, so an event can only ever start a Query where one of our own pages could have ended.
    pub fn unbilled_position(
        kind: StatementKind,
        shard: u32,
        cycle_end: &CycleEnd,
        value: &serde_json::Value,
    ) -> Result<PageKey, String> {
        let index = unbilled_index(kind);
        let serde_json::Value::Object(object) = value else {
            return Err(format!("`resumeAt.after` must be an object of the index's key, got {value}"));
        };
        let names = [PARTITION_KEY, SORT_KEY, index.partition_key, index.sort_key];
        if let Some(unknown) = object.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(format!("unknown field `resumeAt.after.{unknown}`; allowed: {}", names.join(", ")));
        }
        let text = |name: &str| match object.get(name) {
            Some(serde_json::Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(other) => Err(format!("`resumeAt.after.{name}` must be a non-empty string, got {other}")),
            None => Err(format!("`resumeAt.after.{name}` is required")),
        };
        let (pk, sk, index_pk, index_sk) =
            (text(PARTITION_KEY)?, text(SORT_KEY)?, text(index.partition_key)?, text(index.sort_key)?);
        if index_pk != keys::unbilled(shard) {
            return Err(format!("`resumeAt.after.{}` is not shard {shard}'s partition", index.partition_key));
        }
        if index_sk.as_str() >= cycle_end.as_str() {
            return Err(format!("`resumeAt.after.{}` is not before the cycle end", index.sort_key));
        }
        if pk.strip_prefix(&keys::account("")).is_none_or(str::is_empty)
            || sk.strip_prefix(keys::PURCHASE_SK_PREFIX).is_none_or(str::is_empty)
        {
            return Err("`resumeAt.after` is not a purchase's key".into());
        }
        Ok(PageKey(HashMap::from([
            (PARTITION_KEY.to_owned(), s(pk)),
            (SORT_KEY.to_owned(), s(sk)),
            (index.partition_key.to_owned(), s(index_pk)),
            (index.sort_key.to_owned(), s(index_sk)),
        ])))
    }
}

/// How a step's transaction ended when it did not fail outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Committed: the statement gained exactly this delta.
    Committed(StatementDelta),
    /// These positions (in the step's purchase list) were billed by someone else since we read them.
    AlreadyBilled(Vec<usize>),
    /// The statement is no longer `building` (its cycle finished) or has another currency: it takes nothing more.
    StatementClosed,
}

impl Store {
    /// The unbilled purchases of one shard created before `cycle_end`. Billing a purchase removes it from the
    /// index behind the reader's position; each page starts after the last key read, so nothing is skipped or
    /// read twice.
    /// `after`: the key of the last item a page read (a resumed run's position), else from the start; `limit`:
    /// items per page (else up to DynamoDB's 1 MB).
    pub fn unbilled_pages(
        &self,
        kind: StatementKind,
        shard: u32,
        cycle_end: &CycleEnd,
        after: Option<PageKey>,
        limit: Option<usize>,
    ) -> UnbilledPages {
        let limit = limit.map(|n| i32::try_from(n.max(1)).unwrap_or(i32::MAX));
        UnbilledPages {
            store: self.clone(),
            kind,
            shard,
            cycle_end: cycle_end.clone(),
            limit,
            start: after,
            done: false,
        }
    }

    /// Bills one step: its purchases onto the owner's statement for the cycle, in one transaction, resent with
    /// the same token (bounded, jittered) while DynamoDB reports conflicts or the outcome is unknown.
    pub async fn bill_step(
        &self,
        kind: StatementKind,
        cycle_end: &CycleEnd,
        step: &Step,
        run_id: &str,
    ) -> Result<StepOutcome, StoreError> {
        let statement_id = kind.statement_id(&step.owner, cycle_end);
        let delta = statement_delta(kind, &step.purchases);
        let items = self.step_items(kind, cycle_end, &statement_id, step, &delta)?;
        let token = step_token(run_id, &statement_id, step);
        let purchases = step.purchases.len();
        let outcome = self
            .transact_with_retries("TransactWriteItems billing step", &items, &token, true, |reasons| {
                let failed = |i: usize| condition_failed(reasons, i);
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
        Ok(outcome.unwrap_or(StepOutcome::Committed(delta)))
    }

    /// The step's items: [0] the statement's sums, [1] the part listing the purchase ids, [2..] each purchase.
    fn step_items(
        &self,
        kind: StatementKind,
        cycle_end: &CycleEnd,
        statement_id: &str,
        step: &Step,
        delta: &StatementDelta,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building a billing step", e);
        let purchases = &step.purchases;
        let owner = &step.owner;
        let first = purchases.first().ok_or_else(|| StoreError::Internal("an empty billing step".into()))?;
        let currency = &first.currency;
        if purchases.iter().any(|p| &p.currency != currency) {
            return Err(StoreError::Internal(format!("purchases of {owner} in several currencies")));
        }
        let pk = keys::statement_pk(kind, owner);
        let cycle = cycle_end;
        let cycle_end = cycle_end.as_str();
        let now = time::timestamp(std::time::SystemTime::now());

        // 0. The statement: created by the first step, summed into by every step while it is pending payment.
        let mut names = HashMap::from([
            ("#id".to_owned(), "statementId".to_owned()),
            ("#kind".to_owned(), "kind".to_owned()),
            ("#owner".to_owned(), statement_owner_attribute(kind).to_owned()),
            ("#cycleEnd".to_owned(), "cycleEnd".to_owned()),
            ("#status".to_owned(), "status".to_owned()),
            ("#currency".to_owned(), "currency".to_owned()),
            ("#createdAt".to_owned(), "createdAt".to_owned()),
            ("#updatedAt".to_owned(), "updatedAt".to_owned()),
            ("#total".to_owned(), "total".to_owned()),
            ("#count".to_owned(), "purchaseCount".to_owned()),
            ("#statePk".to_owned(), STATEMENT_STATE_INDEX.partition_key.to_owned()),
            ("#stateSk".to_owned(), STATEMENT_STATE_INDEX.sort_key.to_owned()),
        ]);
        let mut values = HashMap::from([
            (":id".to_owned(), s(statement_id)),
            (":kind".to_owned(), s(kind.as_str())),
            (":owner".to_owned(), s(owner)),
            (":cycleEnd".to_owned(), s(cycle_end)),
            (":building".to_owned(), s(STATUS_BUILDING)),
            (":buildingKey".to_owned(), s(building_partition(cycle))),
            (":currency".to_owned(), s(currency)),
            (":now".to_owned(), s(&now)),
            (":total".to_owned(), n(delta.total)),
            (":count".to_owned(), n(delta.purchase_count)),
        ]);
        let mut adds = vec!["#total :total".to_owned(), "#count :count".to_owned()];
        for (i, (credit_type, sum)) in delta.lines.iter().enumerate() {
            let (quantity_attribute, amount_attribute) = keys::statement_line_attributes(*credit_type);
            names.insert(format!("#q{i}"), quantity_attribute.to_owned());
            names.insert(format!("#a{i}"), amount_attribute.to_owned());
            values.insert(format!(":q{i}"), n(sum.quantity));
            values.insert(format!(":a{i}"), n(sum.amount));
            adds.push(format!("#q{i} :q{i}"));
            adds.push(format!("#a{i} :a{i}"));
        }
        let statement_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk.clone(), &keys::statement_sk(cycle_end))))
            .update_expression(format!(
                "SET #id = :id, #kind = :kind, #owner = :owner, #cycleEnd = :cycleEnd, #status = :building, \
                 #currency = :currency, #createdAt = if_not_exists(#createdAt, :now), #updatedAt = :now, \
                 #statePk = :buildingKey, #stateSk = :id ADD {}",
                adds.join(", ")
            ))
            // Once its cycle's run has finished (payable) nothing may be added to it.
            .condition_expression("attribute_not_exists(pk) OR (#status = :building AND #currency = :currency)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build)?;

        // 1. The part: this step's purchase ids. Its key is unique because its first purchase is billed only once.
        let part = HashMap::from([
            (PARTITION_KEY.to_owned(), s(&pk)),
            (SORT_KEY.to_owned(), s(keys::statement_part_sk(cycle_end, &first.purchase_id))),
            ("statementId".to_owned(), s(statement_id)),
            ("kind".to_owned(), s(kind.as_str())),
            ("purchaseIds".to_owned(), AttributeValue::Ss(purchases.iter().map(|p| p.purchase_id.clone()).collect())),
            ("purchaseCount".to_owned(), n(delta.purchase_count)),
            ("total".to_owned(), n(delta.total)),
            ("createdAt".to_owned(), s(&now)),
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
        let index = unbilled_index(kind);
        let (billed_flag, statement_id_attribute) = billed_attributes(kind);
        for purchase in purchases {
            let update = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(
                    keys::account(&purchase.account_id),
                    &keys::purchase_sk(&purchase.purchase_id),
                )))
                .update_expression(match kind {
                    // Billing the client also takes the purchase off the client's own unbilled list.
                    StatementKind::Client => {
                        "SET #flag = :billed, #statement = :id REMOVE #indexPk, #indexSk, #clientPk, #clientSk"
                    }
                    StatementKind::Agency => "SET #flag = :billed, #statement = :id REMOVE #indexPk, #indexSk",
                })
                // A voided purchase is never billed: the void and this step each check the other's mark.
                .condition_expression("#flag = :unbilled AND attribute_not_exists(#voidedAt)")
                .expression_attribute_names("#flag", billed_flag)
                .expression_attribute_names("#statement", statement_id_attribute)
                .expression_attribute_names("#indexPk", index.partition_key)
                .expression_attribute_names("#indexSk", index.sort_key)
                .expression_attribute_names("#voidedAt", keys::VOIDED_AT)
                .expression_attribute_values(":billed", AttributeValue::Bool(true))
                .expression_attribute_values(":unbilled", AttributeValue::Bool(false))
                .expression_attribute_values(":id", s(statement_id));
            let update = match kind {
                StatementKind::Client => update
                    .expression_attribute_names("#clientPk", CLIENT_UNBILLED_INDEX.partition_key)
                    .expression_attribute_names("#clientSk", CLIENT_UNBILLED_INDEX.sort_key),
                StatementKind::Agency => update,
            }
            .build()
            .map_err(build)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }

        // Last, on the client side: the account's running unbilled sums lose what this step bills, per agency
        // the purchases were made under (a client that moved mid-cycle has purchases of both).
        if kind == StatementKind::Client {
            let mut per_agency: BTreeMap<&str, (i64, Decimal, Decimal)> = BTreeMap::new();
            for purchase in purchases {
                let sums = per_agency.entry(purchase.agency_id.as_str()).or_default();
                *sums = (sums.0 - 1, sums.1 - purchase.total, sums.2 - purchase.total_at_cost);
            }
            let mut names = HashMap::new();
            let mut values = HashMap::new();
            let mut adds = Vec::new();
            for (i, (agency_id, (count, at_price, at_cost))) in per_agency.into_iter().enumerate() {
                for (j, (attribute, value)) in keys::unbilled_sums_attributes(agency_id)
                    .into_iter()
                    .zip([n(count), n(at_price), n(at_cost)])
                    .enumerate()
                {
                    names.insert(format!("#u{i}_{j}"), attribute);
                    values.insert(format!(":u{i}_{j}"), value);
                    adds.push(format!("#u{i}_{j} :u{i}_{j}"));
                }
            }
            let account_update = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(keys::account(owner), keys::ACCOUNT_SK)))
                .update_expression(format!("ADD {}", adds.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().update(account_update).build());
        }
        Ok(items)
    }

    /// Up to `limit` of the cycle's statements still `building`, after `after`, from the state index. The index
    /// is eventually consistent: a statement written a moment ago may be missing, and one made payable a
    /// moment ago may still show (making it payable again is a no-op), so the run reads until a pass finds
    /// none ([`crate::billing`]).
    pub async fn building_statements_page(
        &self,
        cycle_end: &CycleEnd,
        limit: usize,
        after: Option<PageKey>,
    ) -> Result<BuildingPage, StoreError> {
        let output = self
            .index_query(STATEMENT_STATE_INDEX, building_partition(cycle_end), None)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|key| key.0))
            .send()
            .await
            .map_err(|e| classify("Query building statements", e))?;
        Ok(BuildingPage { statements: output.items.unwrap_or_default(), next: output.last_evaluated_key.map(PageKey) })
    }

    /// How many statements of the cycle the state index still shows `building` (Select COUNT, every page).
    pub async fn count_building_statements(&self, cycle_end: &CycleEnd) -> Result<u64, StoreError> {
        let mut pages = self
            .index_query(STATEMENT_STATE_INDEX, building_partition(cycle_end), None)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            count += page.map_err(|e| classify("Query building statements", e))?.count.max(0) as u64;
        }
        Ok(count)
    }

    /// Makes these statements payable (`building` → `pending_payment`), with what is due and `due_at`; client
    /// statements enter the unpaid index by due date. Returns how many it changed (one another run finished
    /// first, or the index showed late, is skipped). Up to `concurrency` updates in flight: each statement is its
    /// own item, so they never conflict.
    pub async fn make_payable(&self, statements: &[Item], due_at: &str, concurrency: usize) -> Result<u64, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        // One page's updates are built, then sent: memory stays bounded by the page.
        let mut requests = Vec::with_capacity(statements.len());
        for item in statements {
            let statement = statement_from_item(item)?;
            let request = self
                .client
                .update_item()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(item.string(PARTITION_KEY)?, &item.string(SORT_KEY)?)))
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#statePk", STATEMENT_STATE_INDEX.partition_key)
                .expression_attribute_names("#stateSk", STATEMENT_STATE_INDEX.sort_key)
                .expression_attribute_names("#total", "total")
                .expression_attribute_values(":building", s(STATUS_BUILDING))
                .expression_attribute_values(":pending", s(STATUS_PENDING_PAYMENT))
                .expression_attribute_values(":dueAt", s(due_at))
                .expression_attribute_values(":zero", n(0))
                .condition_expression("#status = :building");
            requests.push(match statement.kind {
                // Only client statements fall overdue (and put an account on hold).
                StatementKind::Client => request
                    .update_expression(
                        "SET #status = :pending, amountDue = #total, amountPaid = :zero, dueAt = :dueAt, \
                         #statePk = :unpaid, #stateSk = :dueKey",
                    )
                    .expression_attribute_values(":unpaid", s(UNPAID_PARTITION))
                    .expression_attribute_values(":dueKey", s(format!("{due_at}#{}", statement.statement_id))),
                // Agency statements wait in a partition of their own for collection.
                StatementKind::Agency => request
                    .update_expression(
                        "SET #status = :pending, amountDue = #total, amountPaid = :zero, dueAt = :dueAt, \
                         #statePk = :unpaid, #stateSk = :dueKey",
                    )
                    .expression_attribute_values(":unpaid", s(AGENCY_UNPAID_PARTITION))
                    .expression_attribute_values(":dueKey", s(format!("{due_at}#{}", statement.statement_id))),
            });
        }
        futures_util::stream::iter(requests)
            .map(|request| async move {
                match request.send().await {
                    Ok(_) => Ok(1),
                    // Another run of the same cycle finished it first, or the index still showed it.
                    Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(0),
                    Err(e) => Err(classify("UpdateItem finish statement", e)),
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_fold(0, |finished, one| async move { Ok(finished + one) })
            .await
    }

    /// An account's client statements, newest cycle first, with every purchase id: a full read for tests and
    /// audits, never a request path (an old, busy account's answer has no size limit). Requests page with
    /// [`Store::client_statements_page`] and [`Store::client_statement_purchase_ids`].
    pub async fn client_statements(&self, account_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Client, account_id).await
    }

    /// An agency's statements (at cost), newest cycle first. Never exposed to clients.
    pub async fn agency_statements(&self, agency_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Agency, agency_id).await
    }

    async fn statements(&self, kind: StatementKind, owner: &str) -> Result<Vec<Statement>, StoreError> {
        let query =
            self.partition_query(keys::statement_pk(kind, owner), keys::STATEMENT_SK_PREFIX).scan_index_forward(false);
        let items = self.partition_items("Query statements", query).await?;
        let mut headers = Vec::new();
        let mut ids: HashMap<String, Vec<String>> = HashMap::new();
        for item in items {
            if item.string(SORT_KEY)?.contains(keys::PART_MARKER) {
                ids.entry(item.string("statementId")?).or_default().extend(item.string_set("purchaseIds")?);
            } else {
                headers.push(statement_from_item(&item)?);
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

    /// Up to `limit` of an account's client statements (headers only): [`Store::statements_page`] of the
    /// account's partition.
    pub async fn client_statements_page(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&StatementKey>,
    ) -> Result<StatementPage, StoreError> {
        self.statements_page(StatementKind::Client, account_id, limit, after).await
    }

    /// Up to `limit` of an owner's statements of one kind (an account's client statements, an agency's at
    /// cost), headers only (`purchase_ids` is empty, `purchase_count` says how many), newest cycle first,
    /// after `after` (the last header of the previous page).
    ///
    /// Headers and their parts share the `STATEMENT#{cycleEnd}` prefix, and no key condition keeps the parts
    /// out, so the Query filters them (`attribute_not_exists(purchaseIds)`). `Limit` counts the items DynamoDB
    /// evaluates before the filter, not the headers it returns: the loop keeps reading pages until it holds
    /// `limit + 1` headers (so it knows whether more follow) or the partition ends, starting with room for
    /// one part per statement and doubling the page each time, so a busy owner's many parts cost a few round
    /// trips and at most about twice the reads needed. The page's position is the last header's key, never a
    /// part's.
    pub async fn statements_page(
        &self,
        kind: StatementKind,
        owner: &str,
        limit: usize,
        after: Option<&StatementKey>,
    ) -> Result<StatementPage, StoreError> {
        if after.is_some_and(|key| !key.is_statement_of_owner(kind, owner)) {
            return Err(StoreError::Internal("a statements position of another owner reached storage".into()));
        }
        let mut start = after.map(|k| keys::key(k.pk.clone(), &k.sk));
        let mut evaluate = 2 * (limit + 1);
        let mut statements: Vec<Statement> = Vec::with_capacity(limit + 1);
        loop {
            let output = self
                .partition_query(keys::statement_pk(kind, owner), keys::STATEMENT_SK_PREFIX)
                .scan_index_forward(false)
                .filter_expression("attribute_not_exists(#ids) AND #kind = :kind")
                .expression_attribute_names("#ids", "purchaseIds")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(kind.as_str()))
                .limit(i32::try_from(evaluate).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query statements page", e))?;
            for item in output.items.unwrap_or_default() {
                if statements.len() > limit {
                    break;
                }
                if item.string(SORT_KEY)?.contains(keys::PART_MARKER) {
                    return Err(StoreError::Internal("a statement part passed the header filter".into()));
                }
                statements.push(statement_from_item(&item)?);
            }
            match output.last_evaluated_key {
                Some(key) if statements.len() <= limit => start = Some(key),
                _ => break,
            }
            evaluate = (evaluate * 2).min(MAX_ITEMS_EVALUATED_PER_PAGE);
        }
        // The partition decides the kind already; checking it too means a client can never see an agency's sums.
        if statements.iter().any(|statement| statement.kind != kind || statement.owner_id != owner) {
            return Err(StoreError::Internal(format!("a foreign statement in the partition of {owner}")));
        }
        let more = statements.len() > limit;
        statements.truncate(limit);
        let next = if more {
            statements.last().map(|last| StatementKey::of_owner(kind, owner, &last.cycle_end))
        } else {
            None
        };
        Ok(StatementPage { statements, next })
    }

    /// Up to `limit` purchase ids of one client statement of the account, after `after`; `None` when the account
    /// has no client statement with this id for this cycle end.
    ///
    /// Ids are listed part by part (parts in key order, the ids of a part sorted). A position is a part and the
    /// last id read from it: the rest of that part is one GetItem, and only if it does not fill the page are
    /// the following parts queried (a page of room for `limit + 1` ids' parts, doubling), so a page reads
    /// about what it returns, whatever the statement's size.
    pub async fn client_statement_purchase_ids(
        &self,
        account_id: &str,
        cycle_end: &CycleEnd,
        statement_id: &str,
        limit: usize,
        after: Option<&StatementPurchasePosition>,
    ) -> Result<Option<StatementPurchasesPage>, StoreError> {
        if after.is_some_and(|position| !position.is_in(account_id, cycle_end)) {
            return Err(StoreError::Internal("a position in another statement reached storage".into()));
        }
        let kind = StatementKind::Client;
        let pk = keys::statement_pk(kind, account_id);
        let header_sk = keys::statement_sk(cycle_end.as_str());
        let (header, ids) = tokio::join!(
            self.get_item(pk.clone(), &header_sk),
            self.purchase_ids_after(&pk, cycle_end, statement_id, limit, after)
        );
        let Some(header) = header? else { return Ok(None) };
        let header = statement_from_item(&header)?;
        if header.kind != kind || header.statement_id != statement_id || header.owner_id != account_id {
            return Ok(None);
        }
        let mut ids = ids?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = if more {
            ids.last().map(|(part_sk, id)| StatementPurchasePosition {
                pk: pk.clone(),
                sk: part_sk.clone(),
                after: id.clone(),
            })
        } else {
            None
        };
        Ok(Some(StatementPurchasesPage { purchase_ids: ids.into_iter().map(|(_, id)| id).collect(), next }))
    }

    /// Up to `limit + 1` (part key, purchase id) of a statement's parts, in listing order, after `after`.
    async fn purchase_ids_after(
        &self,
        pk: &str,
        cycle_end: &CycleEnd,
        statement_id: &str,
        limit: usize,
        after: Option<&StatementPurchasePosition>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut ids: Vec<(String, String)> = Vec::with_capacity(limit + 1);
        let take_part = |item: &Item, after_id: Option<&str>, ids: &mut Vec<(String, String)>| {
            let sk = item.string(SORT_KEY)?;
            if item.string("statementId")? != statement_id || item.string("kind")? != StatementKind::Client.as_str() {
                return Err(StoreError::Internal(format!("statement part {pk}/{sk} of another statement")));
            }
            let mut part_ids = item.string_set("purchaseIds")?;
            part_ids.sort();
            for id in part_ids.into_iter().filter(|id| after_id.is_none_or(|after| id.as_str() > after)) {
                if ids.len() > limit {
                    break;
                }
                ids.push((sk.clone(), id));
            }
            Ok::<(), StoreError>(())
        };
        if let Some(position) = after
            && let Some(part) = self.get_item(pk.to_owned(), &position.sk).await?
        {
            take_part(&part, Some(&position.after), &mut ids)?;
        }
        let mut start = after.map(|position| keys::key(pk.to_owned(), &position.sk));
        let mut evaluate = (limit + 1).div_ceil(MAX_PURCHASES_PER_STEP);
        let prefix = keys::statement_part_sk(cycle_end.as_str(), "");
        while ids.len() <= limit {
            let output = self
                .partition_query(pk.to_owned(), &prefix)
                .limit(i32::try_from(evaluate).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query statement parts", e))?;
            for item in output.items.unwrap_or_default() {
                take_part(&item, None, &mut ids)?;
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
            evaluate = (evaluate * 2).min(MAX_ITEMS_EVALUATED_PER_PAGE);
        }
        Ok(ids)
    }
}

/// Where the next page of an index Query starts (its `LastEvaluatedKey`), opaque outside storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PageKey(HashMap<String, AttributeValue>);

/// One page of a cycle's statements still `building` (statement items as stored).
#[derive(Debug)]
pub struct BuildingPage {
    pub statements: Vec<Item>,
    pub next: Option<PageKey>,
}

/// The most items one page of a statements read asks DynamoDB to evaluate (it stops at 1 MB anyway).
const MAX_ITEMS_EVALUATED_PER_PAGE: usize = 1_000;

/// One page of an owner's statements, headers only.
#[derive(Debug, Clone)]
pub struct StatementPage {
    pub statements: Vec<Statement>,
    /// The key of the page's last statement when more follow: where the next page starts.
    pub next: Option<StatementKey>,
}

/// The table key of a statement header, as a statements cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementKey {
    pub pk: String,
    pub sk: String,
}

impl StatementKey {
    /// `cycle_end` as stored on the statement ("2026-12-01T00:00:00.000Z").
    pub fn of(account_id: &str, cycle_end: &str) -> StatementKey {
        StatementKey::of_owner(StatementKind::Client, account_id, cycle_end)
    }

    /// The key of `owner`'s statement header of this kind for `cycle_end`.
    pub fn of_owner(kind: StatementKind, owner: &str, cycle_end: &str) -> StatementKey {
        StatementKey { pk: keys::statement_pk(kind, owner), sk: keys::statement_sk(cycle_end) }
    }

    /// Whether this is the key of a client statement header of `account_id`.
    pub fn is_statement_of(&self, account_id: &str) -> bool {
        self.is_statement_of_owner(StatementKind::Client, account_id)
    }

    /// Whether this is the key of a statement header of `owner` of this kind: the owner's partition and
    /// `STATEMENT#` followed by a canonical cycle end (so never a part, a purchase or another item).
    pub fn is_statement_of_owner(&self, kind: StatementKind, owner: &str) -> bool {
        let Some(cycle_end) = self.sk.strip_prefix(keys::STATEMENT_SK_PREFIX) else { return false };
        self.pk == keys::statement_pk(kind, owner) && CycleEnd::parse(cycle_end).is_ok_and(|c| c.as_str() == cycle_end)
    }
}

/// One page of a statement's purchase ids.
#[derive(Debug, Clone)]
pub struct StatementPurchasesPage {
    pub purchase_ids: Vec<String>,
    /// Where the next page starts, when more ids follow.
    pub next: Option<StatementPurchasePosition>,
}

/// A position in a statement's purchase ids: a part's key and the last id read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementPurchasePosition {
    pub pk: String,
    pub sk: String,
    pub after: String,
}

impl StatementPurchasePosition {
    /// Whether this is a position in the client statement of `account_id` for `cycle_end`: the account's
    /// partition, a part key of that very statement, and purchase ids in canonical UUID form.
    pub fn is_in(&self, account_id: &str, cycle_end: &CycleEnd) -> bool {
        let canonical = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
        let prefix = keys::statement_part_sk(cycle_end.as_str(), "");
        self.pk == keys::account(account_id)
            && self.sk.strip_prefix(&prefix).is_some_and(canonical)
            && canonical(&self.after)
    }
}

/// A client request token unique to this run, statement and set of purchases: a resend of the same step after
/// a lost response is a no-op for DynamoDB, while another run or a smaller retry set is a new request.
fn step_token(run_id: &str, statement_id: &str, step: &Step) -> String {
    let mut hasher = Sha256::new();
    hasher.update(run_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(statement_id.as_bytes());
    for purchase in &step.purchases {
        hasher.update(b"\n");
        hasher.update(purchase.purchase_id.as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}
