//! What reconcile reads: every account and purchase (an operator's parallel Scan, never a request path), and
//! one account's balance with its purchases as of one moment.

use serde::Deserialize;

use super::items::{Attributes, Item, account_from_item, from_item, s};
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::CreditType;
use crate::domain::reconcile::Ledger;
use crate::table::SORT_KEY;

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

impl LedgerPurchase {
    fn add_to(&self, ledger: &mut Ledger) {
        ledger.add_purchase(&self.account_id, self.lines.iter().map(|l| (l.credit_type, l.quantity)));
    }
}

/// Attempts at reading an account between two identical reads of its purchases before giving up.
const CONSISTENT_READ_ATTEMPTS: usize = 5;

impl Store {
    /// Reads every account and purchase item into `ledger`, `segments` Scan segments side by side. Only the
    /// attributes the check needs are read.
    pub async fn read_ledger(&self, ledger: &mut Ledger, segments: i32) -> Result<(), StoreError> {
        let mut tasks = Vec::new();
        for segment in 0..segments {
            let store = self.clone();
            tasks.push(tokio::spawn(async move { store.scan_ledger_segment(segment, segments).await }));
        }
        for task in tasks {
            for item in task.await.map_err(|e| internal("ledger scan task", e))?? {
                let sk = item.string(SORT_KEY)?;
                if sk == keys::ACCOUNT_SK {
                    let account = account_from_item(&item)?;
                    ledger.add_account(&account.account_id, account.balances);
                } else if sk.starts_with(keys::PURCHASE_SK_PREFIX) {
                    from_item::<LedgerPurchase>("purchase", item)?.add_to(ledger);
                }
            }
        }
        Ok(())
    }

    async fn scan_ledger_segment(&self, segment: i32, segments: i32) -> Result<Vec<Item>, StoreError> {
        self.client
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
                CreditType::ALL.map(keys::balance_attribute).join(", ")
            ))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("Scan ledger", e))
    }

    /// One account's balance and purchases as of one moment: the purchases are read before and after the
    /// account, and only two identical reads count. A purchase adds its record and its credits in one
    /// transaction, so an account read between them cannot be missing a record's credits or hold extra ones.
    /// Under live traffic a read that races a purchase is simply taken again.
    pub async fn account_ledger(&self, account_id: &str) -> Result<Ledger, StoreError> {
        let mut before = self.ledger_purchases(account_id).await?;
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let account = self.account(account_id).await?;
            let after = self.ledger_purchases(account_id).await?;
            if after == before {
                let mut ledger = Ledger::default();
                if let Some(account) = account {
                    ledger.add_account(&account.account_id, account.balances);
                }
                for purchase in &after {
                    ledger.add_purchase(account_id, purchase.1.iter().copied());
                }
                return Ok(ledger);
            }
            before = after;
        }
        Err(StoreError::Unavailable(format!("{account_id}: purchases kept changing while reading its ledger")))
    }

    /// An account's purchases as (purchase id, lines), in key order.
    async fn ledger_purchases(&self, account_id: &str) -> Result<Vec<(String, Vec<(CreditType, u64)>)>, StoreError> {
        let query = self
            .partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
            .expression_attribute_names("#lines", "lines") // a reserved word
            .projection_expression("sk, accountId, #lines");
        let items = self.partition_items("Query ledger purchases", query).await?;
        items
            .into_iter()
            .map(|item| {
                let sk = item.string(SORT_KEY)?;
                let purchase: LedgerPurchase = from_item("purchase", item)?;
                Ok((sk, purchase.lines.iter().map(|l| (l.credit_type, l.quantity)).collect()))
            })
            .collect()
    }
}
