//! What reconcile reads: every account, purchase, payment and credit line (an operator's parallel Scan, never
//! a request path), and one account's figures as of one moment.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::items::{Attributes, Item, account_from_item, credit_line_from_item, from_item, s};
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::CreditType;
use crate::domain::reconcile::{Ledger, PaymentOwner};
use crate::table::{PARTITION_KEY, SORT_KEY};

/// The part of a purchase item the reconciliation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerPurchase {
    account_id: String,
    agency_id: String,
    lines: Vec<LedgerLine>,
    #[serde(with = "rust_decimal::serde::str")]
    total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    total_at_cost: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerLine {
    credit_type: CreditType,
    quantity: u64,
}

impl LedgerPurchase {
    fn add_to(&self, ledger: &mut Ledger) {
        ledger.add_purchase(&self.account_id, self.lines.iter().map(|l| (l.credit_type, l.quantity)));
        ledger.add_purchase_amounts(&self.account_id, &self.agency_id, self.total, self.total_at_cost);
    }
}

/// A payment's copy in its owner's partition: whose line it released, and by how much.
fn add_payment(item: &Item, ledger: &mut Ledger) -> Result<(), StoreError> {
    let pk = item.string(PARTITION_KEY)?;
    let amount = item.decimal("amount")?.unwrap_or_default();
    if let Some(account_id) = pk.strip_prefix("ACCOUNT#") {
        ledger.add_payment(PaymentOwner::Account(account_id), amount);
    } else if let Some(agency_id) = pk.strip_prefix("AGENCY#") {
        ledger.add_payment(PaymentOwner::Agency(agency_id), amount);
    }
    Ok(())
}

/// Attempts at reading an account between two identical reads of its purchases and payments before giving up.
const CONSISTENT_READ_ATTEMPTS: usize = 5;

impl Store {
    /// Reads every account, purchase, payment and agency line into `ledger`, `segments` Scan segments side by
    /// side. Only the attributes the check needs are read.
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
                    if let Some(line) = account.credit_line {
                        ledger.add_account_line(&account.account_id, line);
                    }
                    ledger.add_account(&account.account_id, account.balances);
                } else if sk.starts_with(keys::PURCHASE_SK_PREFIX) {
                    from_item::<LedgerPurchase>("purchase", item)?.add_to(ledger);
                } else if sk.starts_with(keys::PAYMENT_SK_PREFIX) {
                    add_payment(&item, ledger)?;
                } else if sk == keys::CREDIT_LINE_SK {
                    let pk = item.string(PARTITION_KEY)?;
                    if let (Some(agency_id), Some(line)) =
                        (pk.strip_prefix("AGENCYLINE#"), credit_line_from_item(&item)?)
                    {
                        ledger.add_agency_line(agency_id, line);
                    }
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
            .filter_expression("sk = :account OR begins_with(sk, :purchase) OR begins_with(sk, :payment) OR sk = :line")
            .expression_attribute_values(":account", s(keys::ACCOUNT_SK))
            .expression_attribute_values(":purchase", s(keys::PURCHASE_SK_PREFIX))
            .expression_attribute_values(":payment", s(keys::PAYMENT_SK_PREFIX))
            .expression_attribute_values(":line", s(keys::CREDIT_LINE_SK))
            // Reserved words.
            .expression_attribute_names("#lines", "lines")
            .expression_attribute_names("#total", "total")
            .expression_attribute_names("#amount", "amount")
            .projection_expression(format!(
                "pk, sk, accountId, agencyId, #lines, #total, totalAtCost, #amount, {}, {}, {}",
                keys::CREDIT_LIMIT,
                keys::AVAILABLE_CREDIT,
                CreditType::ALL.map(keys::balance_attribute).join(", ")
            ))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("Scan ledger", e))
    }

    /// One account's figures as of one moment: its purchases and payments are read before and after the
    /// account, and only two identical reads count. A purchase (or payment) changes its record and the account
    /// in one transaction, so an account read between two identical reads matches them exactly. Under live
    /// traffic a read that races a purchase is simply taken again.
    pub async fn account_ledger(&self, account_id: &str) -> Result<Ledger, StoreError> {
        let mut before = self.account_records(account_id).await?;
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let account = self.account(account_id).await?;
            let after = self.account_records(account_id).await?;
            if after == before {
                let mut ledger = Ledger::default();
                if let Some(account) = account {
                    if let Some(line) = account.credit_line {
                        ledger.add_account_line(&account.account_id, line);
                    }
                    ledger.add_account(&account.account_id, account.balances);
                }
                let (purchases, payments) = after;
                for purchase in &purchases {
                    purchase.add_to(&mut ledger);
                }
                for amount in payments {
                    ledger.add_payment(PaymentOwner::Account(account_id), amount);
                }
                // Only the account's own figures were read: the agency side of its purchases is not judged here.
                ledger.agency_owed.clear();
                return Ok(ledger);
            }
            before = after;
        }
        Err(StoreError::Unavailable(format!("{account_id}: purchases kept changing while reading its ledger")))
    }

    /// An account's purchases (in key order) and the amounts of its payments.
    async fn account_records(&self, account_id: &str) -> Result<(Vec<LedgerPurchase>, Vec<Decimal>), StoreError> {
        let query = self
            .partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
            .expression_attribute_names("#lines", "lines") // a reserved word
            .expression_attribute_names("#total", "total")
            .projection_expression("sk, accountId, agencyId, #lines, #total, totalAtCost");
        let purchases = self.partition_items("Query ledger purchases", query).await?;
        let purchases: Result<Vec<LedgerPurchase>, StoreError> =
            purchases.into_iter().map(|item| from_item("purchase", item)).collect();
        let payments = self
            .partition_items(
                "Query ledger payments",
                self.partition_query(keys::account(account_id), keys::PAYMENT_SK_PREFIX),
            )
            .await?;
        let payments: Result<Vec<Decimal>, StoreError> =
            payments.iter().map(|item| Ok(item.decimal("amount")?.unwrap_or_default())).collect();
        Ok((purchases?, payments?))
    }
}
