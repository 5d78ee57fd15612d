//! Writes of the seed loader: prices and accounts, idempotent so loading twice changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::items::{AgencyPricingItem, DefaultPricingItem, from_item, n, s, to_item};
use super::{Store, StoreError, classify, keys};
use crate::domain::{CURRENCY, CreditType, Rate, RateOverride};

impl Store {
    /// Stores the default pricing; bumps its version only when the rates change, so loading twice is a no-op.
    pub async fn upsert_default_pricing(&self, rates: &BTreeMap<CreditType, Rate>) -> Result<bool, StoreError> {
        let current = self.get_item(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK).await?;
        let current: Option<DefaultPricingItem> = current.map(|item| from_item("default pricing", item)).transpose()?;
        if current.as_ref().is_some_and(|c| &c.rates == rates) {
            return Ok(false);
        }
        let version = current.as_ref().map_or(0, |c| c.version);
        let item = DefaultPricingItem { version: version + 1, currency: CURRENCY.into(), rates: rates.clone() };
        self.put_versioned(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK, &item, current.map(|c| c.version))
            .await?;
        Ok(true)
    }

    /// Stores an agency's overrides; bumps its version only when they change.
    pub async fn upsert_agency_pricing(
        &self,
        agency_id: &str,
        rates: &BTreeMap<CreditType, RateOverride>,
    ) -> Result<bool, StoreError> {
        let current = self.get_item(keys::agency(agency_id), keys::PRICING_SK).await?;
        let current: Option<AgencyPricingItem> = current.map(|item| from_item("agency pricing", item)).transpose()?;
        if current.as_ref().is_some_and(|c| &c.rates == rates) {
            return Ok(false);
        }
        let version = current.as_ref().map_or(0, |c| c.version);
        let item = AgencyPricingItem {
            agency_id: agency_id.to_owned(),
            version: version + 1,
            currency: CURRENCY.into(),
            rates: rates.clone(),
        };
        self.put_versioned(keys::agency(agency_id), keys::PRICING_SK, &item, current.map(|c| c.version)).await?;
        Ok(true)
    }

    /// Creates or updates an account's agency and name; existing balances are never touched.
    pub async fn upsert_account(
        &self,
        account_id: &str,
        agency_id: &str,
        name: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = "SET accountId = :id, agencyId = :agency".to_owned();
        let mut values = HashMap::from([(":id".to_owned(), s(account_id)), (":agency".to_owned(), s(agency_id))]);
        if let Some(name) = name {
            update.push_str(", #name = :name");
            values.insert(":name".to_owned(), s(name));
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)));
        if name.is_some() {
            request = request.expression_attribute_names("#name", "name");
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
