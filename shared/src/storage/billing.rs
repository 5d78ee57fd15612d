//! One billing step: a batch of one owner's purchases onto its statement for the cycle, in one transaction.
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
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::items::{n, s, statement_owner_attribute};
use super::transact::condition_failed;
use super::unbilled::unbilled_index;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::billing::{CycleEnd, STATUS_BUILDING, StatementDelta, StatementKind, Step, statement_delta};
use crate::domain::{PurchaseRecord, time};
use crate::table::{CLIENT_UNBILLED_INDEX, PARTITION_KEY, SORT_KEY, STATEMENT_STATE_INDEX};

/// DynamoDB allows 100 items per `TransactWriteItems`; each step also writes the statement, one statement part
/// and (client side) the account's running unbilled sums, which leaves 97 purchases.
pub const MAX_PURCHASES_PER_STEP: usize = 97;

/// The purchase's billed flag and statement id attributes for one side.
fn billed_attributes(kind: StatementKind) -> (&'static str, &'static str) {
    match kind {
        StatementKind::Client => ("billedToClient", "clientStatementId"),
        StatementKind::Agency => ("billedToAgency", "agencyStatementId"),
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
        if outcome.is_none() && kind == StatementKind::Client {
            self.point_to_last_statement(&step.owner, &statement_id, &step.purchases).await;
        }
        Ok(outcome.unwrap_or(StepOutcome::Committed(delta)))
    }

    /// Names `statement_id` on the client's account item as its latest statement under each agency the step's
    /// purchases were made under (`lastStatementId#{agencyId}`: the agency's clients page reads it). Sent after the
    /// step commits, outside its transaction, which stays as small (and as fast) as before: the pointer is a
    /// display aid that the client's next statement overwrites, so a failure is logged, never a failed step.
    async fn point_to_last_statement(&self, account_id: &str, statement_id: &str, purchases: &[PurchaseRecord]) {
        let agencies: std::collections::BTreeSet<&str> = purchases.iter().map(|p| p.agency_id.as_str()).collect();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)))
            .expression_attribute_values(":statement", s(statement_id))
            .condition_expression("attribute_exists(pk)");
        let mut sets = Vec::new();
        for (i, agency_id) in agencies.into_iter().enumerate() {
            request =
                request.expression_attribute_names(format!("#last{i}"), keys::last_statement_attribute(agency_id));
            sets.push(format!("#last{i} = :statement"));
        }
        if let Err(e) = request.update_expression(format!("SET {}", sets.join(", "))).send().await {
            tracing::warn!(account_id, statement_id, error = %classify("UpdateItem last statement", e), "last statement not recorded");
        }
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
            (":buildingKey".to_owned(), s(keys::building_partition(cycle))),
            (":currency".to_owned(), s(currency)),
            (":now".to_owned(), s(&now)),
            (":total".to_owned(), n(delta.total)),
            (":count".to_owned(), n(delta.purchase_count)),
        ]);
        let mut adds = vec!["#total :total".to_owned(), "#count :count".to_owned()];
        // Client side: per agency the step's purchases were made under, its latest purchase's instant, which the
        // cycle's finish names the agency of `statement.payable` by (`keys::statement_agency_attribute`).
        let mut sets = String::new();
        if kind == StatementKind::Client {
            let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
            for purchase in purchases {
                let at = latest.entry(purchase.agency_id.as_str()).or_default();
                *at = (*at).max(purchase.created_at.as_str());
            }
            for (i, (agency_id, at)) in latest.into_iter().enumerate() {
                names.insert(format!("#ag{i}"), keys::statement_agency_attribute(agency_id));
                values.insert(format!(":ag{i}"), s(at));
                sets.push_str(&format!(", #ag{i} = :ag{i}"));
            }
        }
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
                 #statePk = :buildingKey, #stateSk = :id{sets} ADD {}",
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
