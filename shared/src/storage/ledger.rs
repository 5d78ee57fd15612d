//! The ledger: entries as items (written inside each balance change's own transaction), an account's entries
//! newest first with the balance after each, and what reconcile reads: every account, ledger entry, purchase,
//! payment and credit line (an operator's parallel Scan, never a request path), and one account's figures as
//! of one moment.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::Put;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::items::{Attributes, Item, credit_line_from_item, from_item, s, signed_balances, to_item};
use super::keys::AGENCY_PURCHASE_PREFIX;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::CreditType;
use crate::domain::ledger::{BalanceOverflow, Deltas, EntryType, LedgerEntry, balances_after};
use crate::domain::reconcile::{Ledger, PaymentOwner, SignedBalances};
use crate::table::{PARTITION_KEY, SORT_KEY};

/// A ledger entry's Put, inside the transaction that changes the balance. Its id is fresh, so finding it
/// already there means an earlier attempt of the same call committed.
pub(crate) fn ledger_entry_put(table_name: &str, entry: &LedgerEntry) -> Result<Put, StoreError> {
    let mut item = to_item("ledger entry", entry)?;
    item.extend(keys::key(keys::account(&entry.account_id), &keys::ledger_sk(&entry.created_at, &entry.entry_id)));
    Put::builder()
        .table_name(table_name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| internal("building a ledger entry", e))
}

/// Where a ledger page continues: the key of the last entry read, and the balances after the entry just older
/// than it (so a next page needs no other read and stays exact however many entries land meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerPosition {
    pub pk: String,
    pub sk: String,
    pub balances: BTreeMap<CreditType, i64>,
}

impl LedgerPosition {
    /// Whether this is the key of a ledger entry of `account_id`: its partition, and `LEDGER#{timestamp}#{uuid}`
    /// with a timestamp of the table's one format and a canonical UUID. Anything else never reaches a Query.
    pub fn is_entry_of(&self, account_id: &str) -> bool {
        let Some(rest) = self.sk.strip_prefix(keys::LEDGER_SK_PREFIX) else { return false };
        let Some((at, id)) = rest.split_once('#') else { return false };
        self.pk == keys::account(account_id)
            && at.len() == 24
            && humantime::parse_rfc3339(at).is_ok()
            && uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
    }
}

/// Why a ledger page was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerPageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The position's balances, walked back over the entries after it, leave the range of a balance: not a
    /// position this ledger handed out (the caller's input, not our data).
    #[error("the position's balances do not fit this ledger: {0}")]
    ImpossiblePosition(BalanceOverflow),
}

/// One page of an account's ledger, newest first.
#[derive(Debug, Clone)]
pub struct LedgerPage {
    /// Each entry with every type's balance after it.
    pub entries: Vec<(LedgerEntry, BTreeMap<CreditType, i64>)>,
    pub next: Option<LedgerPosition>,
}

/// Entries read at most per page when filtering by type (a page may then hold fewer than `limit`, with a
/// `next` position: the caller keeps paging).
const MAX_ENTRIES_READ: usize = 1000;

/// Attempts at reading the first page between two reads of the account that show no entry landed in between.
const SNAPSHOT_ATTEMPTS: usize = 4;

/// The part of a ledger entry the reconciliation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerEntryFigures {
    account_id: String,
    entry_type: EntryType,
    quantities: Deltas,
    #[serde(default)]
    purchase_id: Option<String>,
}

impl LedgerEntryFigures {
    fn add_to(&self, ledger: &mut Ledger) {
        ledger.add_entry(&self.account_id, self.entry_type, self.purchase_id.as_deref(), &self.quantities);
    }
}

/// The part of a purchase item the reconciliation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerPurchase {
    purchase_id: String,
    account_id: String,
    agency_id: String,
    lines: Vec<LedgerLine>,
    #[serde(with = "rust_decimal::serde::str")]
    total: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    total_at_cost: Decimal,
    /// A voided purchase gave its totals back to both lines (and its credits back through its void entry).
    #[serde(default)]
    voided_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LedgerLine {
    credit_type: CreditType,
    quantity: u64,
}

impl LedgerPurchase {
    fn add_to(&self, ledger: &mut Ledger) {
        ledger.add_purchase(
            &self.account_id,
            &self.purchase_id,
            self.lines.iter().map(|l| (l.credit_type, l.quantity)),
        );
        if self.voided_at.is_none() {
            ledger.add_purchase_amounts(&self.account_id, &self.agency_id, self.total, self.total_at_cost);
        }
    }
}

/// A payment's copy in its owner's partition: whose line it released, and by how much.
fn add_payment(item: &Item, ledger: &mut Ledger) -> Result<(), StoreError> {
    let pk = item.string(PARTITION_KEY)?;
    let amount = item.decimal("amount")?.unwrap_or_default();
    if let Some(account_id) = pk.strip_prefix(keys::ACCOUNT_PK_PREFIX) {
        ledger.add_payment(PaymentOwner::Account(account_id), amount);
    } else if let Some(agency_id) = pk.strip_prefix(keys::AGENCY_PK_PREFIX) {
        ledger.add_payment(PaymentOwner::Agency(agency_id), amount);
    }
    Ok(())
}

/// Attempts at reading an account between two identical reads of its purchases and payments before giving up.
const CONSISTENT_READ_ATTEMPTS: usize = 5;

/// An account item's id, line and signed balances into the ledger.
fn add_account_item(item: &Item, ledger: &mut Ledger) -> Result<(), StoreError> {
    let account_id = item.string("accountId")?;
    if let Some(line) = credit_line_from_item(item)? {
        ledger.add_account_line(&account_id, line);
    }
    ledger.add_account(&account_id, signed_balances(item)?);
    Ok(())
}

/// An account's records as reconcile compares them between two reads.
type AccountRecords = (Vec<LedgerPurchase>, Vec<Decimal>, Vec<LedgerEntryFigures>);

impl Store {
    /// Up to `limit` of an account's ledger entries (of type `only`, if given), newest first, each with the
    /// balance after it, after `after` (the previous page's position). `None`: no such account.
    ///
    /// The first page reads the account, the entries, and the account again, and is accepted only when no
    /// entry landed in between (the account's entry count did not move): its balances are then exactly the
    /// balances after the newest entry. Later pages carry their balances in the position.
    pub async fn ledger_page(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&LedgerPosition>,
        only: Option<EntryType>,
    ) -> Result<Option<LedgerPage>, LedgerPageError> {
        if let Some(position) = after {
            if !position.is_entry_of(account_id) {
                return Err(StoreError::Internal("a ledger position of another account reached storage".into()).into());
            }
            return match self.ledger_entries(account_id, limit, Some(position), position.balances.clone(), only).await?
            {
                Ok(page) => Ok(Some(page)),
                Err(overflow) => Err(LedgerPageError::ImpossiblePosition(overflow)),
            };
        }
        for _ in 0..SNAPSHOT_ATTEMPTS {
            let Some(before) = self.get_item(keys::account(account_id), keys::ACCOUNT_SK).await? else {
                return Ok(None);
            };
            // From the account's own balances an overflow means our records disagree: a defect, not the caller's.
            let page = self
                .ledger_entries(account_id, limit, None, signed_balances(&before)?, only)
                .await?
                .map_err(|overflow| StoreError::Internal(format!("{account_id}: ledger balances: {overflow}")))?;
            let now = self.get_item(keys::account(account_id), keys::ACCOUNT_SK).await?;
            let count = |item: &Item| item.count(keys::LEDGER_ENTRY_COUNT);
            if let Some(now) = now
                && count(&now)? == count(&before)?
            {
                return Ok(Some(page));
            }
        }
        Err(StoreError::Unavailable(format!("{account_id}: ledger entries kept landing while reading its first page"))
            .into())
    }

    /// Reads entries newest first from `after` (or the newest), with `running` the balances after the first one.
    /// The inner error: a balance left the range of an `i64` walking back from `running`.
    async fn ledger_entries(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&LedgerPosition>,
        mut running: SignedBalances,
        only: Option<EntryType>,
    ) -> Result<Result<LedgerPage, BalanceOverflow>, StoreError> {
        let page_size = if only.is_some() { 100 } else { limit + 1 };
        let mut items = self
            .partition_query(keys::account(account_id), keys::LEDGER_SK_PREFIX)
            .scan_index_forward(false)
            .limit(i32::try_from(page_size).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|p| keys::key(p.pk.clone(), &p.sk)))
            .into_paginator()
            .items()
            .send();
        let mut entries = Vec::new();
        let mut read = 0;
        let mut last_sk = None;
        let more = loop {
            let full = entries.len() >= limit || read >= MAX_ENTRIES_READ;
            let Some(item) = items.next().await else { break false };
            let item = item.map_err(|e| classify("Query ledger", e))?;
            if full {
                break true; // one beyond the page: more follow
            }
            read += 1;
            last_sk = Some(item.string(SORT_KEY)?);
            let entry: LedgerEntry = from_item("ledger entry", item)?;
            let (after_entry, before_entry) = match balances_after(&running, [&entry.quantities]) {
                Ok(balances) => balances,
                Err(overflow) => return Ok(Err(overflow)),
            };
            if only.is_none_or(|t| t == entry.entry_type) {
                entries.push((entry, after_entry.into_iter().next().unwrap_or_default()));
            }
            running = before_entry;
        };
        let next = match (more, last_sk) {
            (true, Some(sk)) => Some(LedgerPosition { pk: keys::account(account_id), sk, balances: running }),
            _ => None,
        };
        Ok(Ok(LedgerPage { entries, next }))
    }

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
                    add_account_item(&item, ledger)?;
                } else if sk.starts_with(keys::LEDGER_SK_PREFIX) {
                    from_item::<LedgerEntryFigures>("ledger entry", item)?.add_to(ledger);
                } else if sk.starts_with(keys::PURCHASE_SK_PREFIX) {
                    from_item::<LedgerPurchase>("purchase", item)?.add_to(ledger);
                } else if sk.starts_with(keys::PAYMENT_SK_PREFIX) {
                    add_payment(&item, ledger)?;
                } else if sk == keys::CREDIT_LINE_SK {
                    let pk = item.string(PARTITION_KEY)?;
                    if let (Some(agency_id), Some(line)) =
                        (pk.strip_prefix(keys::AGENCY_LINE_PK_PREFIX), credit_line_from_item(&item)?)
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
            .filter_expression(
                "sk = :account OR begins_with(sk, :purchase) OR begins_with(sk, :payment) OR sk = :line \
                 OR begins_with(sk, :ledger)",
            )
            .expression_attribute_values(":account", s(keys::ACCOUNT_SK))
            .expression_attribute_values(":ledger", s(keys::LEDGER_SK_PREFIX))
            .expression_attribute_values(":purchase", s(keys::PURCHASE_SK_PREFIX))
            .expression_attribute_values(":payment", s(keys::PAYMENT_SK_PREFIX))
            .expression_attribute_values(":line", s(keys::CREDIT_LINE_SK))
            // Reserved words.
            .expression_attribute_names("#lines", "lines")
            .expression_attribute_names("#total", "total")
            .expression_attribute_names("#amount", "amount")
            .expression_attribute_names("#quantities", "quantities")
            .projection_expression(format!(
                "pk, sk, accountId, agencyId, purchaseId, entryType, #quantities, #lines, #total, totalAtCost, \
                 voidedAt, #amount, {}, {}, {}",
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

    /// One account's figures as of one moment: its purchases, payments and ledger entries are read before and
    /// after the account, and only two identical reads count. A balance change (or payment) writes its records
    /// and the account in one transaction, so an account read between two identical reads matches them
    /// exactly. Under live traffic a read that races a change is simply taken again.
    pub async fn account_ledger(&self, account_id: &str) -> Result<Ledger, StoreError> {
        let mut before = self.account_records(account_id).await?;
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let account = self.get_item(keys::account(account_id), keys::ACCOUNT_SK).await?;
            let after = self.account_records(account_id).await?;
            if after == before {
                let mut ledger = Ledger::default();
                if let Some(account) = account {
                    add_account_item(&account, &mut ledger)?;
                }
                let (purchases, payments, entries) = after;
                for purchase in &purchases {
                    purchase.add_to(&mut ledger);
                }
                for entry in &entries {
                    entry.add_to(&mut ledger);
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

    /// An agency's line as of one moment, beside what it should be: `(available, ceiling − (its clients'
    /// purchases at cost not voided − its payments))`. The line is read before and after the purchases and
    /// payments, and only two equal reads count (a purchase or void moves the line in its own transaction);
    /// otherwise `Unavailable`, to be tried again. The purchases come from the `agency-items` index, which lags
    /// the table by a moment: a caller confirms a drift by seeing it twice, a pause apart.
    pub async fn agency_line_figures(&self, agency_id: &str) -> Result<Option<(Decimal, Decimal)>, StoreError> {
        let line_key = (keys::agency_line(agency_id), keys::CREDIT_LINE_SK);
        let before = self.get_item(line_key.0.clone(), line_key.1).await?;
        let Some(line) = before.as_ref().map(credit_line_from_item).transpose()?.flatten() else {
            return Ok(None);
        };
        let purchases =
            self.agency_items_query(agency_id, AGENCY_PURCHASE_PREFIX).projection_expression("totalAtCost, voidedAt");
        let purchases = self.partition_items("Query agency purchases at cost", purchases).await?;
        let payments = self
            .partition_items(
                "Query agency payments",
                self.partition_query(keys::agency(agency_id), keys::PAYMENT_SK_PREFIX),
            )
            .await?;
        let after = self.get_item(line_key.0, line_key.1).await?;
        if after != before {
            return Err(StoreError::Unavailable(format!("agency {agency_id}: its line moved while it was read")));
        }
        let mut owed = Decimal::ZERO;
        for purchase in purchases {
            let purchase: AgencyPurchaseCost = from_item("purchase", purchase)?;
            if purchase.voided_at.is_none() {
                owed += purchase.total_at_cost;
            }
        }
        for payment in &payments {
            owed -= payment.decimal("amount")?.unwrap_or_default();
        }
        Ok(Some((line.available, line.limit - owed)))
    }

    /// An account's purchases (in key order), the amounts of its payments, and its ledger entries.
    async fn account_records(&self, account_id: &str) -> Result<AccountRecords, StoreError> {
        let query = self
            .partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
            .expression_attribute_names("#lines", "lines") // a reserved word
            .expression_attribute_names("#total", "total")
            .projection_expression("sk, purchaseId, accountId, agencyId, #lines, #total, totalAtCost, voidedAt");
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
        let entries = self
            .partition_items(
                "Query ledger entries",
                self.partition_query(keys::account(account_id), keys::LEDGER_SK_PREFIX)
                    .expression_attribute_names("#quantities", "quantities")
                    .projection_expression("sk, accountId, entryType, #quantities, purchaseId"),
            )
            .await?;
        let entries: Result<Vec<LedgerEntryFigures>, StoreError> =
            entries.into_iter().map(|item| from_item("ledger entry", item)).collect();
        Ok((purchases?, payments?, entries?))
    }
}

/// What an agency's line holds of one purchase: its cost, unless voided.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgencyPurchaseCost {
    #[serde(with = "rust_decimal::serde::str")]
    total_at_cost: Decimal,
    voided_at: Option<String>,
}
