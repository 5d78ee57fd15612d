//! Consumptions and releases: the platform spends an account's credits, or puts a consumption's credits back,
//! each in one `TransactWriteItems` with its ledger entry and its exactly-once marker.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | consumption marker | `ACCOUNT#{accountId}` | `CONSUMPTION#{consumptionId}`: request hash, entry, quantities; once released also the release's entry |
//! | ledger entry | `ACCOUNT#{accountId}` | `LEDGER#{createdAt}#{entryId}` |

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::Serialize;

use super::balance_update::BalanceUpdate;
use super::items::{Attributes, Item, n, s, signed_balances};
use super::ledger::ledger_entry_put;
use super::transact::condition_failed;
use super::{Store, StoreError, internal, keys};
use crate::domain::CreditType;
use crate::domain::ledger::{Consumption, Deltas, EntryType, LedgerEntry, Quantities, Shortfall, shortfalls};
use crate::table::{PARTITION_KEY, SORT_KEY};

/// What a consumption (or its replay) answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumptionReceipt {
    pub account_id: String,
    pub consumption_id: String,
    pub entry_id: String,
    pub created_at: String,
    pub quantities: Quantities,
    /// Set once the consumption was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

/// What a release (or its replay) answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseReceipt {
    pub account_id: String,
    pub consumption_id: String,
    pub entry_id: String,
    pub released_at: String,
    pub quantities: Quantities,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeOutcome {
    Consumed(ConsumptionReceipt),
    /// The same consumption id with the same request: the first result.
    Replayed(ConsumptionReceipt),
    /// The same consumption id with another request.
    IdReused,
    AccountMissing,
    /// Not enough credits of these types: nothing was written.
    Insufficient(Vec<Shortfall>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustOutcome {
    Adjusted(LedgerEntry),
    AccountMissing,
    /// A negative quantity would take a balance below zero: nothing was written.
    Insufficient(Vec<Shortfall>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(ReleaseReceipt),
    /// Released before: the first release.
    Replayed(ReleaseReceipt),
    ConsumptionNotFound,
    AccountMissing,
}

// Positions of the consumption transaction's items.
const CONSUME_ACCOUNT: usize = 0;
const CONSUME_ENTRY: usize = 1;
const CONSUME_MARKER: usize = 2;

// Positions of the release transaction's items.
const RELEASE_MARKER: usize = 0;
const RELEASE_ACCOUNT: usize = 1;
const RELEASE_ENTRY: usize = 2;

const REQUEST_HASH: &str = "requestHash";
const ENTRY_ID: &str = "entryId";
const RELEASE_ENTRY_ID: &str = "releaseEntryId";
const RELEASED_AT: &str = "releasedAt";

impl Store {
    /// Takes a consumption's credits from the balance, each type only if it stays at or above zero, writes its
    /// ledger entry and claims its id: one `TransactWriteItems`, all or nothing. `entry_id` (a fresh UUID) is
    /// also the transaction's token, so the SDK's resend after a lost response is a no-op.
    pub async fn consume(
        &self,
        consumption: &Consumption,
        entry_id: &str,
        created_at: &str,
    ) -> Result<ConsumeOutcome, StoreError> {
        let items = self.consumption_transaction(consumption, entry_id, created_at)?;
        let receipt = ConsumptionReceipt {
            account_id: consumption.account_id.clone(),
            consumption_id: consumption.consumption_id.clone(),
            entry_id: entry_id.to_owned(),
            created_at: created_at.to_owned(),
            quantities: consumption.quantities.clone(),
            released_at: None,
        };
        // A lost response is resent with the same token: DynamoDB answers with the first outcome.
        let outcome = self
            .transact_with_retries("TransactWriteItems consumption", &items, entry_id, true, |reasons| {
                consume_outcome(reasons, consumption, &receipt)
            })
            .await?;
        Ok(outcome.unwrap_or(ConsumeOutcome::Consumed(receipt)))
    }

    /// The consumption transaction's items, for the benchmark's bare-SDK side (never used by a function).
    #[cfg(feature = "bench-internals")]
    pub fn consumption_transaction_for_bench(
        &self,
        consumption: &Consumption,
        entry_id: &str,
        created_at: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        self.consumption_transaction(consumption, entry_id, created_at)
    }

    /// The account update, the ledger entry and the marker, at the positions `consume_outcome` reads.
    fn consumption_transaction(
        &self,
        consumption: &Consumption,
        entry_id: &str,
        created_at: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the consumption transaction", e);
        let pk = keys::account(&consumption.account_id);
        if consumption.quantities.is_empty() {
            return Err(StoreError::Internal("a consumption without quantities reached storage".into()));
        }

        // 0. Every type down, only while it stays >= 0; one more ledger entry on the account.
        let account = BalanceUpdate::new(consumption.quantities.iter().map(|(t, q)| (*t, -i128::from(*q))))
            .build(&self.table_name, &consumption.account_id)?;

        // 1. The ledger entry.
        let entry = LedgerEntry {
            entry_id: entry_id.to_owned(),
            account_id: consumption.account_id.clone(),
            entry_type: EntryType::Consumption,
            created_at: created_at.to_owned(),
            quantities: consumption.deltas(),
            reason: Some(consumption.reason.clone()),
            reference: consumption.reference.clone(),
            consumption_id: Some(consumption.consumption_id.clone()),
            purchase_id: None,
            actor: None,
        };
        let entry_put = ledger_entry_put(&self.table_name, &entry)?;

        // 2. The marker: the consumption id, once per account.
        let mut marker = HashMap::from([
            (PARTITION_KEY.to_owned(), s(&pk)),
            (SORT_KEY.to_owned(), s(keys::consumption_sk(&consumption.consumption_id))),
            ("accountId".to_owned(), s(&consumption.account_id)),
            ("consumptionId".to_owned(), s(&consumption.consumption_id)),
            (REQUEST_HASH.to_owned(), s(consumption.request_hash())),
            (ENTRY_ID.to_owned(), s(entry_id)),
            ("createdAt".to_owned(), s(created_at)),
            ("quantities".to_owned(), quantities_value(&consumption.quantities)),
        ]);
        marker.insert("reason".to_owned(), s(&consumption.reason));
        let marker_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;

        Ok(vec![
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().put(entry_put).build(),
            TransactWriteItem::builder().put(marker_put).build(),
        ])
    }

    /// Puts an earlier consumption's credits back, once: reads its marker, then one `TransactWriteItems` marks
    /// it released (only if it was not), adds the credits back and writes the release's ledger entry.
    pub async fn release(
        &self,
        account_id: &str,
        consumption_id: &str,
        reason: &str,
        entry_id: &str,
        released_at: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the release transaction", e);
        let pk = keys::account(account_id);
        let Some(marker) = self.get_item(pk.clone(), &keys::consumption_sk(consumption_id)).await? else {
            return Ok(ReleaseOutcome::ConsumptionNotFound);
        };
        if let Some(receipt) = release_receipt(&marker)? {
            return Ok(ReleaseOutcome::Replayed(receipt));
        }
        let quantities = marker_quantities(&marker)?;

        // 0. The marker: released now, only if it was not.
        let marker_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk.clone(), &keys::consumption_sk(consumption_id))))
            .update_expression("SET #entry = :entry, #at = :at, releaseReason = :reason")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#entry)")
            .expression_attribute_names("#entry", RELEASE_ENTRY_ID)
            .expression_attribute_names("#at", RELEASED_AT)
            .expression_attribute_values(":entry", s(entry_id))
            .expression_attribute_values(":at", s(released_at))
            .expression_attribute_values(":reason", s(reason))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;

        // 1. The credits back (no condition on the balance: adding never goes below zero).
        let account = BalanceUpdate::new(quantities.iter().map(|(t, q)| (*t, i128::from(*q))))
            .build(&self.table_name, account_id)?;

        // 2. The release's ledger entry.
        let entry = LedgerEntry {
            entry_id: entry_id.to_owned(),
            account_id: account_id.to_owned(),
            entry_type: EntryType::Release,
            created_at: released_at.to_owned(),
            quantities: quantities.iter().map(|(t, q)| (*t, i64::try_from(*q).unwrap_or(i64::MAX))).collect(),
            reason: Some(reason.to_owned()),
            reference: None,
            consumption_id: Some(consumption_id.to_owned()),
            purchase_id: None,
            actor: None,
        };
        let items = vec![
            TransactWriteItem::builder().update(marker_update).build(),
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().put(ledger_entry_put(&self.table_name, &entry)?).build(),
        ];
        let receipt = ReleaseReceipt {
            account_id: account_id.to_owned(),
            consumption_id: consumption_id.to_owned(),
            entry_id: entry_id.to_owned(),
            released_at: released_at.to_owned(),
            quantities,
        };
        let outcome = self
            .transact_with_retries("TransactWriteItems release", &items, entry_id, true, |reasons| {
                let failed = |i| condition_failed(reasons, i);
                if failed(RELEASE_MARKER) {
                    // Released meanwhile (by another call, or by an earlier attempt of this one): the first release.
                    let first = reasons[RELEASE_MARKER].item().map(release_receipt).transpose()?.flatten();
                    return Ok(Some(match first {
                        Some(first) if first.entry_id == receipt.entry_id => ReleaseOutcome::Released(first),
                        Some(first) => ReleaseOutcome::Replayed(first),
                        None => ReleaseOutcome::ConsumptionNotFound,
                    }));
                }
                if failed(RELEASE_ENTRY) {
                    return Ok(Some(ReleaseOutcome::Released(receipt.clone())));
                }
                if failed(RELEASE_ACCOUNT) {
                    return Ok(Some(ReleaseOutcome::AccountMissing));
                }
                Ok(None)
            })
            .await?;
        Ok(outcome.unwrap_or(ReleaseOutcome::Released(receipt)))
    }

    /// An operator's adjustment: signed quantities with a reason and who made it, one transaction with its
    /// ledger entry; a negative quantity only while the balance stays at or above zero.
    pub async fn adjust(
        &self,
        account_id: &str,
        deltas: &Deltas,
        reason: &str,
        actor: &str,
        entry_id: &str,
        at: &str,
    ) -> Result<AdjustOutcome, StoreError> {
        let deltas: Deltas = deltas.iter().filter(|(_, d)| **d != 0).map(|(t, d)| (*t, *d)).collect();
        if deltas.is_empty() {
            return Err(StoreError::Internal("an adjustment without quantities reached storage".into()));
        }
        let taken: Quantities = deltas.iter().filter(|(_, d)| **d < 0).map(|(t, d)| (*t, d.unsigned_abs())).collect();
        let account =
            BalanceUpdate::new(deltas.iter().map(|(t, d)| (*t, i128::from(*d)))).build(&self.table_name, account_id)?;
        let entry = LedgerEntry {
            entry_id: entry_id.to_owned(),
            account_id: account_id.to_owned(),
            entry_type: EntryType::Adjustment,
            created_at: at.to_owned(),
            quantities: deltas,
            reason: Some(reason.to_owned()),
            reference: None,
            consumption_id: None,
            purchase_id: None,
            actor: Some(actor.to_owned()),
        };
        let items = vec![
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().put(ledger_entry_put(&self.table_name, &entry)?).build(),
        ];
        let outcome = self
            .transact_with_retries("TransactWriteItems adjustment", &items, entry_id, true, |reasons| {
                if condition_failed(reasons, 1) {
                    return Ok(Some(AdjustOutcome::Adjusted(entry.clone())));
                }
                if !condition_failed(reasons, 0) {
                    return Ok(None);
                }
                Ok(Some(match reasons[0].item().filter(|item| !item.is_empty()) {
                    None => AdjustOutcome::AccountMissing,
                    Some(account) => AdjustOutcome::Insufficient(shortfalls(&signed_balances(account)?, &taken)),
                }))
            })
            .await?;
        Ok(outcome.unwrap_or(AdjustOutcome::Adjusted(entry)))
    }

    /// A consumption's marker as its receipt, if the account has one under that id.
    pub async fn consumption(
        &self,
        account_id: &str,
        consumption_id: &str,
    ) -> Result<Option<ConsumptionReceipt>, StoreError> {
        let item = self.get_item(keys::account(account_id), &keys::consumption_sk(consumption_id)).await?;
        item.as_ref().map(consumption_receipt).transpose()
    }
}

/// Turns condition failures of the consumption transaction into an outcome; `None` if none failed.
fn consume_outcome(
    reasons: &[CancellationReason],
    consumption: &Consumption,
    receipt: &ConsumptionReceipt,
) -> Result<Option<ConsumeOutcome>, StoreError> {
    let failed = |i| condition_failed(reasons, i);
    // The id outranks the balance: a replay returns the first result even if the credits are gone since.
    if failed(CONSUME_MARKER) {
        let stored = reasons[CONSUME_MARKER]
            .item()
            .ok_or_else(|| StoreError::Internal("consumption marker condition failed without the item".into()))?;
        if stored.string(REQUEST_HASH)? != consumption.request_hash() {
            return Ok(Some(ConsumeOutcome::IdReused));
        }
        let first = consumption_receipt(stored)?;
        // Our own earlier attempt (its response lost, its token forgotten) committed: that is this call's success.
        if first.entry_id == receipt.entry_id {
            return Ok(Some(ConsumeOutcome::Consumed(first)));
        }
        return Ok(Some(ConsumeOutcome::Replayed(first)));
    }
    if failed(CONSUME_ENTRY) {
        return Ok(Some(ConsumeOutcome::Consumed(receipt.clone())));
    }
    if failed(CONSUME_ACCOUNT) {
        return match reasons[CONSUME_ACCOUNT].item().filter(|item| !item.is_empty()) {
            None => Ok(Some(ConsumeOutcome::AccountMissing)),
            Some(account) => {
                let short = shortfalls(&signed_balances(account)?, &consumption.quantities);
                if short.is_empty() {
                    return Err(StoreError::Internal(format!(
                        "account {} refused a consumption for no visible reason",
                        consumption.account_id
                    )));
                }
                Ok(Some(ConsumeOutcome::Insufficient(short)))
            }
        };
    }
    Ok(None)
}

fn quantities_value(quantities: &Quantities) -> AttributeValue {
    AttributeValue::M(quantities.iter().map(|(t, q)| (t.as_str().to_owned(), n(q))).collect())
}

fn marker_quantities(item: &Item) -> Result<Quantities, StoreError> {
    let Some(AttributeValue::M(map)) = item.get("quantities") else {
        return Err(StoreError::Internal("consumption marker without quantities".into()));
    };
    let mut quantities = BTreeMap::new();
    for (name, value) in map {
        let credit_type = CreditType::parse(name)
            .ok_or_else(|| StoreError::Internal(format!("consumption marker: credit type {name:?}")))?;
        let quantity = match value {
            AttributeValue::N(text) => text.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| StoreError::Internal(format!("consumption marker: quantity of {name}")))?;
        quantities.insert(credit_type, quantity);
    }
    Ok(quantities)
}

fn consumption_receipt(item: &Item) -> Result<ConsumptionReceipt, StoreError> {
    Ok(ConsumptionReceipt {
        account_id: item.string("accountId")?,
        consumption_id: item.string("consumptionId")?,
        entry_id: item.string(ENTRY_ID)?,
        created_at: item.string("createdAt")?,
        quantities: marker_quantities(item)?,
        released_at: item.optional_string(RELEASED_AT),
    })
}

/// The release recorded on a marker, if it was released.
fn release_receipt(item: &Item) -> Result<Option<ReleaseReceipt>, StoreError> {
    let (Some(entry_id), Some(released_at)) =
        (item.optional_string(RELEASE_ENTRY_ID), item.optional_string(RELEASED_AT))
    else {
        return Ok(None);
    };
    Ok(Some(ReleaseReceipt {
        account_id: item.string("accountId")?,
        consumption_id: item.string("consumptionId")?,
        entry_id,
        released_at,
        quantities: marker_quantities(item)?,
    }))
}
