//! Credit lines: setting a client's limit or an agency's ceiling, and reading an agency's line.
//!
//! A purchase moves `availableCredit` down inside its own transaction (`storage::purchases`) and a payment moves
//! it up (`storage::payments`); changing a limit moves it by the difference, under the condition that the limit
//! is still the one read, so a limit change and a purchase never lose each other's update.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use rust_decimal::Decimal;

use super::items::{credit_line_from_item, n};
use super::{Store, StoreError, classify, keys};
use crate::domain::credit::CreditLine;

/// A limit change re-reads and tries again this often when a concurrent change got there first.
const LIMIT_CHANGE_ATTEMPTS: usize = 5;

impl Store {
    /// Sets an account's pay-later limit (at price); `None` if the account does not exist. The same function
    /// serves the seed loader and the agency API.
    pub async fn set_credit_limit(&self, account_id: &str, limit: Decimal) -> Result<Option<CreditLine>, StoreError> {
        self.set_line_limit(keys::account(account_id), keys::ACCOUNT_SK, limit, true).await
    }

    /// Sets an agency's ceiling at cost (what its clients together may owe the platform), creating its line.
    pub async fn set_agency_ceiling(&self, agency_id: &str, ceiling: Decimal) -> Result<CreditLine, StoreError> {
        let line = self.set_line_limit(keys::agency_line(agency_id), keys::CREDIT_LINE_SK, ceiling, false).await?;
        line.ok_or_else(|| StoreError::Internal(format!("agency line of {agency_id} not written")))
    }

    /// An agency's line, if it has one.
    pub async fn agency_line(&self, agency_id: &str) -> Result<Option<CreditLine>, StoreError> {
        let item = self.get_item(keys::agency_line(agency_id), keys::CREDIT_LINE_SK).await?;
        Ok(item.map(|item| credit_line_from_item(&item)).transpose()?.flatten())
    }

    /// Moves a line to `limit`: `available` by the difference (a line never given before starts with nothing
    /// owed). `must_exist`: the item must be there already (an account), else it is created (an agency line).
    async fn set_line_limit(
        &self,
        pk: String,
        sk: &str,
        limit: Decimal,
        must_exist: bool,
    ) -> Result<Option<CreditLine>, StoreError> {
        for _ in 0..LIMIT_CHANGE_ATTEMPTS {
            let current = self.get_item(pk.clone(), sk).await?;
            if must_exist && current.is_none() {
                return Ok(None);
            }
            let line = current.as_ref().map(credit_line_from_item).transpose()?.flatten();
            let next = match line {
                Some(line) if line.limit == limit => return Ok(Some(line)),
                Some(line) => line.with_limit(limit),
                None => CreditLine::new(limit),
            };
            let request = self
                .client
                .update_item()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(pk.clone(), sk)))
                .expression_attribute_names("#limit", keys::CREDIT_LIMIT)
                .expression_attribute_names("#available", keys::AVAILABLE_CREDIT)
                .expression_attribute_values(":limit", n(limit));
            let request = match line {
                // Purchases and payments may move `available` meanwhile: only the limit read must be unchanged.
                Some(line) => request
                    .update_expression("SET #limit = :limit, #available = #available + :delta")
                    .condition_expression("#limit = :old")
                    .expression_attribute_values(":delta", n(next.available - line.available))
                    .expression_attribute_values(":old", n(line.limit)),
                None => request.update_expression("SET #limit = :limit, #available = :limit").condition_expression(
                    if must_exist {
                        "attribute_exists(pk) AND attribute_not_exists(#limit)"
                    } else {
                        "attribute_not_exists(#limit)"
                    },
                ),
            };
            match request.send().await {
                Ok(_) => return Ok(Some(next)),
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
                {
                    continue;
                }
                Err(e) => return Err(classify("UpdateItem credit limit", e)),
            }
        }
        Err(StoreError::Unavailable("the credit limit kept changing; try again".into()))
    }
}
