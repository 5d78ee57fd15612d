//! Pages of unbilled purchases: one shard of a side's unbilled index, created before the cycle end, oldest first,
//! and the position a resumed run starts from.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::items::{from_item, s};
use super::{Store, StoreError, classify, keys};
use crate::domain::PurchaseRecord;
use crate::domain::billing::{CycleEnd, StatementKind};
use crate::table::{PARTITION_KEY, SORT_KEY, SparseIndex, UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX};

/// The sparse index listing one side's unbilled purchases.
pub(super) fn unbilled_index(kind: StatementKind) -> SparseIndex {
    match kind {
        StatementKind::Client => UNBILLED_CLIENT_INDEX,
        StatementKind::Agency => UNBILLED_AGENCY_INDEX,
    }
}

/// One page of unbilled purchases, with what the Query read (`Count`) and evaluated (`ScannedCount`).
#[derive(Debug)]
pub struct UnbilledPage {
    pub purchases: Vec<PurchaseRecord>,
    pub items_read: u64,
    pub items_scanned: u64,
}

/// The pages of one shard of an unbilled index, created before the cycle end, oldest first, from a position
/// (the key of the last item an earlier page read) or from the start.
pub struct UnbilledPages {
    store: Store,
    kind: StatementKind,
    shard: u32,
    cycle_end: CycleEnd,
    limit: Option<i32>,
    /// Where the next page starts (`None`: the start of the shard, or nothing left once `done`).
    start: Option<PageKey>,
    done: bool,
}

impl UnbilledPages {
    /// Where the next page starts: `None` before the first page of the shard (and once it is read to the end).
    pub fn position(&self) -> Option<&PageKey> {
        self.start.as_ref()
    }

    pub async fn next(&mut self) -> Option<Result<UnbilledPage, StoreError>> {
        if self.done {
            return None;
        }
        let output = self
            .store
            .index_query(unbilled_index(self.kind), keys::unbilled(self.shard), Some(self.cycle_end.as_str()))
            .set_limit(self.limit)
            .set_exclusive_start_key(self.start.clone().map(|key| key.0))
            .send()
            .await;
        let page = match output {
            Ok(page) => page,
            Err(e) => return Some(Err(classify("Query unbilled purchases", e))),
        };
        self.start = page.last_evaluated_key.filter(|key| !key.is_empty()).map(PageKey);
        self.done = self.start.is_none();
        let purchases: Result<Vec<_>, _> =
            page.items.unwrap_or_default().into_iter().map(|item| from_item("unbilled purchase", item)).collect();
        Some(purchases.map(|purchases| UnbilledPage {
            purchases,
            items_read: page.count.max(0) as u64,
            items_scanned: page.scanned_count.max(0) as u64,
        }))
    }
}

impl PageKey {
    /// The key as JSON (every key attribute is a string), for a hand-over event.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        let mut names: Vec<_> = self.0.keys().collect();
        names.sort();
        for name in names {
            if let Ok(text) = self.0[name].as_s() {
                object.insert(name.clone(), serde_json::Value::String(text.clone()));
            }
        }
        serde_json::Value::Object(object)
    }

    /// A position in shard `shard` of `kind`'s unbilled index from an event, checked strictly: exactly the
    /// table's and the index's key attributes, all strings, the index partition of that shard, a sort key
    /// before the cycle end (the Query reads only those), a purchase's key in an account's partition. Anything
    /// else is refused, so an event can only ever start a Query where one of our own pages could have ended.
    pub fn unbilled_position(
        kind: StatementKind,
        shard: u32,
        cycle_end: &CycleEnd,
        value: &serde_json::Value,
    ) -> Result<PageKey, String> {
        let index = unbilled_index(kind);
        let serde_json::Value::Object(object) = value else {
            return Err(format!("`resumeAt.after` must be an object of the index's key, got {value}"));
        };
        let names = [PARTITION_KEY, SORT_KEY, index.partition_key, index.sort_key];
        if let Some(unknown) = object.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(format!("unknown field `resumeAt.after.{unknown}`; allowed: {}", names.join(", ")));
        }
        let text = |name: &str| match object.get(name) {
            Some(serde_json::Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(other) => Err(format!("`resumeAt.after.{name}` must be a non-empty string, got {other}")),
            None => Err(format!("`resumeAt.after.{name}` is required")),
        };
        let (pk, sk, index_pk, index_sk) =
            (text(PARTITION_KEY)?, text(SORT_KEY)?, text(index.partition_key)?, text(index.sort_key)?);
        if index_pk != keys::unbilled(shard) {
            return Err(format!("`resumeAt.after.{}` is not shard {shard}'s partition", index.partition_key));
        }
        if index_sk.as_str() >= cycle_end.as_str() {
            return Err(format!("`resumeAt.after.{}` is not before the cycle end", index.sort_key));
        }
        if pk.strip_prefix(&keys::account("")).is_none_or(str::is_empty)
            || sk.strip_prefix(keys::PURCHASE_SK_PREFIX).is_none_or(str::is_empty)
        {
            return Err("`resumeAt.after` is not a purchase's key".into());
        }
        Ok(PageKey(HashMap::from([
            (PARTITION_KEY.to_owned(), s(pk)),
            (SORT_KEY.to_owned(), s(sk)),
            (index.partition_key.to_owned(), s(index_pk)),
            (index.sort_key.to_owned(), s(index_sk)),
        ])))
    }
}

/// Where the next page of an index Query starts (its `LastEvaluatedKey`), opaque outside storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PageKey(pub(super) HashMap<String, AttributeValue>);

impl Store {
    /// The unbilled purchases of one shard created before `cycle_end`. Billing a purchase removes it from the
    /// index behind the reader's position; each page starts after the last key read, so nothing is skipped or
    /// read twice.
    /// `after`: the key of the last item a page read (a resumed run's position), else from the start; `limit`:
    /// items per page (else up to DynamoDB's 1 MB).
    pub fn unbilled_pages(
        &self,
        kind: StatementKind,
        shard: u32,
        cycle_end: &CycleEnd,
        after: Option<PageKey>,
        limit: Option<usize>,
    ) -> UnbilledPages {
        let limit = limit.map(|n| i32::try_from(n.max(1)).unwrap_or(i32::MAX));
        UnbilledPages {
            store: self.clone(),
            kind,
            shard,
            cycle_end: cycle_end.clone(),
            limit,
            start: after,
            done: false,
        }
    }
}
