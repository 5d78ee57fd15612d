//! The agency's pricing and clients: the audited price change (one transaction), the price history, the
//! clients page from the `agency-items` index and what each client owes this cycle from `client-unbilled`.
//!
//! Audit entries live in the agency's partition (`AGENCY#{agencyId}`), beside its pricing item and its
//! statements, sorted by time: `AUDIT#PRICING#{changedAt}#{uuidv7}` and `AUDIT#LIMIT#{changedAt}#{uuidv7}`.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::items::{AgencyPricingItem, Attributes, Item, account_from_item, from_item, n, s, to_item};
use super::keys::{AGENCY_CLIENT_PREFIX, PRICING_AUDIT_SK_PREFIX, audit_sk};
use super::transact::condition_failed;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::agency::{PricingAuditEntry, PricingChange};
use crate::domain::{Account, CURRENCY, is_valid_account_id};
use crate::table::AGENCY_INDEX;

/// How an audited price change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingWrite {
    Written,
    /// The pricing version is no longer the one the change was made against: nothing was written.
    VersionMoved,
}

/// A page of price history, newest first.
#[derive(Debug, Clone)]
pub struct PricingAuditPage {
    pub entries: Vec<PricingAuditEntry>,
    pub next: Option<AuditKey>,
}

/// The table key of an audit entry, as a history cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditKey {
    pub pk: String,
    pub sk: String,
}

impl AuditKey {
    /// Whether this is the key of one of `agency_id`'s price audit entries; nothing else reaches a Query.
    pub fn is_pricing_audit_of(&self, agency_id: &str) -> bool {
        self.pk == keys::agency(agency_id)
            && self.sk.strip_prefix(PRICING_AUDIT_SK_PREFIX).is_some_and(|rest| {
                rest.split_once('#').is_some_and(|(at, id)| {
                    at.len() == "2026-11-26T00:00:00.000Z".len()
                        && at.ends_with('Z')
                        && uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
                })
            })
    }
}

/// A page of an agency's clients, by account id.
#[derive(Debug, Clone)]
pub struct ClientPage {
    pub clients: Vec<ClientRow>,
    pub next: Option<ClientPosition>,
}

/// One client on the asking agency's page, from its account item alone.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub account: Account,
    /// What it has bought under the asking agency and not yet been billed for.
    pub unbilled: UnbilledSums,
    /// Its latest statement that billed purchases made under the asking agency ([`keys::last_statement_attribute`]).
    pub last_statement_id: Option<String>,
}

/// Where a clients page continues: the `agency-items` index key of the last client, with its table key (an
/// index's `ExclusiveStartKey` needs both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientPosition {
    pub pk: String,
    pub sk: String,
    pub agency_pk: String,
    pub agency_sk: String,
}

impl ClientPosition {
    fn of(agency_id: &str, account_id: &str) -> ClientPosition {
        ClientPosition {
            pk: keys::account(account_id),
            sk: keys::ACCOUNT_SK.to_owned(),
            agency_pk: keys::agency(agency_id),
            agency_sk: keys::agency_client_sk(account_id),
        }
    }

    /// Whether this is the position of a client of `agency_id`, all four keys consistent.
    pub fn is_client_of(&self, agency_id: &str) -> bool {
        self.agency_sk.strip_prefix(AGENCY_CLIENT_PREFIX).is_some_and(|account_id| {
            is_valid_account_id(account_id) && *self == ClientPosition::of(agency_id, account_id)
        })
    }

    fn key(&self) -> Item {
        let mut key = keys::key(self.pk.clone(), &self.sk);
        key.insert(AGENCY_INDEX.partition_key.to_owned(), s(&self.agency_pk));
        key.insert(AGENCY_INDEX.sort_key.to_owned(), s(&self.agency_sk));
        key
    }
}

/// What a client has bought and not yet been billed for (this cycle), at price and at cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnbilledSums {
    pub purchases: u64,
    pub at_price: Decimal,
    pub at_cost: Decimal,
}

/// Positions of the price change transaction's items.
const PRICING: usize = 0;

impl Store {
    /// Writes the agency's new overrides with version `expected_version + 1` and the change's audit entry in
    /// one `TransactWriteItems`, only if the version is still `expected_version` (0: no pricing item yet).
    /// Purchases quoted at the old prices fail their own version check and are re-quoted.
    pub async fn change_agency_pricing(
        &self,
        agency_id: &str,
        expected_version: u64,
        change: &PricingChange,
        audit: &PricingAuditEntry,
    ) -> Result<PricingWrite, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the price change", e);
        let pricing = AgencyPricingItem {
            agency_id: agency_id.to_owned(),
            version: expected_version + 1,
            currency: CURRENCY.into(),
            rates: change.rates.clone(),
        };
        let mut pricing_item = to_item("agency pricing", &pricing)?;
        pricing_item.extend(keys::key(keys::agency(agency_id), keys::PRICING_SK));
        let pricing_put = Put::builder().table_name(&self.table_name).set_item(Some(pricing_item));
        let pricing_put = if expected_version == 0 {
            pricing_put.condition_expression("attribute_not_exists(pk)")
        } else {
            pricing_put.condition_expression("version = :v").expression_attribute_values(":v", n(expected_version))
        }
        .build()
        .map_err(build)?;

        let sk = audit_sk(PRICING_AUDIT_SK_PREFIX, &audit.changed_at);
        let mut audit_item = to_item("pricing audit entry", audit)?;
        audit_item.extend(keys::key(keys::agency(agency_id), &sk));
        let audit_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(audit_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;

        let items = [
            TransactWriteItem::builder().put(pricing_put).build(),
            TransactWriteItem::builder().put(audit_put).build(),
            super::outbox::outbox_put(&self.table_name, &crate::domain::events::pricing_changed(audit))?,
        ];
        // The audit entry's key is new per change, so it names the request: a resend with the same token after
        // a lost answer is a no-op, never a second entry.
        let token = sk.rsplit('#').next().unwrap_or(&sk).to_owned();
        let outcome = self
            .transact_with_retries("TransactWriteItems price change", &items, &token, true, |reasons| {
                Ok(condition_failed(reasons, PRICING).then_some(PricingWrite::VersionMoved))
            })
            .await?;
        match outcome {
            None => Ok(PricingWrite::Written),
            // A resend after a lost answer of our own commit finds the version moved, by us: our entry tells.
            Some(moved) => match self.get_item(keys::agency(agency_id), &sk).await? {
                Some(_) => Ok(PricingWrite::Written),
                None => Ok(moved),
            },
        }
    }

    /// Up to `limit` of the agency's price audit entries, newest first, after `after`.
    pub async fn pricing_audit_page(
        &self,
        agency_id: &str,
        limit: usize,
        after: Option<&AuditKey>,
    ) -> Result<PricingAuditPage, StoreError> {
        if after.is_some_and(|key| !key.is_pricing_audit_of(agency_id)) {
            return Err(StoreError::Internal("a price history position of another agency reached storage".into()));
        }
        let output = self
            .partition_query(keys::agency(agency_id), PRICING_AUDIT_SK_PREFIX)
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|k| keys::key(k.pk.clone(), &k.sk)))
            .send()
            .await
            .map_err(|e| classify("Query price history", e))?;
        let mut items = output.items.unwrap_or_default();
        let more = items.len() > limit;
        items.truncate(limit);
        let next = match items.last() {
            Some(last) if more => Some(AuditKey { pk: last.string("pk")?, sk: last.string("sk")? }),
            _ => None,
        };
        let entries = items.into_iter().map(|item| from_item("pricing audit entry", item)).collect::<Result<_, _>>()?;
        Ok(PricingAuditPage { entries, next })
    }

    /// Up to `limit` of the agency's clients (by account id) after `after`, from the `agency-items` index: one
    /// Query, no Scan. The index projects the whole account item, so balances and lines come with it.
    pub async fn agency_clients_page(
        &self,
        agency_id: &str,
        limit: usize,
        after: Option<&ClientPosition>,
    ) -> Result<ClientPage, StoreError> {
        if after.is_some_and(|position| !position.is_client_of(agency_id)) {
            return Err(StoreError::Internal("a clients position of another agency reached storage".into()));
        }
        let mut items = self
            .agency_items_query(agency_id, AGENCY_CLIENT_PREFIX)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(ClientPosition::key))
            .into_paginator()
            .items()
            .send();
        let mut clients = Vec::with_capacity(limit + 1);
        while clients.len() <= limit {
            match items.next().await {
                Some(item) => {
                    let item = item.map_err(|e| classify("Query agency clients", e))?;
                    clients.push(ClientRow {
                        account: account_from_item(&item)?,
                        unbilled: unbilled_sums(&item, agency_id)?,
                        last_statement_id: item.optional_string(&keys::last_statement_attribute(agency_id)),
                    });
                }
                None => break,
            }
        }
        let more = clients.len() > limit;
        clients.truncate(limit);
        let next = match clients.last() {
            Some(last) if more => Some(ClientPosition::of(agency_id, &last.account.account_id)),
            _ => None,
        };
        Ok(ClientPage { clients, next })
    }
}

/// The running unbilled sums of the purchases the client made under `agency_id` (absent: none), from its account
/// item. Read here instead of summing the client's purchases, so a page costs the same whatever they bought.
fn unbilled_sums(item: &Item, agency_id: &str) -> Result<UnbilledSums, StoreError> {
    let [count, at_price, at_cost] = keys::unbilled_sums_attributes(agency_id);
    Ok(UnbilledSums {
        purchases: item.count(&count)?,
        at_price: item.decimal(&at_price)?.unwrap_or_default(),
        at_cost: item.decimal(&at_cost)?.unwrap_or_default(),
    })
}
