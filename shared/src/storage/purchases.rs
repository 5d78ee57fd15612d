//! Accounts, prices and the purchase transaction.

use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem};
use rust_decimal::Decimal;

use super::agency_days::{DayChange, day_sums_update};
use super::balance_update::BalanceUpdate;
use super::idempotency::{IdempotencyClaim, KeyOwner, StoredIdempotency, idempotency_put, stored_idempotency};
use super::items::{AgencyPricingItem, Attributes, DefaultPricingItem, account_from_item, from_item, s};
use super::ledger::ledger_entry_put;
use super::line_update::LineUpdate;
use super::outbox::outbox_put;
use super::purchase_items::{pricing_checks, purchase_put};
use super::transact::condition_failed;
use super::{Store, StoreError, keys};
use crate::domain::events::{self, PurchaseTrigger};
use crate::domain::ledger::LedgerEntry;
use crate::domain::{Account, AgencyPricing, DefaultPricing, EffectivePricing, PurchaseRecord};
use crate::table::{PARTITION_KEY, UNBILLED_SHARDS};

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
    /// The account is on hold until this statement is paid.
    OnHold {
        statement_id: String,
    },
    /// The client's line has less than the purchase's total available (at price).
    CreditLimitExceeded {
        available: Decimal,
    },
    /// The agency's line has less than the purchase's total at cost available (or the agency has no line).
    AgencyCreditLimitExceeded,
}

/// Positions of the purchase transaction's items, as `condition_outcome` reads their cancellation reasons.
const ACCOUNT: usize = 0;
const PURCHASE: usize = 1;
const DEFAULT_PRICING: usize = 2;
const AGENCY_PRICING: usize = 3;
const AGENCY_LINE: usize = 4;
const LEDGER_ENTRY: usize = 5;
const IDEMPOTENCY_KEY: usize = 6;

/// The index partition an unbilled purchase lands in; stable for a given purchase id.
pub fn unbilled_shard(purchase_id: &str) -> u32 {
    let hash = purchase_id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    hash % UNBILLED_SHARDS
}

impl Store {
    /// Reads an account and its balances (strongly consistent, so a purchase's own credits show at once).
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        let item = self.get_item(keys::account(account_id), keys::ACCOUNT_SK).await?;
        item.map(|item| account_from_item(&item)).transpose()
    }

    /// Reads the default pricing and the agency's overrides in one `BatchGetItem`.
    pub async fn pricing(&self, agency_id: &str) -> Result<(DefaultPricing, Option<AgencyPricing>), StoreError> {
        let keys = vec![
            keys::key(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK),
            keys::key(keys::agency(agency_id), keys::PRICING_SK),
        ];
        let items = self.batch_get("BatchGetItem pricing", keys).await?;
        let mut default = None;
        let mut agency = None;
        for item in items {
            if item.optional_string(PARTITION_KEY).as_deref() == Some(keys::DEFAULT_PRICING_PK) {
                let stored: DefaultPricingItem = from_item("default pricing", item)?;
                default = Some(DefaultPricing { version: stored.version, rates: stored.rates });
            } else {
                let stored: AgencyPricingItem = from_item("agency pricing", item)?;
                agency =
                    Some(AgencyPricing { agency_id: stored.agency_id, version: stored.version, rates: stored.rates });
            }
        }
        let default = default.ok_or_else(|| StoreError::Internal("the default pricing item is missing".into()))?;
        Ok((default, agency))
    }

    /// One purchase record of an account, as it is now (billed flags included).
    pub async fn purchase(&self, account_id: &str, purchase_id: &str) -> Result<Option<PurchaseRecord>, StoreError> {
        let item = self.get_item(keys::account(account_id), &keys::purchase_sk(purchase_id)).await?;
        item.map(|item| from_item("purchase", item)).transpose()
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
                condition_outcome(reasons, purchase, idempotency.is_some())
            })
            .await?;
        Ok(outcome.unwrap_or(RecordOutcome::Recorded))
    }

    /// The items of the purchase transaction, at the positions named above: the account (credits in, the client's
    /// line down), the purchase record, the default and agency price checks, the agency's line down, the
    /// purchase's ledger entry, and the idempotency claim if any; then its event and the agency's day sums.
    pub(crate) fn purchase_transaction(
        &self,
        purchase: &PurchaseRecord,
        pricing: &EffectivePricing,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        // 1. Credits into the balance and the total out of the client's line, only if the account still belongs
        //    to the agency whose prices we used, is not on hold, and its line has the total available.
        let balance_update =
            BalanceUpdate::new(purchase.lines.iter().map(|line| (line.credit_type, i128::from(line.quantity))));
        if balance_update.changes_nothing() {
            return Err(StoreError::Internal("a purchase without lines reached storage".into()));
        }
        // The agency's running unbilled sums for this client, so its clients page reads them instead of the
        // client's purchases.
        let balance_update = balance_update
            .unbilled_sums(&purchase.agency_id, 1, purchase.total, purchase.total_at_cost)
            .paid_from_line(purchase.total)
            .condition("#agency = :agency AND attribute_not_exists(#held)")
            .name("#agency", "agencyId")
            .name("#held", keys::HELD_STATEMENT_IDS)
            .value(":agency", s(&purchase.agency_id))
            .build(&self.table_name, &purchase.account_id)?;

        // 2. The purchase record, in every index it belongs to.
        let purchase_put = purchase_put(&self.table_name, purchase)?;

        // 3. The prices used are still the current ones.
        let [default_check, agency_check] = pricing_checks(&self.table_name, pricing)?;

        // 4. The total at cost out of the agency's line: its clients together stay within its ceiling.
        let agency_line = LineUpdate::agency(&purchase.agency_id, -purchase.total_at_cost).build(&self.table_name)?;

        // 5. The purchase's ledger entry (its id and time are the purchase's).
        let entry_put = ledger_entry_put(&self.table_name, &LedgerEntry::for_purchase(purchase))?;

        let mut items = vec![
            TransactWriteItem::builder().update(balance_update).build(),
            TransactWriteItem::builder().put(purchase_put).build(),
            default_check,
            agency_check,
            TransactWriteItem::builder().update(agency_line).build(),
            TransactWriteItem::builder().put(entry_put).build(),
        ];
        debug_assert_eq!(items.len(), IDEMPOTENCY_KEY);

        // 6. The idempotency key, unless someone holds it and it has not expired (TTL deletion lags).
        if let Some(claim) = idempotency {
            let owner = KeyOwner::Account(&purchase.account_id);
            let put = idempotency_put(&self.table_name, owner, claim, &purchase.account_id, &purchase.purchase_id)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }

        // 7. Its `credits.purchased` event, last so the positions above stay what `condition_outcome` reads. Made
        //    once here: every resend of this transaction carries the same event id.
        let event = events::credits_purchased(purchase, PurchaseTrigger::Client);
        items.push(outbox_put(&self.table_name, &event)?);

        // 8. The agency's sums of the purchase's day (the overview's chart), after everything else: unconditional,
        //    so no position above moves and no outcome reads it.
        items.push(day_sums_update(&self.table_name, purchase, DayChange::Purchased)?);
        Ok(items)
    }

    /// The purchase transaction's items, for the benchmark's bare-SDK side (never used by a function).
    #[cfg(feature = "bench-internals")]
    pub fn purchase_transaction_for_bench(
        &self,
        purchase: &PurchaseRecord,
        pricing: &EffectivePricing,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        self.purchase_transaction(purchase, pricing, idempotency)
    }

    /// Every purchase record of an account, oldest first (Query on the account's item collection).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn all_purchases(&self, account_id: &str) -> Result<Vec<PurchaseRecord>, StoreError> {
        let query = self.partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX);
        let items = self.partition_items("Query purchases", query).await?;
        items.into_iter().map(|item| from_item("purchase", item)).collect()
    }
}

/// Turns condition failures of the purchase transaction into an outcome; `None` if no condition failed.
fn condition_outcome(
    reasons: &[CancellationReason],
    purchase: &PurchaseRecord,
    has_idempotency_item: bool,
) -> Result<Option<RecordOutcome>, StoreError> {
    let failed = |i: usize| condition_failed(reasons, i);
    // The key outranks everything: a replay must return the first answer even if prices moved since.
    if has_idempotency_item && failed(IDEMPOTENCY_KEY) {
        let item = reasons[IDEMPOTENCY_KEY]
            .item()
            .ok_or_else(|| StoreError::Internal("idempotency condition failed without the stored item".into()))?;
        return Ok(Some(RecordOutcome::IdempotencyKeyTaken(stored_idempotency(item)?)));
    }
    // Our own purchase id (or its ledger entry) already exists only if an earlier attempt of this very call
    // committed and its response was lost (the request token can be forgotten, e.g. across an engine restart):
    // that is success.
    if failed(PURCHASE) || failed(LEDGER_ENTRY) {
        return Ok(Some(RecordOutcome::Recorded));
    }
    let account = if failed(ACCOUNT) {
        match reasons[ACCOUNT].item().filter(|item| !item.is_empty()) {
            None => return Ok(Some(RecordOutcome::AccountMissing)),
            Some(item) => Some(account_from_item(item)?),
        }
    } else {
        None
    };
    // Prices first: a purchase quoted at stale prices is re-quoted before its total is held against any line.
    if failed(DEFAULT_PRICING)
        || failed(AGENCY_PRICING)
        || account.as_ref().is_some_and(|a| a.agency_id != purchase.agency_id)
    {
        return Ok(Some(RecordOutcome::PricingChanged));
    }
    if let Some(account) = account {
        if let Some(statement_id) = account.hold_statement_id().map(str::to_owned) {
            return Ok(Some(RecordOutcome::OnHold { statement_id }));
        }
        let available = account.credit_line.map_or(Decimal::ZERO, |line| line.available);
        if available < purchase.total {
            return Ok(Some(RecordOutcome::CreditLimitExceeded { available }));
        }
        return Err(StoreError::Internal(format!(
            "account {} refused a purchase for no visible reason",
            account.account_id
        )));
    }
    if failed(AGENCY_LINE) {
        return Ok(Some(RecordOutcome::AgencyCreditLimitExceeded));
    }
    Ok(None)
}
