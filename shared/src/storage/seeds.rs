//! Writes of the seed loader: prices and accounts, idempotent so loading twice changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::items::{AgencyPricingItem, Attributes, DefaultPricingItem, Item, from_item, n, s, to_item};
use super::{Store, StoreError, classify, keys};
use crate::domain::{CURRENCY, CreditType, Rate, RateOverride};
use crate::table::{AGENCY_CLIENT_PREFIX, AGENCY_INDEX};

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
    pub async fn upsert_account(
        &self,
        account_id: &str,
        agency_id: &str,
        name: Option<&str>,
        stripe_customer_id: Option<&str>,
    ) -> Result<(), StoreError> {
        // The agency index keys: the agency console lists its clients with one Query.
        let mut update =
            "SET accountId = :id, agencyId = :agency, #agencyPk = :agencyPk, #agencySk = :agencySk".to_owned();
        let mut values = HashMap::from([
            (":id".to_owned(), s(account_id)),
            (":agency".to_owned(), s(agency_id)),
            (":agencyPk".to_owned(), s(keys::agency(agency_id))),
            (":agencySk".to_owned(), s(format!("{AGENCY_CLIENT_PREFIX}{account_id}"))),
        ]);
        if let Some(name) = name {
            update.push_str(", #name = :name");
            values.insert(":name".to_owned(), s(name));
        }
        if let Some(customer) = stripe_customer_id {
            update.push_str(", #customer = :customer");
            values.insert(":customer".to_owned(), s(customer));
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)))
            .expression_attribute_names("#agencyPk", AGENCY_INDEX.partition_key)
            .expression_attribute_names("#agencySk", AGENCY_INDEX.sort_key);
        if name.is_some() {
            request = request.expression_attribute_names("#name", "name");
        }
        if stripe_customer_id.is_some() {
            request = request.expression_attribute_names("#customer", super::collection::STRIPE_CUSTOMER_ID);
        }
        request
            .update_expression(update)
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| classify("UpdateItem account", e))?;
        Ok(())
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
