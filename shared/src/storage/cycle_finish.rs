//! The end of a cycle's run: its statements still `building`, read page by page from the state index, made
//! payable (`building` → `pending_payment`) with what is due and when.

use aws_smithy_runtime_api::client::result::SdkError;

use super::items::{Attributes, Item, n, s, statement_from_item};
use super::unbilled::PageKey;
use super::{Store, StoreError, classify, keys};
use crate::domain::billing::{CycleEnd, STATUS_BUILDING, STATUS_PENDING_PAYMENT, StatementKind};
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
                    .expression_attribute_values(":unpaid", s(keys::UNPAID_PARTITION))
                    .expression_attribute_values(":dueKey", s(keys::unpaid_sk(due_at, &statement.statement_id))),
                // Agency statements wait in a partition of their own for collection.
                StatementKind::Agency => request
                    .update_expression(
                        "SET #status = :pending, amountDue = #total, amountPaid = :zero, dueAt = :dueAt, \
                         #statePk = :unpaid, #stateSk = :dueKey",
                    )
                    .expression_attribute_values(":unpaid", s(keys::AGENCY_UNPAID_PARTITION))
                    .expression_attribute_values(":dueKey", s(keys::unpaid_sk(due_at, &statement.statement_id))),
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
}
