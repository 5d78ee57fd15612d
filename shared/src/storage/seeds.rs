//! Writes of the seed loader: prices and accounts, idempotent so loading twice changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, ConditionCheck, Put, TransactWriteItem, Update};
use rust_decimal::Decimal;

use super::items::{AgencyPricingItem, Attributes, DefaultPricingItem, Item, from_item, n, s, to_item};
use super::transact::condition_failed;
use super::{Store, StoreError, classify, keys};
use crate::domain::{CURRENCY, CreditType, Rate, RateOverride};
use crate::table::AGENCY_INDEX;

/// A stored pricing item: its version, and its rates if they decode (a rate the domain refuses, such as
/// `"-0"`, leaves `None`, so loading good seeds replaces bad data instead of failing on it).
fn stored_pricing<T: serde::de::DeserializeOwned>(
    item: Option<Item>,
    what: &str,
) -> Result<Option<(u64, Option<T>)>, StoreError> {
    let Some(item) = item else { return Ok(None) };
    let version = item.count("version")?;
    Ok(Some((version, from_item(what, item).ok())))
}

/// Default rates as written, so a stored `"0.01500"` differs from the canonical `"0.0150"` and is rewritten.
fn default_text(rates: &BTreeMap<CreditType, Rate>) -> Vec<(CreditType, String, String)> {
    rates.iter().map(|(t, r)| (*t, r.price.to_string(), r.cost.to_string())).collect()
}

/// An agency's overrides as written.
fn override_text(rates: &BTreeMap<CreditType, RateOverride>) -> Vec<(CreditType, Option<String>, Option<String>)> {
    rates.iter().map(|(t, r)| (*t, r.price.map(|p| p.to_string()), r.cost.map(|c| c.to_string()))).collect()
}

/// An account as the seed loader and the provisioning entry point write it. `None` leaves a field as it is.
#[derive(Debug, Clone, Copy)]
pub struct AccountWrite<'a> {
    pub account_id: &'a str,
    pub agency_id: &'a str,
    pub name: Option<&'a str>,
    pub stripe_customer_id: Option<&'a str>,
}

/// What a provisioning request requires of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRule {
    /// Create it, or update it while it stays with the same agency (`upsertAccount`).
    NewOrSameAgency,
    /// It exists; its agency becomes the one given (`moveClient`).
    Exists,
}

/// A provisioning request, recorded with its change so it is applied exactly once.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionRequestRecord<'a> {
    pub request_id: &'a str,
    /// The request as received, canonical JSON: a replay must ask exactly this.
    pub request: &'a str,
    pub received_at: &'a str,
    pub account_rule: AccountRule,
}

/// What a write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionOutcome {
    Applied,
    /// This request was applied before: nothing written now.
    Replayed,
    /// The request id was used before for another request: nothing written.
    RequestIdReused,
    /// `moveClient` of an account that does not exist: nothing written.
    AccountMissing,
    /// `upsertAccount` of an account that belongs to another agency (a move is asked as `moveClient`).
    AccountInOtherAgency,
    /// The agency has no line (it was never provisioned or seeded): nothing written.
    AgencyMissing,
}

impl Store {
    /// The stored default rates, if there are any (the seed loader checks agencies' margins against them).
    pub async fn default_rates(&self) -> Result<Option<BTreeMap<CreditType, Rate>>, StoreError> {
        let item = self.get_item(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK).await?;
        let current: Option<DefaultPricingItem> = item.map(|i| from_item("default pricing", i)).transpose()?;
        Ok(current.map(|c| c.rates))
    }

    /// Stores the default pricing, every rate in canonical form; bumps its version only when the rates as written
    /// change, so loading twice is a no-op.
    pub async fn upsert_default_pricing(&self, rates: &BTreeMap<CreditType, Rate>) -> Result<bool, StoreError> {
        let rates: BTreeMap<CreditType, Rate> = rates.iter().map(|(t, r)| (*t, r.canonical())).collect();
        let item = self.get_item(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK).await?;
        let current = stored_pricing::<DefaultPricingItem>(item, "default pricing")?;
        if let Some((_, Some(c))) = &current
            && default_text(&c.rates) == default_text(&rates)
        {
            return Ok(false);
        }
        let version = current.as_ref().map(|(v, _)| *v);
        let item = DefaultPricingItem { version: version.unwrap_or(0) + 1, currency: CURRENCY.into(), rates };
        self.put_versioned(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK, &item, version).await?;
        Ok(true)
    }

    /// Stores an agency's overrides, every rate in canonical form; bumps its version only when they change as
    /// written.
    pub async fn upsert_agency_pricing(
        &self,
        agency_id: &str,
        rates: &BTreeMap<CreditType, RateOverride>,
    ) -> Result<bool, StoreError> {
        let rates: BTreeMap<CreditType, RateOverride> = rates.iter().map(|(t, r)| (*t, r.canonical())).collect();
        let item = self.get_item(keys::agency(agency_id), keys::PRICING_SK).await?;
        let current = stored_pricing::<AgencyPricingItem>(item, "agency pricing")?;
        if let Some((_, Some(c))) = &current
            && override_text(&c.rates) == override_text(&rates)
        {
            return Ok(false);
        }
        let version = current.as_ref().map(|(v, _)| *v);
        let item = AgencyPricingItem {
            agency_id: agency_id.to_owned(),
            version: version.unwrap_or(0) + 1,
            currency: CURRENCY.into(),
            rates,
        };
        self.put_versioned(keys::agency(agency_id), keys::PRICING_SK, &item, version).await?;
        Ok(true)
    }

    /// Creates or updates an account's agency, name and Stripe customer (`stripeCustomerId`, which collection
    /// charges and no API answer shows); existing balances are never touched. `None` leaves a field as it is.
    /// The seed loader's write: [`Store::write_account`] without a provisioning request.
    pub async fn upsert_account(
        &self,
        account_id: &str,
        agency_id: &str,
        name: Option<&str>,
        stripe_customer_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let account = AccountWrite { account_id, agency_id, name, stripe_customer_id };
        self.write_account(&account, None).await.map(|_| ())
    }

    /// The one write of an account's agency, name and Stripe customer, shared by the seed loader (no request:
    /// a plain upsert, a seed naming another agency moves the account) and the provisioning entry point (with its
    /// request: the change and the request's record in one transaction, so it happens once; the agency's line
    /// must exist; [`AccountRule`] says whether the account must be new or already there).
    pub async fn write_account(
        &self,
        account: &AccountWrite<'_>,
        request: Option<&ProvisionRequestRecord<'_>>,
    ) -> Result<ProvisionOutcome, StoreError> {
        let AccountWrite { account_id, agency_id, name, stripe_customer_id } = *account;
        // The agency index keys: the agency console lists its clients with one Query.
        let mut update =
            "SET accountId = :id, agencyId = :agency, #agencyPk = :agencyPk, #agencySk = :agencySk".to_owned();
        let mut values = HashMap::from([
            (":id".to_owned(), s(account_id)),
            (":agency".to_owned(), s(agency_id)),
            (":agencyPk".to_owned(), s(keys::agency(agency_id))),
            (":agencySk".to_owned(), s(keys::agency_client_sk(account_id))),
        ]);
        let mut names = HashMap::from([
            ("#agencyPk".to_owned(), AGENCY_INDEX.partition_key.to_owned()),
            ("#agencySk".to_owned(), AGENCY_INDEX.sort_key.to_owned()),
        ]);
        if let Some(name) = name {
            update.push_str(", #name = :name");
            values.insert(":name".to_owned(), s(name));
            names.insert("#name".to_owned(), "name".to_owned());
        }
        if let Some(customer) = stripe_customer_id {
            update.push_str(", #customer = :customer");
            values.insert(":customer".to_owned(), s(customer));
            names.insert("#customer".to_owned(), super::collection::STRIPE_CUSTOMER_ID.to_owned());
        }
        let key = keys::key(keys::account(account_id), keys::ACCOUNT_SK);
        let Some(request) = request else {
            return self.plain_update("UpdateItem account", key, update, names, values).await;
        };
        let condition = match request.account_rule {
            // A new account, or this agency's already: a change of agency is a move, asked for as one.
            AccountRule::NewOrSameAgency => "attribute_not_exists(pk) OR agencyId = :agency",
            AccountRule::Exists => "attribute_exists(pk)",
        };
        let change = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| super::internal("account update", e))?;
        let agency_line = ConditionCheck::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::agency_line(agency_id), keys::CREDIT_LINE_SK)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| super::internal("agency line check", e))?;
        let items = [
            self.provision_record(request)?,
            TransactWriteItem::builder().update(change).build(),
            TransactWriteItem::builder().condition_check(agency_line).build(),
        ];
        self.provision_transaction(request, &items, |reasons| {
            Ok(if condition_failed(reasons, 0) {
                Some(ProvisionOutcome::Replayed) // checked against the stored request below
            } else if condition_failed(reasons, 1) {
                Some(match request.account_rule {
                    AccountRule::NewOrSameAgency => ProvisionOutcome::AccountInOtherAgency,
                    AccountRule::Exists => ProvisionOutcome::AccountMissing,
                })
            } else if condition_failed(reasons, 2) {
                Some(ProvisionOutcome::AgencyMissing)
            } else {
                None
            })
        })
        .await
    }

    /// Sets an agency's Stripe customer on its credit line item (`AGENCYLINE#`, where collection reads it),
    /// creating the line with `ceiling_if_new` at cost when the agency has none. Shared by the seed loader (no
    /// request; it sets the ceiling itself first) and the provisioning entry point (with its request: once).
    pub async fn write_agency(
        &self,
        agency_id: &str,
        stripe_customer_id: Option<&str>,
        ceiling_if_new: Decimal,
        request: Option<&ProvisionRequestRecord<'_>>,
    ) -> Result<ProvisionOutcome, StoreError> {
        let mut update = "SET #limit = if_not_exists(#limit, :ceiling), \
                          #available = if_not_exists(#available, :ceiling)"
            .to_owned();
        let mut names = HashMap::from([
            ("#limit".to_owned(), keys::CREDIT_LIMIT.to_owned()),
            ("#available".to_owned(), keys::AVAILABLE_CREDIT.to_owned()),
        ]);
        let mut values = HashMap::from([(":ceiling".to_owned(), n(ceiling_if_new))]);
        if let Some(customer) = stripe_customer_id {
            update.push_str(", #customer = :customer");
            names.insert("#customer".to_owned(), super::collection::STRIPE_CUSTOMER_ID.to_owned());
            values.insert(":customer".to_owned(), s(customer));
        }
        let key = keys::key(keys::agency_line(agency_id), keys::CREDIT_LINE_SK);
        let Some(request) = request else {
            return self.plain_update("UpdateItem agency line", key, update, names, values).await;
        };
        let change = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(key))
            .update_expression(update)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| super::internal("agency line update", e))?;
        let items = [self.provision_record(request)?, TransactWriteItem::builder().update(change).build()];
        self.provision_transaction(request, &items, |reasons| {
            Ok(condition_failed(reasons, 0).then_some(ProvisionOutcome::Replayed))
        })
        .await
    }

    /// The seed loader's write (no provisioning request to record): one UpdateItem, applied as is.
    async fn plain_update(
        &self,
        what: &str,
        key: HashMap<String, AttributeValue>,
        update: String,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
    ) -> Result<ProvisionOutcome, StoreError> {
        self.client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(key))
            .update_expression(update)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(ProvisionOutcome::Applied)
    }

    /// The request's record, written only if no request of that id was: `PROVISION#<requestId>`.
    fn provision_record(&self, request: &ProvisionRequestRecord<'_>) -> Result<TransactWriteItem, StoreError> {
        let mut item = keys::key(keys::provision(request.request_id), keys::PROVISION_SK);
        item.insert("requestId".to_owned(), s(request.request_id));
        item.insert("request".to_owned(), s(request.request));
        item.insert("receivedAt".to_owned(), s(request.received_at));
        let put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| super::internal("provision record", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs a provisioning transaction; a request id seen before is `Replayed` when it asked the same thing
    /// (nothing written again) and `RequestIdReused` when it asked something else.
    async fn provision_transaction(
        &self,
        request: &ProvisionRequestRecord<'_>,
        items: &[TransactWriteItem],
        on_conditions: impl Fn(&[CancellationReason]) -> Result<Option<ProvisionOutcome>, StoreError>,
    ) -> Result<ProvisionOutcome, StoreError> {
        // One token for this call's resends (a lost answer resent is applied once by DynamoDB too).
        let token = format!("{:032x}", fastrand::u128(..));
        let outcome =
            self.transact_with_retries("TransactWriteItems provisioning", items, &token, true, on_conditions).await?;
        match outcome {
            None => Ok(ProvisionOutcome::Applied),
            Some(ProvisionOutcome::Replayed) => {
                let stored = self.get_item(keys::provision(request.request_id), keys::PROVISION_SK).await?;
                let asked = stored.as_ref().and_then(|item| item.optional_string("request"));
                Ok(if asked.as_deref() == Some(request.request) {
                    ProvisionOutcome::Replayed
                } else {
                    ProvisionOutcome::RequestIdReused
                })
            }
            Some(other) => Ok(other),
        }
    }

    /// Writes a versioned item only if nobody changed it since we read `expected_version`.
    async fn put_versioned<T: Serialize>(
        &self,
        pk: String,
        sk: &str,
        item: &T,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut attributes = to_item("pricing item", item)?;
        attributes.extend(keys::key(pk, sk));
        let request = self.client.put_item().table_name(&self.table_name).set_item(Some(attributes));
        let request = match expected_version {
            Some(v) => request.condition_expression("version = :v").expression_attribute_values(":v", n(v)),
            None => request.condition_expression("attribute_not_exists(pk)"),
        };
        request.send().await.map_err(|e| classify("PutItem pricing", e))?;
        Ok(())
    }
}
