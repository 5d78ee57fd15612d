//! Reading statements back: an owner's statements in full (tests and audits), a page of headers, a page of
//! one client statement's purchase ids, each read with a bounded number of items, and statements by id.

use serde::{Deserialize, Serialize};

use super::billing::MAX_PURCHASES_PER_STEP;
use super::items::{Attributes, Item, s, statement_from_item};
use super::{Store, StoreError, classify, keys};
use crate::domain::billing::{CycleEnd, Statement, StatementKind, StatementRef};
use crate::table::SORT_KEY;

/// The most items one page of a statements read asks DynamoDB to evaluate (it stops at 1 MB anyway).
const MAX_ITEMS_EVALUATED_PER_PAGE: usize = 1_000;

impl Store {
    /// Statements by id (unknown and malformed ids are left out), in one `BatchGetItem` of at most 100 keys (a
    /// page): the agency's clients page reads its clients' last statements with it, one call whatever their count.
    pub async fn statements_by_id(&self, statement_ids: &[String]) -> Result<Vec<Statement>, StoreError> {
        // BatchGetItem refuses a key given twice.
        let unique: std::collections::BTreeSet<&str> = statement_ids.iter().map(String::as_str).collect();
        let keys = unique
            .into_iter()
            .filter_map(StatementRef::parse)
            .map(|reference| {
                keys::key(
                    keys::statement_pk(reference.kind, &reference.owner),
                    &keys::statement_sk(reference.cycle_end.as_str()),
                )
            })
            .collect();
        let items = self.batch_get("BatchGetItem statements", keys).await?;
        items.iter().map(statement_from_item).collect()
    }

    /// An account's client statements, newest cycle first, with every purchase id: a full read for tests and
    /// audits, never a request path (an old, busy account's answer has no size limit). Requests page with
    /// [`Store::client_statements_page`] and [`Store::client_statement_purchase_ids`].
    #[cfg(any(test, feature = "test-support"))]
    pub async fn client_statements(&self, account_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Client, account_id).await
    }

    /// An agency's statements (at cost), newest cycle first. Never exposed to clients.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn agency_statements(&self, agency_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.statements(StatementKind::Agency, agency_id).await
    }

    #[cfg(any(test, feature = "test-support"))]
    async fn statements(&self, kind: StatementKind, owner: &str) -> Result<Vec<Statement>, StoreError> {
        let query =
            self.partition_query(keys::statement_pk(kind, owner), keys::STATEMENT_SK_PREFIX).scan_index_forward(false);
        let items = self.partition_items("Query statements", query).await?;
        let mut headers = Vec::new();
        let mut ids: std::collections::HashMap<String, Vec<String>> = Default::default();
        for item in items {
            if item.string(SORT_KEY)?.contains(keys::PART_MARKER) {
                ids.entry(item.string("statementId")?).or_default().extend(item.string_set("purchaseIds")?);
            } else {
                headers.push(statement_from_item(&item)?);
            }
        }
        // The partition decides the kind already; checking it too means a client can never see an agency's sums.
        headers.retain(|statement: &Statement| statement.kind == kind);
        for statement in &mut headers {
            let mut purchase_ids = ids.remove(&statement.statement_id).unwrap_or_default();
            purchase_ids.sort();
            statement.purchase_ids = purchase_ids;
        }
        Ok(headers)
    }

    /// Up to `limit` of an account's client statements (headers only): [`Store::statements_page`] of the
    /// account's partition.
    pub async fn client_statements_page(
        &self,
        account_id: &str,
        limit: usize,
        after: Option<&StatementKey>,
    ) -> Result<StatementPage, StoreError> {
        self.statements_page(StatementKind::Client, account_id, limit, after).await
    }

    /// Up to `limit` of an owner's statements of one kind (an account's client statements, an agency's at
    /// cost), headers only (`purchase_ids` is empty, `purchase_count` says how many), newest cycle first,
    /// after `after` (the last header of the previous page).
    ///
    /// Headers and their parts share the `STATEMENT#{cycleEnd}` prefix, and no key condition keeps the parts
    /// out, so the Query filters them (`attribute_not_exists(purchaseIds)`). `Limit` counts the items DynamoDB
    /// evaluates before the filter, not the headers it returns: the loop keeps reading pages until it holds
    /// `limit + 1` headers (so it knows whether more follow) or the partition ends, starting with room for
    /// one part per statement and doubling the page each time, so a busy owner's many parts cost a few round
    /// trips and at most about twice the reads needed. The page's position is the last header's key, never a
    /// part's.
    pub async fn statements_page(
        &self,
        kind: StatementKind,
        owner: &str,
        limit: usize,
        after: Option<&StatementKey>,
    ) -> Result<StatementPage, StoreError> {
        if after.is_some_and(|key| !key.is_statement_of_owner(kind, owner)) {
            return Err(StoreError::Internal("a statements position of another owner reached storage".into()));
        }
        let mut start = after.map(|k| keys::key(k.pk.clone(), &k.sk));
        let mut evaluate = 2 * (limit + 1);
        let mut statements: Vec<Statement> = Vec::with_capacity(limit + 1);
        loop {
            let output = self
                .partition_query(keys::statement_pk(kind, owner), keys::STATEMENT_SK_PREFIX)
                .scan_index_forward(false)
                .filter_expression("attribute_not_exists(#ids) AND #kind = :kind")
                .expression_attribute_names("#ids", "purchaseIds")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":kind", s(kind.as_str()))
                .limit(i32::try_from(evaluate).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query statements page", e))?;
            for item in output.items.unwrap_or_default() {
                if statements.len() > limit {
                    break;
                }
                if item.string(SORT_KEY)?.contains(keys::PART_MARKER) {
                    return Err(StoreError::Internal("a statement part passed the header filter".into()));
                }
                statements.push(statement_from_item(&item)?);
            }
            match output.last_evaluated_key {
                Some(key) if statements.len() <= limit => start = Some(key),
                _ => break,
            }
            evaluate = (evaluate * 2).min(MAX_ITEMS_EVALUATED_PER_PAGE);
        }
        // The partition decides the kind already; checking it too means a client can never see an agency's sums.
        if statements.iter().any(|statement| statement.kind != kind || statement.owner_id != owner) {
            return Err(StoreError::Internal(format!("a foreign statement in the partition of {owner}")));
        }
        let more = statements.len() > limit;
        statements.truncate(limit);
        let next = if more {
            statements.last().map(|last| StatementKey::of_owner(kind, owner, &last.cycle_end))
        } else {
            None
        };
        Ok(StatementPage { statements, next })
    }

    /// Up to `limit` purchase ids of one client statement of the account, after `after`; `None` when the account
    /// has no client statement with this id for this cycle end.
    ///
    /// Ids are listed part by part (parts in key order, the ids of a part sorted). A position is a part and the
    /// last id read from it: the rest of that part is one GetItem, and only if it does not fill the page are
    /// the following parts queried (a page of room for `limit + 1` ids' parts, doubling), so a page reads
    /// about what it returns, whatever the statement's size.
    pub async fn client_statement_purchase_ids(
        &self,
        account_id: &str,
        cycle_end: &CycleEnd,
        statement_id: &str,
        limit: usize,
        after: Option<&StatementPurchasePosition>,
    ) -> Result<Option<StatementPurchasesPage>, StoreError> {
        if after.is_some_and(|position| !position.is_in(account_id, cycle_end)) {
            return Err(StoreError::Internal("a position in another statement reached storage".into()));
        }
        let kind = StatementKind::Client;
        let pk = keys::statement_pk(kind, account_id);
        let header_sk = keys::statement_sk(cycle_end.as_str());
        let (header, ids) = tokio::join!(
            self.get_item(pk.clone(), &header_sk),
            self.purchase_ids_after(&pk, cycle_end, statement_id, limit, after)
        );
        let Some(header) = header? else { return Ok(None) };
        let header = statement_from_item(&header)?;
        if header.kind != kind || header.statement_id != statement_id || header.owner_id != account_id {
            return Ok(None);
        }
        let mut ids = ids?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = if more {
            ids.last().map(|(part_sk, id)| StatementPurchasePosition {
                pk: pk.clone(),
                sk: part_sk.clone(),
                after: id.clone(),
            })
        } else {
            None
        };
        Ok(Some(StatementPurchasesPage { purchase_ids: ids.into_iter().map(|(_, id)| id).collect(), next }))
    }

    /// Up to `limit + 1` (part key, purchase id) of a statement's parts, in listing order, after `after`.
    async fn purchase_ids_after(
        &self,
        pk: &str,
        cycle_end: &CycleEnd,
        statement_id: &str,
        limit: usize,
        after: Option<&StatementPurchasePosition>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut ids: Vec<(String, String)> = Vec::with_capacity(limit + 1);
        let take_part = |item: &Item, after_id: Option<&str>, ids: &mut Vec<(String, String)>| {
            let sk = item.string(SORT_KEY)?;
            if item.string("statementId")? != statement_id || item.string("kind")? != StatementKind::Client.as_str() {
                return Err(StoreError::Internal(format!("statement part {pk}/{sk} of another statement")));
            }
            let mut part_ids = item.string_set("purchaseIds")?;
            part_ids.sort();
            for id in part_ids.into_iter().filter(|id| after_id.is_none_or(|after| id.as_str() > after)) {
                if ids.len() > limit {
                    break;
                }
                ids.push((sk.clone(), id));
            }
            Ok::<(), StoreError>(())
        };
        if let Some(position) = after
            && let Some(part) = self.get_item(pk.to_owned(), &position.sk).await?
        {
            take_part(&part, Some(&position.after), &mut ids)?;
        }
        let mut start = after.map(|position| keys::key(pk.to_owned(), &position.sk));
        let mut evaluate = (limit + 1).div_ceil(MAX_PURCHASES_PER_STEP);
        let prefix = keys::statement_part_sk(cycle_end.as_str(), "");
        while ids.len() <= limit {
            let output = self
                .partition_query(pk.to_owned(), &prefix)
                .limit(i32::try_from(evaluate).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query statement parts", e))?;
            for item in output.items.unwrap_or_default() {
                take_part(&item, None, &mut ids)?;
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
            evaluate = (evaluate * 2).min(MAX_ITEMS_EVALUATED_PER_PAGE);
        }
        Ok(ids)
    }
}

/// One page of an owner's statements, headers only.
#[derive(Debug, Clone)]
pub struct StatementPage {
    pub statements: Vec<Statement>,
    /// The key of the page's last statement when more follow: where the next page starts.
    pub next: Option<StatementKey>,
}

/// The table key of a statement header, as a statements cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementKey {
    pub pk: String,
    pub sk: String,
}

impl StatementKey {
    /// `cycle_end` as stored on the statement ("2026-12-01T00:00:00.000Z").
    pub fn of(account_id: &str, cycle_end: &str) -> StatementKey {
        StatementKey::of_owner(StatementKind::Client, account_id, cycle_end)
    }

    /// The key of `owner`'s statement header of this kind for `cycle_end`.
    pub fn of_owner(kind: StatementKind, owner: &str, cycle_end: &str) -> StatementKey {
        StatementKey { pk: keys::statement_pk(kind, owner), sk: keys::statement_sk(cycle_end) }
    }

    /// Whether this is the key of a client statement header of `account_id`.
    pub fn is_statement_of(&self, account_id: &str) -> bool {
        self.is_statement_of_owner(StatementKind::Client, account_id)
    }

    /// Whether this is the key of a statement header of `owner` of this kind: the owner's partition and
    /// `STATEMENT#` followed by a canonical cycle end (so never a part, a purchase or another item).
    pub fn is_statement_of_owner(&self, kind: StatementKind, owner: &str) -> bool {
        let Some(cycle_end) = self.sk.strip_prefix(keys::STATEMENT_SK_PREFIX) else { return false };
        self.pk == keys::statement_pk(kind, owner) && CycleEnd::parse(cycle_end).is_ok_and(|c| c.as_str() == cycle_end)
    }
}

/// One page of a statement's purchase ids.
#[derive(Debug, Clone)]
pub struct StatementPurchasesPage {
    pub purchase_ids: Vec<String>,
    /// Where the next page starts, when more ids follow.
    pub next: Option<StatementPurchasePosition>,
}

/// A position in a statement's purchase ids: a part's key and the last id read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementPurchasePosition {
    pub pk: String,
    pub sk: String,
    pub after: String,
}

impl StatementPurchasePosition {
    /// Whether this is a position in the client statement of `account_id` for `cycle_end`: the account's
    /// partition, a part key of that very statement, and purchase ids in canonical UUID form.
    pub fn is_in(&self, account_id: &str, cycle_end: &CycleEnd) -> bool {
        let canonical = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
        let prefix = keys::statement_part_sk(cycle_end.as_str(), "");
        self.pk == keys::account(account_id)
            && self.sk.strip_prefix(&prefix).is_some_and(canonical)
            && canonical(&self.after)
    }
}
