//! The end of a cycle's run: its statements still `building`, read page by page from the state index, made
//! payable (`building` → `pending_payment`) with what is due and when, each client statement with its
//! `statement.payable` event in the same write.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use aws_smithy_runtime_api::client::result::SdkError;
use sha2::{Digest, Sha256};

use super::items::{Attributes, Item, n, s, statement_from_item};
use super::outbox::outbox_put;
use super::transact::condition_failed;
use super::unbilled::PageKey;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::billing::{self, CycleEnd, STATUS_BUILDING, STATUS_PENDING_PAYMENT, StatementKind};
use crate::domain::{events, time};
use crate::table::{PARTITION_KEY, SORT_KEY, STATEMENT_STATE_INDEX};

/// One page of a cycle's statements still `building` (statement items as stored).
#[derive(Debug)]
pub struct BuildingPage {
    pub statements: Vec<Item>,
    pub next: Option<PageKey>,
}

impl Store {
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
            .index_query(STATEMENT_STATE_INDEX, keys::building_partition(cycle_end), None)
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
            .index_query(STATEMENT_STATE_INDEX, keys::building_partition(cycle_end), None)
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
    /// statements enter the unpaid index by due date and emit `statement.payable`. Returns how many it changed
    /// (one another run finished first, or the index showed late, is skipped). Up to `concurrency` in flight:
    /// each statement is its own item, so they never conflict. Still one call per statement: an agency
    /// statement's `UpdateItem`, or a client statement's `TransactWriteItems` of that update and its outbox item.
    pub async fn make_payable(&self, statements: &[Item], due_at: &str, concurrency: usize) -> Result<u64, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        // The futures made first, then run: a closure over borrowed items here would make the run's future
        // not `Send` for every lifetime (`tokio::spawn` refuses it).
        let finishes: Vec<_> = statements.iter().map(|item| self.finish_statement(item, due_at)).collect();
        futures_util::stream::iter(finishes)
            .buffer_unordered(concurrency.max(1))
            .try_fold(0, |finished, one| async move { Ok(finished + one) })
            .await
    }

    /// One statement made payable: 1 if this call changed it, 0 if another run had.
    async fn finish_statement(&self, item: &Item, due_at: &str) -> Result<u64, StoreError> {
        let statement = statement_from_item(item)?;
        let key = keys::key(item.string(PARTITION_KEY)?, &item.string(SORT_KEY)?);
        // Client statements fall overdue (and put an account on hold) from the unpaid index; agency statements
        // wait in a partition of their own for collection.
        let unpaid = match statement.kind {
            StatementKind::Client => keys::UNPAID_PARTITION,
            StatementKind::Agency => keys::AGENCY_UNPAID_PARTITION,
        };
        let names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#statePk".to_owned(), STATEMENT_STATE_INDEX.partition_key.to_owned()),
            ("#stateSk".to_owned(), STATEMENT_STATE_INDEX.sort_key.to_owned()),
            ("#total".to_owned(), "total".to_owned()),
        ]);
        let values = HashMap::from([
            (":building".to_owned(), s(STATUS_BUILDING)),
            (":pending".to_owned(), s(STATUS_PENDING_PAYMENT)),
            (":dueAt".to_owned(), s(due_at)),
            (":zero".to_owned(), n(0)),
            (":unpaid".to_owned(), s(unpaid)),
            (":dueKey".to_owned(), s(keys::unpaid_sk(due_at, &statement.statement_id))),
        ]);
        let update = "SET #status = :pending, amountDue = #total, amountPaid = :zero, dueAt = :dueAt, \
                      #statePk = :unpaid, #stateSk = :dueKey";
        // The condition that makes it payable once is also what writes its event once: a second run, a retried
        // step or the index showing it late finds it no longer `building`, and writes neither.
        let condition = "#status = :building";
        let event = match statement.kind {
            StatementKind::Agency => None,
            StatementKind::Client => match self.statement_agency(item, &statement.owner_id).await? {
                Some(agency_id) => {
                    let now = time::timestamp(std::time::SystemTime::now());
                    Some(events::statement_payable(&statement.owner_id, &agency_id, &statement, due_at, &now))
                }
                // No agency on the statement and no account: the cycle still finishes, without the event.
                None => {
                    tracing::error!(statement_id = %statement.statement_id, "no agency to name: statement.payable not written");
                    None
                }
            },
        };
        let Some(event) = event else {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table_name)
                .set_key(Some(key))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            return match sent {
                Ok(_) => Ok(1),
                // Another run of the same cycle finished it first, or the index still showed it.
                Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(0),
                Err(e) => Err(classify("UpdateItem finish statement", e)),
            };
        };
        let update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| internal("building a statement's finish", e))?;
        let items = [TransactWriteItem::builder().update(update).build(), outbox_put(&self.table_name, &event)?];
        // The event id is new for every call: a resend of these very items (same token) is DynamoDB's no-op,
        // another run's are another request, refused by the condition.
        let token = hex::encode(&Sha256::digest(format!("payable\n{}", event.id))[..16]);
        let refused = self
            .transact_with_retries("TransactWriteItems finish statement", &items, &token, true, |reasons| {
                Ok(condition_failed(reasons, 0).then_some(()))
            })
            .await?;
        Ok(if refused.is_some() { 0 } else { 1 })
    }

    /// The agency a client statement's `statement.payable` names: from the per-agency instants its billing steps
    /// wrote on it; for a statement billed before they were written, the account's agency (one `GetItem`).
    async fn statement_agency(&self, item: &Item, account_id: &str) -> Result<Option<String>, StoreError> {
        let latest = item.iter().filter_map(|(name, value)| {
            let agency = name.strip_prefix(keys::STATEMENT_AGENCY_PREFIX)?;
            Some((agency, value.as_s().ok()?.as_str()))
        });
        if let Some(agency) = billing::statement_agency(latest) {
            return Ok(Some(agency.to_owned()));
        }
        let account = self.get_item(keys::account(account_id), keys::ACCOUNT_SK).await?;
        account.map(|account| account.string("agencyId")).transpose()
    }
}
