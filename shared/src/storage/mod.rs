//! The storage adapter: the only module that speaks DynamoDB attribute values.
//!
//! Item layout (one table, string keys `pk`/`sk`):
//!
//! | item                      | pk                    | sk                                             |
//! |---------------------------|-----------------------|------------------------------------------------|
//! | default pricing           | `PRICING#DEFAULT`     | `PRICING`                                      |
//! | agency pricing            | `AGENCY#{agencyId}`   | `PRICING`                                      |
//! | account + balances        | `ACCOUNT#{accountId}` | `ACCOUNT`                                      |
//! | purchase                  | `ACCOUNT#{accountId}` | `PURCHASE#{uuidv7}`                            |
//! | ledger entry              | `ACCOUNT#{accountId}` | `LEDGER#{createdAt}#{entryId}`                 |
//! | consumption (exactly once)| `ACCOUNT#{accountId}` | `CONSUMPTION#{consumptionId}`                  |
//! | agency credit line        | `AGENCYLINE#{agencyId}` | `CREDIT_LINE`                                |
//! | agency day sums           | `AGENCYLINE#{agencyId}` | `DAY#{YYYY-MM-DD}` ([`agency_days`])         |
//! | payment (exactly once)    | `PAYMENT#{reference}` | `PAYMENT`                                      |
//! | payment (owner's copy)    | `ACCOUNT#…` / `AGENCY#…` | `PAYMENT#{reference}`                       |
//! | idempotency key           | `ACCOUNT#{accountId}` | `IDEMPOTENCY#{key}`                            |
//! | client statement (+ part) | `ACCOUNT#{accountId}` | `STATEMENT#{cycleEnd}` (`#PART#{firstId}`)     |
//! | agency statement (+ part) | `AGENCY#{agencyId}`   | `STATEMENT#{cycleEnd}` (`#PART#{firstId}`)     |
//! | pricing audit entry       | `AGENCY#{agencyId}`   | `AUDIT#PRICING#{changedAt}#{uuidv7}`           |
//! | credit limit audit entry  | `AGENCY#{agencyId}`   | `AUDIT#LIMIT#{changedAt}#{uuidv7}`             |
//! | void (ledger entry, type `void`) | `ACCOUNT#{accountId}` | `LEDGER#{createdAt}#{entryId}`          |
//! | void idempotency key      | `AGENCY#{agencyId}`   | `IDEMPOTENCY#{key}`                            |
//!
//! Unbilled purchases also carry the keys of the sparse indexes in [`crate::table`].
//!
//! One file per concern: [`keys`] and [`items`] (names and the one set of decoding helpers), [`transact`]
//! (the retry loop of every transaction), `balance_update` and `line_update` (the one balance update and the one
//! credit line move every transaction builds from), [`idempotency`] (every route's keys), [`purchases`],
//! [`consumption`] (consumptions and releases), [`history`], [`unbilled`], [`billing`] and [`cycle_finish`] (the
//! pages, steps and cycle end the billing run is built from), [`statement_reads`], [`statements`] (payable, paid,
//! failed, overdue), [`ledger`] (ledger entries, the ledger page with balances after each entry, and what
//! reconcile reads), [`agency_purchases`] (the agency's pages of its clients' purchases), [`void`] (the void
//! transaction), [`lines`], [`agency`], [`collection`], [`rules`] (a client's alert thresholds and top-up rules)
//! and [`seeds`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use crate::table::{AGENCY_INDEX, SparseIndex};

pub mod agency;
pub mod agency_days;
pub mod agency_purchases;
mod balance_update;
pub mod billing;
pub mod collection;
mod consume;
pub mod consumption;
pub mod cycle_finish;
pub mod history;
pub mod idempotency;
pub mod items;
pub mod keys;
pub mod ledger;
mod line_update;
pub mod lines;
pub mod outbox;
mod purchase_items;
pub mod purchases;
pub mod rules;
pub mod seeds;
pub mod statement_reads;
pub mod statements;
pub mod transact;
pub mod unbilled;
pub mod void;

pub use agency::{AuditKey, ClientPage, ClientPosition, ClientRow, PricingAuditPage, PricingWrite, UnbilledSums};
pub use agency_purchases::{AgencyPurchasePage, AgencyPurchasePosition, ClientInBookPage, ClientInBookPosition};
pub use billing::StepOutcome;
pub use consumption::{
    AdjustOutcome, AttemptOutcome, ConsumeAttempt, ConsumptionEffects, ConsumptionReceipt, ReleaseOutcome,
    ReleaseReceipt, TopupReceipt,
};
pub use cycle_finish::BuildingPage;
pub use history::{PurchaseKey, PurchasePage};
pub use idempotency::{IdempotencyClaim, StoredIdempotency};
pub use ledger::{LedgerPage, LedgerPageError, LedgerPosition};
pub use lines::{ClientLimitOutcome, LimitChangeBy};
pub use purchases::{RecordOutcome, unbilled_shard};
pub use seeds::{AccountRule, AccountWrite, ProvisionOutcome, ProvisionRequestRecord};
pub use statement_reads::{StatementKey, StatementPage, StatementPurchasePosition, StatementPurchasesPage};
pub use transact::ConflictRetryPolicy;
pub use unbilled::{PageKey, UnbilledPage, UnbilledPages};
pub use void::{VoidOutcome, VoidRequest};

/// A storage failure, already sorted into "try again later" and "our bug".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB could not be reached, timed out, throttled or kept conflicting past our retry budget.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A request DynamoDB refused as malformed, or data we cannot read: a defect, not an outage.
    #[error("storage error: {0}")]
    Internal(String),
}

/// Error codes after which the same request may succeed if sent again later.
const TRANSIENT_CODES: [&str; 7] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
];

pub(crate) fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let context = || format!("{operation}: {}", aws_smithy_types::error::display::DisplayErrorContext(&err));
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(context())
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) {
                StoreError::Unavailable(format!("{operation}: {code}: {message}"))
            } else {
                StoreError::Internal(format!("{operation}: {code}: {message}"))
            }
        }
        _ => StoreError::Internal(context()),
    }
}

pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{context}: {err}"))
}

/// The table, through one SDK client built at cold start.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) table_name: String,
    pub(crate) retry: ConflictRetryPolicy,
}

impl Store {
    pub fn new(client: Client, table_name: impl Into<String>) -> Store {
        Store { client, table_name: table_name.into(), retry: ConflictRetryPolicy::default() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// A strongly consistent Query of the items of partition `pk` whose sort key starts with `sk_prefix`,
    /// oldest key first; callers add what else they need (order, limit, projection, paging).
    pub(crate) fn partition_query(&self, pk: String, sk_prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table_name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", items::s(pk))
            .expression_attribute_values(":prefix", items::s(sk_prefix))
            .consistent_read(true)
    }

    /// A Query of the agency's partition of the `agency-items` index, sort keys starting with `prefix` (its clients,
    /// `CLIENT#`, or its clients' purchases, `PURCHASE#`); eventually consistent, as every index.
    pub(crate) fn agency_items_query(&self, agency_id: &str, prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table_name)
            .index_name(AGENCY_INDEX.name)
            .key_condition_expression("#agencyPk = :agencyPk AND begins_with(#agencySk, :prefix)")
            .expression_attribute_names("#agencyPk", AGENCY_INDEX.partition_key)
            .expression_attribute_names("#agencySk", AGENCY_INDEX.sort_key)
            .expression_attribute_values(":agencyPk", items::s(keys::agency(agency_id)))
            .expression_attribute_values(":prefix", items::s(prefix))
    }

    /// A Query of a sparse index's partition `pk`, with sort keys below `sort_below` if given (eventually
    /// consistent: indexes offer nothing else).
    pub(crate) fn index_query(&self, index: SparseIndex, pk: String, sort_below: Option<&str>) -> QueryFluentBuilder {
        let query = self
            .client
            .query()
            .table_name(&self.table_name)
            .index_name(index.name)
            .expression_attribute_names("#indexPk", index.partition_key)
            .expression_attribute_values(":indexPk", items::s(pk));
        match sort_below {
            None => query.key_condition_expression("#indexPk = :indexPk"),
            Some(below) => query
                .key_condition_expression("#indexPk = :indexPk AND #indexSk < :below")
                .expression_attribute_names("#indexSk", index.sort_key)
                .expression_attribute_values(":below", items::s(below)),
        }
    }

    /// Every item of a Query ([`Store::partition_query`], [`Store::index_query`]), through the SDK's paginator.
    pub(crate) async fn partition_items(
        &self,
        what: &str,
        query: QueryFluentBuilder,
    ) -> Result<Vec<items::Item>, StoreError> {
        query.into_paginator().items().send().try_collect().await.map_err(|e| classify(what, e))
    }

    /// One item by key, strongly consistent.
    pub(crate) async fn get_item(&self, pk: String, sk: &str) -> Result<Option<items::Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(output.item)
    }

    /// Items by key in one `BatchGetItem` (at most 100 distinct keys), strongly consistent. It may hand back
    /// unprocessed keys under load and has no paginator: a few rounds, then `Unavailable`.
    pub(crate) async fn batch_get(&self, what: &str, keys: Vec<items::Item>) -> Result<Vec<items::Item>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys_and_attributes = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| internal("BatchGetItem keys", e))?;
        let mut pending = std::collections::HashMap::from([(self.table_name.clone(), keys_and_attributes)]);
        let mut items = Vec::new();
        for _ in 0..5 {
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| classify(what, e))?;
            items.extend(output.responses.and_then(|mut r| r.remove(&self.table_name)).unwrap_or_default());
            pending = output.unprocessed_keys.unwrap_or_default();
            if pending.is_empty() {
                return Ok(items);
            }
        }
        Err(StoreError::Unavailable(format!("{what}: keys left unprocessed")))
    }
}
