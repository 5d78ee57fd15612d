//! The storage adapter: the only module that speaks DynamoDB attribute values.
//!
//! Item layout (one table, string keys `pk`/`sk`):
//!
//! | item                 | pk                    | sk                    |
//! |----------------------|-----------------------|-----------------------|
//! | default pricing      | `PRICING#DEFAULT`     | `PRICING`             |
//! | agency pricing       | `AGENCY#{agencyId}`   | `PRICING`             |
//! | account + balances   | `ACCOUNT#{accountId}` | `ACCOUNT`             |
//! | purchase             | `ACCOUNT#{accountId}` | `PURCHASE#{uuidv7}`   |
//! | idempotency key      | `IDEMPOTENCY#{key}`   | `IDEMPOTENCY`         |
//!
//! Unbilled purchases also carry the keys of the sparse indexes in [`crate::table`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AgencyPricing, Balances, CreditType, DefaultPricing, EffectivePricing, PurchaseLine, Rate, RateOverride,
};
use crate::table::{PARTITION_KEY, SORT_KEY, UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX, UNBILLED_SHARDS};

/// Billing runs, purchase history and statements.
pub mod billing;

/// A storage failure, already sorted into "try again later" and "our bug".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// DynamoDB could not be reached, timed out, throttled or kept conflicting past our retry budget.
    Unavailable(String),
    /// A request DynamoDB refused as malformed, or data we cannot read: a defect, not an outage.
    Internal(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "storage unavailable: {m}"),
            StoreError::Internal(m) => write!(f, "storage error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

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
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!(
                "{operation}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ))
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
        _ => StoreError::Internal(format!(
            "{operation}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&err)
        )),
    }
}

pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{context}: {err}"))
}

pub(crate) mod keys {
    pub const DEFAULT_PRICING_PK: &str = "PRICING#DEFAULT";
    pub const PRICING_SK: &str = "PRICING";
    pub const ACCOUNT_SK: &str = "ACCOUNT";
    pub const IDEMPOTENCY_SK: &str = "IDEMPOTENCY";
    pub const PURCHASE_SK_PREFIX: &str = "PURCHASE#";

    pub fn agency(agency_id: &str) -> String {
        format!("AGENCY#{agency_id}")
    }
    pub fn account(account_id: &str) -> String {
        format!("ACCOUNT#{account_id}")
    }
    pub fn purchase_sk(purchase_id: &str) -> String {
        format!("{PURCHASE_SK_PREFIX}{purchase_id}")
    }
    /// The unbilled-index partition of shard `shard`: written by a purchase, queried by the billing run.
    pub fn unbilled(shard: u32) -> String {
        format!("UNBILLED#{shard}")
    }
    pub fn idempotency(key: &str) -> String {
        format!("IDEMPOTENCY#{key}")
    }
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(PARTITION_KEY.to_owned(), s(pk)), (SORT_KEY.to_owned(), s(sk))])
}

/// The balance attribute of one credit type on the account item (top-level, so `ADD` can create it).
fn balance_attribute(credit_type: CreditType) -> &'static str {
    match credit_type {
        CreditType::Audience => "balanceAudience",
        CreditType::Enrichment => "balanceEnrichment",
        CreditType::Pixel => "balancePixel",
        CreditType::CustomModel => "balanceCustomModel",
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultPricingItem {
    version: u64,
    currency: String,
    rates: BTreeMap<CreditType, Rate>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgencyPricingItem {
    agency_id: String,
    version: u64,
    currency: String,
    #[serde(default)]
    rates: BTreeMap<CreditType, RateOverride>,
}

/// An account as stored: its agency and its balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub agency_id: String,
    pub name: Option<String>,
    pub balances: Balances,
}

/// A purchase record as stored, without the key attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseRecord {
    pub purchase_id: String,
    pub account_id: String,
    pub agency_id: String,
    /// RFC 3339, UTC, milliseconds: sorts as text in time order.
    pub created_at: String,
    pub currency: String,
    pub lines: Vec<PurchaseLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_at_cost: Decimal,
    pub billed_to_client: bool,
    pub billed_to_agency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_statement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_statement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl PurchaseRecord {
    /// A new, unbilled purchase priced by `quote`, created at `created_at`.
    pub fn unbilled(
        purchase_id: String,
        account_id: &str,
        agency_id: &str,
        created_at: std::time::SystemTime,
        quote: crate::domain::Quote,
        idempotency_key: Option<String>,
    ) -> PurchaseRecord {
        PurchaseRecord {
            purchase_id,
            account_id: account_id.to_owned(),
            agency_id: agency_id.to_owned(),
            created_at: humantime::format_rfc3339_millis(created_at).to_string(),
            currency: crate::domain::CURRENCY.to_owned(),
            lines: quote.lines,
            total: quote.total,
            total_at_cost: quote.total_at_cost,
            billed_to_client: false,
            billed_to_agency: false,
            client_statement_id: None,
            agency_statement_id: None,
            idempotency_key,
        }
    }
}

/// The part of a purchase item the reconciliation reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerPurchase {
    account_id: String,
    lines: Vec<LedgerLine>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerLine {
    credit_type: CreditType,
    quantity: u64,
}

/// Claims an `Idempotency-Key` in the purchase's own transaction.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    pub request_hash: String,
    /// The `purchase` part of the first 201 body, returned again on a replay.
    pub purchase_body: String,
    pub now_epoch_seconds: u64,
    pub expires_at_epoch_seconds: u64,
}

/// What an earlier request stored under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotency {
    pub account_id: String,
    pub request_hash: String,
    pub purchase_body: String,
}

/// How a purchase write ended when it did not fail outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    /// The prices or the account's agency changed since they were read: re-read and re-quote.
    PricingChanged,
    /// The account item is gone.
    AccountMissing,
    /// The key was already claimed (and has not expired).
    IdempotencyKeyTaken(StoredIdempotency),
}

/// Bounded retries of cancelled transactions: enough to ride out a burst, well inside the function timeout.
#[derive(Debug, Clone, Copy)]
pub struct ConflictRetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time has gone by since the first.
    pub budget: Duration,
}

impl Default for ConflictRetryPolicy {
    fn default() -> Self {
        ConflictRetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(400),
            budget: Duration::from_secs(3),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) table_name: String,
    retry: ConflictRetryPolicy,
}

impl Store {
    pub fn new(client: Client, table_name: impl Into<String>) -> Store {
        Store { client, table_name: table_name.into(), retry: ConflictRetryPolicy::default() }
    }

    pub fn with_retry_policy(mut self, retry: ConflictRetryPolicy) -> Store {
        self.retry = retry;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Reads an account and its balances (strongly consistent, so a purchase's own credits show at once).
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(key(keys::account(account_id), keys::ACCOUNT_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem account", e))?;
        output.item.map(|item| account_from_item(&item)).transpose()
    }

    /// Reads the default pricing and the agency's overrides in one `BatchGetItem`.
    pub async fn pricing(&self, agency_id: &str) -> Result<(DefaultPricing, Option<AgencyPricing>), StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(key(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK))
            .keys(key(keys::agency(agency_id), keys::PRICING_SK))
            .consistent_read(true)
            .build()
            .map_err(|e| internal("BatchGetItem keys", e))?;
        let mut pending = HashMap::from([(self.table_name.clone(), keys)]);
        let mut items = Vec::new();
        // BatchGetItem may hand back unprocessed keys under load; a few rounds always finish two keys.
        for _ in 0..5 {
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| classify("BatchGetItem pricing", e))?;
            if let Some(mut responses) = output.responses {
                items.extend(responses.remove(&self.table_name).unwrap_or_default());
            }
            pending = output.unprocessed_keys.unwrap_or_default();
            if pending.is_empty() {
                break;
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable("BatchGetItem pricing: keys left unprocessed".into()));
        }
        let mut default = None;
        let mut agency = None;
        for item in items {
            match item.get(PARTITION_KEY) {
                Some(AttributeValue::S(pk)) if pk == keys::DEFAULT_PRICING_PK => {
                    let stored: DefaultPricingItem =
                        serde_dynamo::from_item(item).map_err(|e| internal("default pricing item", e))?;
                    default = Some(DefaultPricing { version: stored.version, rates: stored.rates });
                }
                _ => {
                    let stored: AgencyPricingItem =
                        serde_dynamo::from_item(item).map_err(|e| internal("agency pricing item", e))?;
                    agency = Some(AgencyPricing {
                        agency_id: stored.agency_id,
                        version: stored.version,
                        rates: stored.rates,
                    });
                }
            }
        }
        let default = default.ok_or_else(|| StoreError::Internal("the default pricing item is missing".into()))?;
        Ok((default, agency))
    }

    /// Reads what an earlier request stored under an idempotency key, if it has not expired.
    pub async fn idempotency(
        &self,
        key_value: &str,
        now_epoch_seconds: u64,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        let Some(item) = self.get_raw(keys::idempotency(key_value), keys::IDEMPOTENCY_SK).await? else {
            return Ok(None);
        };
        let expired = match item.get(crate::table::TTL_ATTRIBUTE) {
            Some(AttributeValue::N(v)) => v.parse::<u64>().map_or(true, |at| at < now_epoch_seconds),
            _ => true,
        };
        if expired {
            return Ok(None);
        }
        stored_idempotency(&item).map(Some)
    }

    /// Writes the purchase record, adds its credits to the balance and (optionally) claims the idempotency key,
    /// all in one `TransactWriteItems`, checking in the same transaction that the prices used are still current.
    pub async fn record_purchase(
        &self,
        purchase: &PurchaseRecord,
        pricing: &EffectivePricing,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<RecordOutcome, StoreError> {
        let items = self.purchase_transaction(purchase, pricing, idempotency)?;
        // The same token on every attempt makes a resend after a lost response a no-op for 10 minutes.
        // An unanswered purchase is not resent here: the handler's budget is short, and the client's replay
        // with its Idempotency-Key settles it.
        let outcome = self
            .transact_with_retries("TransactWriteItems purchase", &items, &purchase.purchase_id, false, |reasons| {
                condition_outcome(reasons, idempotency.is_some())
            })
            .await?;
        Ok(outcome.unwrap_or(RecordOutcome::Recorded))
    }

    /// Sends one `TransactWriteItems`, resending it with the same token on transient cancellations
    /// (conflicts, throttling) and, if `resend_unanswered`, when the outcome is unknown, with full-jitter
    /// backoff bounded by the retry policy. `on_conditions` turns condition failures into an outcome
    /// (`Some`), or `None` when none failed. `Ok(None)` means the transaction committed.
    pub(crate) async fn transact_with_retries<T>(
        &self,
        what: &str,
        items: &[TransactWriteItem],
        token: &str,
        resend_unanswered: bool,
        on_conditions: impl Fn(&[aws_sdk_dynamodb::types::CancellationReason]) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.to_vec()))
                .client_request_token(token)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let retryable = match &err {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        let reasons = cancelled.cancellation_reasons();
                        if let Some(outcome) = on_conditions(reasons)? {
                            return Ok(Some(outcome));
                        }
                        reasons.iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
                            )
                        })
                    }
                    TransactWriteItemsError::TransactionInProgressException(_) => true,
                    _ => false,
                },
                // The outcome is unknown (the SDK's own retries are spent): resending the same items with the
                // same token is safe, and DynamoDB answers with the first outcome if they were applied.
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                    resend_unanswered
                }
                _ => false,
            };
            if !retryable {
                return Err(classify(what, err));
            }
            let delay = self.backoff(attempt);
            if attempt >= self.retry.max_attempts || started.elapsed() + delay > self.retry.budget {
                tracing::warn!(attempt, "{what}: still cancelled or unanswered; giving up");
                return Err(StoreError::Unavailable(format!(
                    "{what}: cancelled or unanswered {attempt} times: {}",
                    classify(what, err)
                )));
            }
            tracing::info!(attempt, delay_ms = delay.as_millis() as u64, "{what}: cancelled or unanswered; resending");
            tokio::time::sleep(delay).await;
        }
    }

    /// Full jitter over an exponential ceiling: spreads retrying writers apart.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.retry.base_delay.saturating_mul(1 << attempt.min(16)).min(self.retry.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }

    /// The items of the purchase transaction `record_purchase` sends, in its order (balance update, purchase put,
    /// default and agency price checks, then the idempotency claim if any). Public so the benchmark can send
    /// exactly the same items through a bare SDK call.
    pub fn purchase_transaction(
        &self,
        purchase: &PurchaseRecord,
        pricing: &EffectivePricing,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the purchase transaction", e);

        // 1. Credits into the balance, only if the account still belongs to the agency whose prices we used.
        let mut add_expression = Vec::new();
        let mut names = HashMap::from([("#agency".to_owned(), "agencyId".to_owned())]);
        let mut values = HashMap::from([(":agency".to_owned(), s(&purchase.agency_id))]);
        for (i, line) in purchase.lines.iter().enumerate() {
            add_expression.push(format!("#b{i} :q{i}"));
            names.insert(format!("#b{i}"), balance_attribute(line.credit_type).to_owned());
            values.insert(format!(":q{i}"), n(line.quantity));
        }
        if add_expression.is_empty() {
            return Err(StoreError::Internal("a purchase without lines reached storage".into()));
        }
        let balance_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(key(keys::account(&purchase.account_id), keys::ACCOUNT_SK)))
            .update_expression(format!("ADD {}", add_expression.join(", ")))
            .condition_expression("attribute_exists(pk) AND #agency = :agency")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;

        // 2. The purchase record, in both sparse billing indexes until billed.
        let mut record = serde_dynamo::to_item::<_, HashMap<String, AttributeValue>>(purchase)
            .map_err(|e| internal("serialising the purchase", e))?;
        record.extend(key(keys::account(&purchase.account_id), &keys::purchase_sk(&purchase.purchase_id)));
        let shard = unbilled_shard(&purchase.purchase_id);
        let index_sort = format!("{}#{}", purchase.created_at, purchase.purchase_id);
        record.insert(UNBILLED_CLIENT_INDEX.partition_key.to_owned(), s(keys::unbilled(shard)));
        record.insert(UNBILLED_CLIENT_INDEX.sort_key.to_owned(), s(&index_sort));
        record.insert(UNBILLED_AGENCY_INDEX.partition_key.to_owned(), s(keys::unbilled(shard)));
        record.insert(UNBILLED_AGENCY_INDEX.sort_key.to_owned(), s(&index_sort));
        let purchase_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;

        // 3. The prices used are still the current ones.
        let default_check = ConditionCheck::builder()
            .table_name(&self.table_name)
            .set_key(Some(key(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(pricing.default_version))
            .build()
            .map_err(build)?;
        let agency_check = ConditionCheck::builder()
            .table_name(&self.table_name)
            .set_key(Some(key(keys::agency(&pricing.agency_id), keys::PRICING_SK)));
        let agency_check = match pricing.agency_version {
            Some(version) => {
                agency_check.condition_expression("version = :v").expression_attribute_values(":v", n(version))
            }
            None => agency_check.condition_expression("attribute_not_exists(pk)"),
        }
        .build()
        .map_err(build)?;

        let mut items = vec![
            TransactWriteItem::builder().update(balance_update).build(),
            TransactWriteItem::builder().put(purchase_put).build(),
            TransactWriteItem::builder().condition_check(default_check).build(),
            TransactWriteItem::builder().condition_check(agency_check).build(),
        ];

        // 4. The idempotency key, unless someone holds it and it has not expired (TTL deletion lags).
        if let Some(claim) = idempotency {
            let item = HashMap::from([
                (PARTITION_KEY.to_owned(), s(keys::idempotency(&claim.key))),
                (SORT_KEY.to_owned(), s(keys::IDEMPOTENCY_SK)),
                ("accountId".to_owned(), s(&purchase.account_id)),
                ("purchaseId".to_owned(), s(&purchase.purchase_id)),
                ("requestHash".to_owned(), s(&claim.request_hash)),
                ("purchaseBody".to_owned(), s(&claim.purchase_body)),
                (crate::table::TTL_ATTRIBUTE.to_owned(), n(claim.expires_at_epoch_seconds)),
            ]);
            let put = Put::builder()
                .table_name(&self.table_name)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR #expires < :now")
                .expression_attribute_names("#expires", crate::table::TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(claim.now_epoch_seconds))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    /// Every purchase record of an account, oldest first (Query on the account's item collection).
    pub async fn all_purchases(&self, account_id: &str) -> Result<Vec<PurchaseRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table_name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(keys::account(account_id)))
                .expression_attribute_values(":prefix", s(keys::PURCHASE_SK_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query purchases", e))?;
            for item in output.items.unwrap_or_default() {
                records.push(serde_dynamo::from_item(item).map_err(|e| internal("purchase item", e))?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(records),
            }
        }
    }

    /// Reads every account and purchase item into `ledger` (a parallel Scan: an operator's audit, never a
    /// request path). Only the attributes the check needs are read.
    pub async fn read_ledger(&self, ledger: &mut crate::reconcile::Ledger, segments: i32) -> Result<(), StoreError> {
        let mut tasks = Vec::new();
        for segment in 0..segments {
            let store = self.clone();
            tasks.push(tokio::spawn(async move { store.scan_ledger_segment(segment, segments).await }));
        }
        for task in tasks {
            let items = task.await.map_err(|e| internal("ledger scan task", e))??;
            for item in items {
                let sk = match item.get(SORT_KEY) {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => continue,
                };
                if sk == keys::ACCOUNT_SK {
                    let account = account_from_item(&item)?;
                    ledger.add_account(&account.account_id, account.balances);
                } else if sk.starts_with(keys::PURCHASE_SK_PREFIX) {
                    let record: LedgerPurchase =
                        serde_dynamo::from_item(item).map_err(|e| internal("purchase item", e))?;
                    ledger.add_purchase(&record.account_id, record.lines.iter().map(|l| (l.credit_type, l.quantity)));
                }
            }
        }
        Ok(())
    }

    async fn scan_ledger_segment(
        &self,
        segment: i32,
        segments: i32,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let request = self
                .client
                .scan()
                .table_name(&self.table_name)
                .consistent_read(true)
                .segment(segment)
                .total_segments(segments)
                .filter_expression("sk = :account OR begins_with(sk, :purchase)")
                .expression_attribute_values(":account", s(keys::ACCOUNT_SK))
                .expression_attribute_values(":purchase", s(keys::PURCHASE_SK_PREFIX))
                .expression_attribute_names("#lines", "lines") // a reserved word
                .projection_expression(format!(
                    "sk, accountId, agencyId, #lines, {}",
                    CreditType::ALL.map(balance_attribute).join(", ")
                ))
                .set_exclusive_start_key(start.take());
            let output = request.send().await.map_err(|e| classify("Scan ledger", e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    // ---- seed loading -------------------------------------------------------------------------

    /// Stores the default pricing; bumps its version only when the rates change, so loading twice is a no-op.
    pub async fn upsert_default_pricing(&self, rates: &BTreeMap<CreditType, Rate>) -> Result<bool, StoreError> {
        let current = self.get_raw(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK).await?;
        let current: Option<DefaultPricingItem> =
            current.map(serde_dynamo::from_item).transpose().map_err(|e| internal("default pricing item", e))?;
        if current.as_ref().is_some_and(|c| &c.rates == rates) {
            return Ok(false);
        }
        let version = current.as_ref().map_or(0, |c| c.version);
        let item =
            DefaultPricingItem { version: version + 1, currency: crate::domain::CURRENCY.into(), rates: rates.clone() };
        self.put_versioned(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK, &item, current.map(|c| c.version))
            .await?;
        Ok(true)
    }

    /// Stores an agency's overrides; bumps its version only when they change.
    pub async fn upsert_agency_pricing(
        &self,
        agency_id: &str,
        rates: &BTreeMap<CreditType, RateOverride>,
    ) -> Result<bool, StoreError> {
        let current = self.get_raw(keys::agency(agency_id), keys::PRICING_SK).await?;
        let current: Option<AgencyPricingItem> =
            current.map(serde_dynamo::from_item).transpose().map_err(|e| internal("agency pricing item", e))?;
        if current.as_ref().is_some_and(|c| &c.rates == rates) {
            return Ok(false);
        }
        let version = current.as_ref().map_or(0, |c| c.version);
        let item = AgencyPricingItem {
            agency_id: agency_id.to_owned(),
            version: version + 1,
            currency: crate::domain::CURRENCY.into(),
            rates: rates.clone(),
        };
        self.put_versioned(keys::agency(agency_id), keys::PRICING_SK, &item, current.map(|c| c.version)).await?;
        Ok(true)
    }

    /// Creates or updates an account's agency and name; existing balances are never touched.
    pub async fn upsert_account(
        &self,
        account_id: &str,
        agency_id: &str,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = "SET accountId = :id, agencyId = :agency".to_owned();
        let mut values = HashMap::from([(":id".to_owned(), s(account_id)), (":agency".to_owned(), s(agency_id))]);
        if let Some(name) = name {
            update.push_str(", #name = :name");
            values.insert(":name".to_owned(), s(name));
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(key(keys::account(account_id), keys::ACCOUNT_SK)));
        if name.is_some() {
            request = request.expression_attribute_names("#name", "name");
        }
        request
            .update_expression(update)
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| classify("UpdateItem account", e))?;
        Ok(())
    }

    async fn get_raw(&self, pk: String, sk: &str) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(output.item)
    }

    /// Writes a versioned item only if nobody changed it since we read `expected_version`.
    async fn put_versioned<T: Serialize>(
        &self,
        pk: String,
        sk: &str,
        item: &T,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut attributes = serde_dynamo::to_item::<_, HashMap<String, AttributeValue>>(item)
            .map_err(|e| internal("serialising a pricing item", e))?;
        attributes.extend(key(pk, sk));
        let request = self.client.put_item().table_name(&self.table_name).set_item(Some(attributes));
        let request = match expected_version {
            Some(v) => request.condition_expression("version = :v").expression_attribute_values(":v", n(v)),
            None => request.condition_expression("attribute_not_exists(pk)"),
        };
        request.send().await.map_err(|e| classify("PutItem pricing", e))?;
        Ok(())
    }
}

/// The index partition an unbilled purchase lands in; stable for a given purchase id.
pub fn unbilled_shard(purchase_id: &str) -> u32 {
    let hash = purchase_id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    hash % UNBILLED_SHARDS
}

/// Turns condition failures of the purchase transaction into an outcome; `None` if no condition failed.
fn condition_outcome(
    reasons: &[aws_sdk_dynamodb::types::CancellationReason],
    has_idempotency_item: bool,
) -> Result<Option<RecordOutcome>, StoreError> {
    let failed = |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
    // The key outranks everything: a replay must return the first answer even if prices moved since.
    if has_idempotency_item && failed(4) {
        let item = reasons[4]
            .item()
            .ok_or_else(|| StoreError::Internal("idempotency condition failed without the stored item".into()))?;
        return Ok(Some(RecordOutcome::IdempotencyKeyTaken(stored_idempotency(item)?)));
    }
    // Our own purchase id already exists only if an earlier attempt of this very call committed and its
    // response was lost (the request token can be forgotten, e.g. across an engine restart): that is success.
    if failed(1) {
        return Ok(Some(RecordOutcome::Recorded));
    }
    if failed(0) {
        let account_exists = reasons[0].item().is_some_and(|item| !item.is_empty());
        return Ok(Some(if account_exists { RecordOutcome::PricingChanged } else { RecordOutcome::AccountMissing }));
    }
    if failed(2) || failed(3) {
        return Ok(Some(RecordOutcome::PricingChanged));
    }
    Ok(None)
}

fn stored_idempotency(item: &HashMap<String, AttributeValue>) -> Result<StoredIdempotency, StoreError> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Internal(format!("idempotency item lacks {name}"))),
    };
    Ok(StoredIdempotency {
        account_id: text("accountId")?,
        request_hash: text("requestHash")?,
        purchase_body: text("purchaseBody")?,
    })
}

fn account_from_item(item: &HashMap<String, AttributeValue>) -> Result<Account, StoreError> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let account_id = text("accountId").ok_or_else(|| StoreError::Internal("account item lacks accountId".into()))?;
    let agency_id = text("agencyId").ok_or_else(|| StoreError::Internal("account item lacks agencyId".into()))?;
    let mut balances = BTreeMap::new();
    for credit_type in CreditType::ALL {
        let value = match item.get(balance_attribute(credit_type)) {
            None => 0,
            Some(AttributeValue::N(v)) => {
                v.parse::<u64>().map_err(|e| internal(&format!("balance of {credit_type}"), e))?
            }
            Some(_) => return Err(StoreError::Internal(format!("balance of {credit_type} is not a number"))),
        };
        balances.insert(credit_type, value);
    }
    Ok(Account { account_id, agency_id, name: text("name"), balances: Balances(balances) })
}
