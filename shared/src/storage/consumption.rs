//! Consumptions and releases: the platform spends an account's credits, or puts a consumption's credits back,
//! each in one `TransactWriteItems` with its ledger entry and its exactly-once marker.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | consumption marker | `ACCOUNT#{accountId}` | `CONSUMPTION#{consumptionId}`: request hash, entry, quantities; once released also the release's entry |
//! | ledger entry | `ACCOUNT#{accountId}` | `LEDGER#{createdAt}#{entryId}` |

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use serde::Serialize;

use super::balance_update::BalanceUpdate;
pub use super::consume::{AttemptOutcome, ConsumeAttempt, ConsumptionEffects, TopupReceipt};
use super::items::{Attributes, Item, from_item, n, s, signed_balances};
use super::ledger::ledger_entry_put;
use super::outbox::outbox_put;
use super::transact::condition_failed;
use super::{Store, StoreError, internal, keys};
use crate::domain::ledger::{Deltas, EntryType, LedgerEntry, Quantities, Shortfall, shortfalls};
use crate::domain::{CreditType, events};

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
    /// The auto top-up, its refusal, the alerts: what else it did.
    #[serde(flatten)]
    pub effects: ConsumptionEffects,
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
    /// The account is under another agency than the one asked for (internal: the release follows it).
    AgencyChanged(String),
}

// Positions of the release transaction's items.
const RELEASE_MARKER: usize = 0;
const RELEASE_ACCOUNT: usize = 1;
const RELEASE_ENTRY: usize = 2;

pub(super) const REQUEST_HASH: &str = "requestHash";
pub(super) const ENTRY_ID: &str = "entryId";
/// On the marker: what else the consumption did ([`ConsumptionEffects`]), for its replays.
pub(super) const EFFECTS: &str = "effects";
/// On the marker: the agency the consumption was made under.
pub(super) const AGENCY_ID: &str = "agencyId";
const RELEASE_ENTRY_ID: &str = "releaseEntryId";
const RELEASED_AT: &str = "releasedAt";

impl Store {
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
        let Some(marker) = self.get_item(keys::account(account_id), &keys::consumption_sk(consumption_id)).await?
        else {
            return Ok(ReleaseOutcome::ConsumptionNotFound);
        };
        if let Some(receipt) = release_receipt(&marker)? {
            return Ok(ReleaseOutcome::Replayed(receipt));
        }
        let quantities = marker_quantities(&marker)?;
        // The agency the event names: the one the consumption was made under (older markers have none: the
        // account's), checked on the account in the same transaction and followed if the account moved since.
        let mut agency_id = match marker.optional_string(AGENCY_ID) {
            Some(agency_id) => agency_id,
            None => match self.account(account_id).await? {
                Some(account) => account.agency_id,
                None => return Ok(ReleaseOutcome::AccountMissing),
            },
        };
        let receipt = ReleaseReceipt {
            account_id: account_id.to_owned(),
            consumption_id: consumption_id.to_owned(),
            entry_id: entry_id.to_owned(),
            released_at: released_at.to_owned(),
            quantities,
        };
        for _ in 0..3 {
            let items = self.release_transaction(&receipt, reason, &agency_id)?;
            let token = uuid::Uuid::now_v7().to_string();
            let outcome = self
                .transact_with_retries("TransactWriteItems release", &items, &token, true, |reasons| {
                    let failed = |i| condition_failed(reasons, i);
                    if failed(RELEASE_MARKER) {
                        // Released meanwhile (by another call, or an earlier attempt of this one): the first release.
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
                        return Ok(Some(match reasons[RELEASE_ACCOUNT].item().filter(|item| !item.is_empty()) {
                            None => ReleaseOutcome::AccountMissing,
                            Some(item) => ReleaseOutcome::AgencyChanged(item.string("agencyId")?),
                        }));
                    }
                    Ok(None)
                })
                .await?;
            match outcome {
                Some(ReleaseOutcome::AgencyChanged(now)) => agency_id = now,
                Some(outcome) => return Ok(outcome),
                None => return Ok(ReleaseOutcome::Released(receipt)),
            }
        }
        Err(StoreError::Unavailable(format!("release of {consumption_id}: the account kept changing agency")))
    }

    /// The marker released (only if it was not), the credits back (adding never goes below zero) under the
    /// agency the event names, the release's ledger entry and its `credits.released`.
    fn release_transaction(
        &self,
        receipt: &ReleaseReceipt,
        reason: &str,
        agency_id: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the release transaction", e);
        let ReleaseReceipt { account_id, consumption_id, entry_id, released_at, quantities } = receipt;
        let marker_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), &keys::consumption_sk(consumption_id))))
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
        let account = BalanceUpdate::new(quantities.iter().map(|(t, q)| (*t, i128::from(*q))))
            .condition("#agency = :agency")
            .name("#agency", "agencyId")
            .value(":agency", s(agency_id))
            .build(&self.table_name, account_id)?;
        let entry = LedgerEntry {
            entry_id: entry_id.clone(),
            account_id: account_id.clone(),
            entry_type: EntryType::Release,
            created_at: released_at.clone(),
            quantities: quantities.iter().map(|(t, q)| (*t, i64::try_from(*q).unwrap_or(i64::MAX))).collect(),
            reason: Some(reason.to_owned()),
            reference: None,
            consumption_id: Some(consumption_id.clone()),
            purchase_id: None,
            actor: None,
            trigger: Default::default(),
        };
        let event = events::credits_moved(true, account_id, agency_id, consumption_id, quantities, released_at);
        Ok(vec![
            TransactWriteItem::builder().update(marker_update).build(),
            TransactWriteItem::builder().update(account).build(),
            TransactWriteItem::builder().put(ledger_entry_put(&self.table_name, &entry)?).build(),
            outbox_put(&self.table_name, &event)?,
        ])
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
            trigger: Default::default(),
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
}

pub(super) fn quantities_value(quantities: &Quantities) -> AttributeValue {
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

pub(super) fn consumption_receipt(item: &Item) -> Result<ConsumptionReceipt, StoreError> {
    Ok(ConsumptionReceipt {
        account_id: item.string("accountId")?,
        consumption_id: item.string("consumptionId")?,
        entry_id: item.string(ENTRY_ID)?,
        created_at: item.string("createdAt")?,
        quantities: marker_quantities(item)?,
        released_at: item.optional_string(RELEASED_AT),
        effects: match item.get(EFFECTS) {
            Some(AttributeValue::M(map)) => from_item("consumption effects", map.clone())?,
            _ => ConsumptionEffects::default(),
        },
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
