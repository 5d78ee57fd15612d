//! The agency's lists of its clients' purchases, from the `agency-items` index: the agency's whole book, newest
//! first, and one client's purchases (from a current client's own partition, or the agency's book filtered to an
//! account that is not its client now), each read with a bounded number of items per request.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use serde::{Deserialize, Serialize};

use super::history::{PurchaseKey, PurchasePage};
use super::items::{Attributes, Item, from_item, s};
use super::keys::AGENCY_PURCHASE_PREFIX;
use super::{Store, StoreError, classify, keys};
use crate::domain::{PurchaseRecord, is_valid_account_id};
use crate::table::{AGENCY_INDEX, PARTITION_KEY, SORT_KEY};

/// A position in an agency's purchases (the `agency-items` index): the index keys and the table keys of the
/// page's last purchase, as DynamoDB wants them back to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyPurchasePosition {
    #[serde(rename = "agencyPk")]
    pub agency_pk: String,
    #[serde(rename = "agencySk")]
    pub agency_sk: String,
    pub pk: String,
    pub sk: String,
}

impl AgencyPurchasePosition {
    fn of(purchase: &PurchaseRecord) -> AgencyPurchasePosition {
        AgencyPurchasePosition {
            agency_pk: keys::agency(&purchase.agency_id),
            agency_sk: keys::agency_purchase_sk(&purchase.created_at, &purchase.purchase_id),
            pk: keys::account(&purchase.account_id),
            sk: keys::purchase_sk(&purchase.purchase_id),
        }
    }

    /// The index's `ExclusiveStartKey`: its keys and the table's.
    fn index_key(&self) -> Item {
        HashMap::from([
            (AGENCY_INDEX.partition_key.to_owned(), s(&self.agency_pk)),
            (AGENCY_INDEX.sort_key.to_owned(), s(&self.agency_sk)),
            (PARTITION_KEY.to_owned(), s(&self.pk)),
            (SORT_KEY.to_owned(), s(&self.sk)),
        ])
    }

    /// Whether this is the position of a purchase in `agency_id`'s partition of the index:
    /// `PURCHASE#{timestamp}#{uuid}` with the table's one timestamp format and a canonical UUID, and the
    /// table key of that same purchase. Anything else never reaches a Query.
    pub fn is_in_agency(&self, agency_id: &str) -> bool {
        let canonical = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
        let Some(rest) = self.agency_sk.strip_prefix(AGENCY_PURCHASE_PREFIX) else { return false };
        let Some((at, id)) = rest.split_once('#') else { return false };
        self.agency_pk == keys::agency(agency_id)
            && at.len() == 24
            && humantime::parse_rfc3339(at).is_ok()
            && canonical(id)
            && self.sk == keys::purchase_sk(id)
            && self.pk.strip_prefix(keys::ACCOUNT_PK_PREFIX).is_some_and(is_valid_account_id)
    }
}

/// One page of an agency's purchases, newest first.
#[derive(Debug, Clone)]
pub struct AgencyPurchasePage {
    pub purchases: Vec<PurchaseRecord>,
    pub next: Option<AgencyPurchasePosition>,
}

/// A position in the agency's own book (the `agency-items` index) filtered to one account that is not the
/// agency's client now: the filtered account and the index and table keys where the reading stopped. The account
/// is part of it so a cursor of one list never continues another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInBookPosition {
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(rename = "agencyPk")]
    pub agency_pk: String,
    #[serde(rename = "agencySk")]
    pub agency_sk: String,
    pub pk: String,
    pub sk: String,
}

impl ClientInBookPosition {
    fn in_book(&self) -> AgencyPurchasePosition {
        AgencyPurchasePosition {
            agency_pk: self.agency_pk.clone(),
            agency_sk: self.agency_sk.clone(),
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }

    /// Whether this is a position in `agency_id`'s book filtered to `account_id`. The purchase it names may be
    /// any client's: reading stops wherever the budget runs out, on a purchase the filter dropped or not.
    pub fn is_in_agency_for(&self, agency_id: &str, account_id: &str) -> bool {
        self.account_id == account_id && self.in_book().is_in_agency(agency_id)
    }
}

/// One page of an agency's purchases of one account that is not its client now, newest first.
#[derive(Debug, Clone)]
pub struct ClientInBookPage {
    pub purchases: Vec<PurchaseRecord>,
    pub next: Option<ClientInBookPosition>,
}

/// The most items one request of a filtered list may read, whatever `limit`: a request's work is bounded by
/// this, never by the size of a partition (another agency's client may have 10^5 purchases).
pub const MAX_ITEMS_READ_PER_REQUEST: usize = 400;

/// Items a filtered page of `limit` may read: four pages' worth (the filter rarely drops anything), at most
/// [`MAX_ITEMS_READ_PER_REQUEST`]. When it runs out the page ends short, with a cursor where reading stopped.
pub fn items_read_budget(limit: usize) -> usize {
    (limit.saturating_add(1).saturating_mul(4)).min(MAX_ITEMS_READ_PER_REQUEST)
}

/// How a budgeted, filtered read ended: up to `limit + 1` matching items, and where reading stopped if the
/// budget ran out first (`None`: the partition ended, or `limit + 1` matched).
struct Budgeted {
    matched: Vec<Item>,
    stopped_at: Option<Item>,
}

/// Reads `query` (a filtered Query; `Limit` and `ExclusiveStartKey` are set here) page by page, the first asking
/// for `limit + 1` items and each next for twice as many, until `limit + 1` match, the partition ends, or
/// [`items_read_budget`] items were read.
async fn budgeted_read(
    what: &str,
    query: impl Fn() -> QueryFluentBuilder,
    limit: usize,
    mut start: Option<Item>,
) -> Result<Budgeted, StoreError> {
    let budget = items_read_budget(limit);
    let (mut read, mut ask) = (0, limit + 1);
    let mut matched = Vec::with_capacity(limit + 1);
    loop {
        let ask_now = ask.min(budget - read);
        let output = query()
            .limit(i32::try_from(ask_now).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        read += usize::try_from(output.scanned_count).map_or(ask_now, |scanned| scanned.min(ask_now));
        for item in output.items.unwrap_or_default() {
            if matched.len() > limit {
                break;
            }
            matched.push(item);
        }
        match output.last_evaluated_key {
            Some(_) if matched.len() > limit => return Ok(Budgeted { matched, stopped_at: None }),
            Some(key) if read >= budget => return Ok(Budgeted { matched, stopped_at: Some(key) }),
            Some(key) => start = Some(key),
            None => return Ok(Budgeted { matched, stopped_at: None }),
        }
        ask = ask.saturating_mul(2);
    }
}

impl Store {
    /// Up to `limit` of the agency's clients' purchases (billed, unbilled and voided), newest first, after
    /// `after`: one Query of the agency's partition of the `agency-items` index (no filter, so `Limit` is exact).
    pub async fn agency_purchases_page(
        &self,
        agency_id: &str,
        limit: usize,
        after: Option<&AgencyPurchasePosition>,
    ) -> Result<AgencyPurchasePage, StoreError> {
        if after.is_some_and(|position| !position.is_in_agency(agency_id)) {
            return Err(StoreError::Internal("a purchases position of another agency reached storage".into()));
        }
        let start = after.map(AgencyPurchasePosition::index_key);
        let output = self
            .agency_items_query(agency_id, AGENCY_PURCHASE_PREFIX)
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Query agency purchases", e))?;
        let mut purchases = Vec::with_capacity(limit + 1);
        for item in output.items.unwrap_or_default() {
            let purchase: PurchaseRecord = from_item("purchase", item)?;
            // The partition decides the agency already; checking it too means no agency ever sees another's costs.
            if purchase.agency_id != agency_id {
                return Err(StoreError::Internal(format!("a foreign purchase in the partition of {agency_id}")));
            }
            purchases.push(purchase);
        }
        let more = purchases.len() > limit;
        purchases.truncate(limit);
        let next = if more { purchases.last().map(AgencyPurchasePosition::of) } else { None };
        Ok(AgencyPurchasePage { purchases, next })
    }

    /// Up to `limit` of a current client's purchases made through this agency, newest first, after `after`: the
    /// account's own partition (`PURCHASE#{uuidv7}`, time-ordered), filtered to `agencyId = :agency` (the filter
    /// drops only purchases made before the account joined this agency). Reads at most [`items_read_budget`]
    /// items: a page may end short of `limit` with `next` where reading stopped.
    pub async fn client_purchases_for_agency(
        &self,
        agency_id: &str,
        account_id: &str,
        limit: usize,
        after: Option<&PurchaseKey>,
    ) -> Result<PurchasePage, StoreError> {
        if after.is_some_and(|key| !key.is_purchase_of(account_id)) {
            return Err(StoreError::Internal("a purchases position of another account reached storage".into()));
        }
        let query = || {
            self.partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
                .scan_index_forward(false)
                .filter_expression("#agency = :agency")
                .expression_attribute_names("#agency", "agencyId")
                .expression_attribute_values(":agency", s(agency_id))
        };
        let start = after.map(|k| keys::key(k.pk.clone(), &k.sk));
        let read = budgeted_read("Query client purchases", query, limit, start).await?;
        let mut purchases: Vec<PurchaseRecord> =
            read.matched.into_iter().map(|item| from_item("purchase", item)).collect::<Result<_, _>>()?;
        let next = if purchases.len() > limit {
            purchases.truncate(limit);
            purchases.last().map(|p| PurchaseKey::of(&p.account_id, &p.purchase_id))
        } else {
            match read.stopped_at {
                Some(key) => Some(PurchaseKey { pk: key.string(PARTITION_KEY)?, sk: key.string(SORT_KEY)? }),
                None => None,
            }
        };
        Ok(PurchasePage { purchases, next })
    }

    /// Up to `limit` of this agency's purchases of an account that is not its client now (it left, or never
    /// was, or does not exist), newest first, after `after`: the agency's own book (`agency-items`) filtered to
    /// `accountId = :account`. The work depends only on the agency's own book, never on that account's history
    /// under another agency; at most [`items_read_budget`] items, so a page may be empty with a `next`.
    pub async fn client_purchases_in_book(
        &self,
        agency_id: &str,
        account_id: &str,
        limit: usize,
        after: Option<&ClientInBookPosition>,
    ) -> Result<ClientInBookPage, StoreError> {
        if after.is_some_and(|position| !position.is_in_agency_for(agency_id, account_id)) {
            return Err(StoreError::Internal("a purchases position of another list reached storage".into()));
        }
        let query = || {
            self.agency_items_query(agency_id, AGENCY_PURCHASE_PREFIX)
                .filter_expression("#account = :account")
                .expression_attribute_names("#account", "accountId")
                .expression_attribute_values(":account", s(account_id))
                .scan_index_forward(false)
        };
        let start = after.map(|p| p.in_book().index_key());
        let read = budgeted_read("Query agency purchases of one account", query, limit, start).await?;
        let mut purchases = Vec::with_capacity(read.matched.len());
        for item in read.matched {
            let purchase: PurchaseRecord = from_item("purchase", item)?;
            if purchase.agency_id != agency_id || purchase.account_id != account_id {
                return Err(StoreError::Internal(format!("a foreign purchase in the partition of {agency_id}")));
            }
            purchases.push(purchase);
        }
        let position = |p: AgencyPurchasePosition| ClientInBookPosition {
            account_id: account_id.to_owned(),
            agency_pk: p.agency_pk,
            agency_sk: p.agency_sk,
            pk: p.pk,
            sk: p.sk,
        };
        let next = if purchases.len() > limit {
            purchases.truncate(limit);
            purchases.last().map(|p| position(AgencyPurchasePosition::of(p)))
        } else {
            match read.stopped_at {
                Some(key) => Some(position(AgencyPurchasePosition {
                    agency_pk: key.string(AGENCY_INDEX.partition_key)?,
                    agency_sk: key.string(AGENCY_INDEX.sort_key)?,
                    pk: key.string(PARTITION_KEY)?,
                    sk: key.string(SORT_KEY)?,
                })),
                None => None,
            }
        };
        Ok(ClientInBookPage { purchases, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_positions_only_move_within_the_agencys_purchases() {
        let id = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let good = AgencyPurchasePosition {
            agency_pk: "AGENCY#agency-a".into(),
            agency_sk: format!("PURCHASE#2026-11-26T01:00:00.000Z#{id}"),
            pk: "ACCOUNT#acct-a".into(),
            sk: format!("PURCHASE#{id}"),
        };
        assert!(good.is_in_agency("agency-a"));
        assert!(!good.is_in_agency("agency-b"));
        let other = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
        for bad in [
            AgencyPurchasePosition { sk: format!("PURCHASE#{other}"), ..good.clone() },
            AgencyPurchasePosition { pk: "AGENCY#agency-a".into(), ..good.clone() },
            AgencyPurchasePosition { pk: "ACCOUNT#a#b".into(), ..good.clone() },
            AgencyPurchasePosition { agency_sk: format!("CLIENT#acct-a#{id}"), ..good.clone() },
            AgencyPurchasePosition { agency_sk: format!("PURCHASE#yesterday#{id}"), ..good.clone() },
            AgencyPurchasePosition {
                agency_sk: format!("PURCHASE#2026-11-26T01:00:00.000Z#{}", id.to_uppercase()),
                ..good.clone()
            },
        ] {
            assert!(!bad.is_in_agency("agency-a"), "{bad:?}");
        }
    }
}
