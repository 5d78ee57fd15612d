//! An account's purchase history, newest first, in pages.

use serde::{Deserialize, Serialize};

use super::items::from_item;
use super::{Store, StoreError, classify, keys};
use crate::domain::PurchaseRecord;

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

impl Store {
    /// Up to `limit` of an account's purchases, newest first, after `after` (the last key of the previous page).
    /// Also says whether more follow, by reading one item beyond the page.
    pub async fn purchases_newest_first(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&PurchaseKey>,
    ) -> Result<PurchasePage, StoreError> {
        if after.is_some_and(|key| !key.is_purchase_of(account_id)) {
            return Err(StoreError::Internal("a history position of another account reached storage".into()));
        }
        let mut items = self
            .partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|k| keys::key(k.pk.clone(), &k.sk)))
            .into_paginator()
            .items()
            .send();
        let mut purchases: Vec<PurchaseRecord> = Vec::with_capacity(limit + 1);
        while purchases.len() <= limit {
            match items.next().await {
                Some(item) => {
                    purchases.push(from_item("purchase", item.map_err(|e| classify("Query purchase history", e))?)?)
                }
                None => break,
            }
        }
        let more = purchases.len() > limit;
        purchases.truncate(limit);
        let next = if more { purchases.last().map(|p| PurchaseKey::of(&p.account_id, &p.purchase_id)) } else { None };
        Ok(PurchasePage { purchases, next })
    }
}
