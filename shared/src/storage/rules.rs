//! A client's consumption rules on its account item: each change is one `UpdateItem` that replaces one map
//! whole (`SET`, or `REMOVE` when it is empty: DynamoDB then holds nothing to read) and moves `rulesVersion` up by
//! one, only while the account exists. The answer is the item as written (`ALL_NEW`), so no read follows.
//!
//! A consumption reads the rules with the balances it changes, inside its own transaction, and commits only
//! while `rulesVersion` is the one it read: a change applies to the next consumption, never half of one.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::items::{account_from_item, n, rules_values};
use super::{Store, StoreError, classify, keys};
use crate::domain::Account;
use crate::domain::rules::{AlertThresholds, ConsumptionRules, TopupRules};

impl Store {
    /// Replaces the account's alert thresholds (all of them; none removes the attribute). `None`: no such account,
    /// nothing written.
    pub async fn set_alert_thresholds(
        &self,
        account_id: &str,
        thresholds: &AlertThresholds,
    ) -> Result<Option<Account>, StoreError> {
        let rules = ConsumptionRules { alert_thresholds: thresholds.clone(), ..ConsumptionRules::default() };
        let (value, _) = rules_values(&rules);
        self.replace_rules_map(account_id, keys::ALERT_THRESHOLDS, value, thresholds.is_empty()).await
    }

    /// Replaces the account's auto top-up rules (all of them; none removes the attribute). `None`: no such
    /// account, nothing written.
    pub async fn set_topup_rules(&self, account_id: &str, rules: &TopupRules) -> Result<Option<Account>, StoreError> {
        let all = ConsumptionRules { topups: rules.clone(), ..ConsumptionRules::default() };
        let (_, value) = rules_values(&all);
        self.replace_rules_map(account_id, keys::TOPUP_RULES, value, rules.is_empty()).await
    }

    async fn replace_rules_map(
        &self,
        account_id: &str,
        attribute: &str,
        value: AttributeValue,
        remove: bool,
    ) -> Result<Option<Account>, StoreError> {
        let mut values = HashMap::from([(":one".to_owned(), n(1))]);
        let update = if remove {
            "REMOVE #map ADD #version :one"
        } else {
            values.insert(":map".to_owned(), value);
            "SET #map = :map ADD #version :one"
        };
        let names = HashMap::from([
            ("#map".to_owned(), attribute.to_owned()),
            ("#version".to_owned(), keys::RULES_VERSION.to_owned()),
        ]);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)))
            .update_expression(update)
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match sent {
            Ok(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Internal(format!("UpdateItem {attribute}: no attributes returned")))?;
                account_from_item(&item).map(Some)
            }
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(&format!("UpdateItem {attribute}"), e)),
        }
    }
}
