//! Credit lines: setting a client's limit (by the seed loader, or audited by its agency) or an agency's ceiling,
//! and reading an agency's line.
//!
//! A purchase moves `availableCredit` down inside its own transaction (`storage::purchases`) and a payment moves
//! it up (`storage::payments`); changing a limit moves it by the difference, under the condition that the limit
//! is still the one read, so a limit change and a purchase never lose each other's update.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use rust_decimal::Decimal;

use super::items::{Attributes, credit_line_from_item, n, s, to_item};
use super::outbox::outbox_put;
use super::transact::condition_failed;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::agency::CreditLimitAuditEntry;
use crate::domain::credit::CreditLine;
use crate::domain::events;

/// A limit change re-reads and tries again this often when a concurrent change got there first.
const LIMIT_CHANGE_ATTEMPTS: usize = 5;

/// The agency administrator changing a client's limit: the change is audited in the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct LimitChangeBy<'a> {
    pub agency_id: &'a str,
    /// The administrator's token `sub`.
    pub changed_by: &'a str,
    /// [`crate::domain::time::timestamp`] of the change.
    pub changed_at: &'a str,
}

/// How an agency's change of a client's limit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientLimitOutcome {
    /// No such account, or not a client of this agency: nothing was written.
    NotAClient,
    /// The limit already was this one: nothing was written, no audit entry.
    Unchanged(CreditLine),
    /// Written with its audit entry.
    Set { line: CreditLine, audit: CreditLimitAuditEntry },
}

/// What a limit change did.
enum LineWrite {
    Missing,
    Unchanged(CreditLine),
    /// With the audit entry written in the same transaction, when the change was audited.
    Written {
        after: CreditLine,
        audit: Option<CreditLimitAuditEntry>,
    },
}

impl Store {
    /// Sets an account's pay-later limit (at price); `None` if the account does not exist. The seed loader's
    /// way in; the agency API goes through [`Store::set_client_credit_limit`], the same change with an audit entry.
    pub async fn set_credit_limit(&self, account_id: &str, limit: Decimal) -> Result<Option<CreditLine>, StoreError> {
        match self.set_line_limit(keys::account(account_id), keys::ACCOUNT_SK, limit, true, None).await? {
            LineWrite::Missing => Ok(None),
            LineWrite::Unchanged(line) | LineWrite::Written { after: line, .. } => Ok(Some(line)),
        }
    }

    /// An agency administrator sets its client's limit: the limit change and its audit entry (old and new limit,
    /// who, when) in one `TransactWriteItems`, only while the account belongs to `by.agency_id`.
    pub async fn set_client_credit_limit(
        &self,
        account_id: &str,
        limit: Decimal,
        by: LimitChangeBy<'_>,
    ) -> Result<ClientLimitOutcome, StoreError> {
        match self.set_line_limit(keys::account(account_id), keys::ACCOUNT_SK, limit, true, Some(by)).await? {
            LineWrite::Missing => Ok(ClientLimitOutcome::NotAClient),
            LineWrite::Unchanged(line) => Ok(ClientLimitOutcome::Unchanged(line)),
            LineWrite::Written { after, audit: Some(audit) } => Ok(ClientLimitOutcome::Set { line: after, audit }),
            LineWrite::Written { audit: None, .. } => {
                Err(StoreError::Internal("an audited limit change was written without its entry".into()))
            }
        }
    }

    /// Sets an agency's ceiling at cost (what its clients together may owe the platform), creating its line.
    pub async fn set_agency_ceiling(&self, agency_id: &str, ceiling: Decimal) -> Result<CreditLine, StoreError> {
        match self.set_line_limit(keys::agency_line(agency_id), keys::CREDIT_LINE_SK, ceiling, false, None).await? {
            LineWrite::Unchanged(line) | LineWrite::Written { after: line, .. } => Ok(line),
            LineWrite::Missing => Err(StoreError::Internal(format!("agency line of {agency_id} not written"))),
        }
    }

    /// An agency's line, if it has one.
    pub async fn agency_line(&self, agency_id: &str) -> Result<Option<CreditLine>, StoreError> {
        let item = self.get_item(keys::agency_line(agency_id), keys::CREDIT_LINE_SK).await?;
        Ok(item.map(|item| credit_line_from_item(&item)).transpose()?.flatten())
    }

    /// Moves a line to `limit`: `available` by the difference (a line never given before starts with nothing
    /// owed). `must_exist`: the item must be there already (an account), else it is created (an agency line).
    /// `audited`: the account must belong to that agency, and the audit entry is written with the change.
    async fn set_line_limit(
        &self,
        pk: String,
        sk: &str,
        limit: Decimal,
        must_exist: bool,
        audited: Option<LimitChangeBy<'_>>,
    ) -> Result<LineWrite, StoreError> {
        for _ in 0..LIMIT_CHANGE_ATTEMPTS {
            let current = self.get_item(pk.clone(), sk).await?;
            let Some(current) = current.or_else(|| (!must_exist).then(HashMap::new)) else {
                return Ok(LineWrite::Missing);
            };
            if let Some(by) = &audited
                && current.optional_string("agencyId").as_deref() != Some(by.agency_id)
            {
                return Ok(LineWrite::Missing);
            }
            let line = credit_line_from_item(&current)?;
            let next = match line {
                Some(line) if line.limit == limit => return Ok(LineWrite::Unchanged(line)),
                Some(line) => line.with_limit(limit),
                None => CreditLine::new(limit),
            };
            let mut names = HashMap::from([
                ("#limit".to_owned(), keys::CREDIT_LIMIT.to_owned()),
                ("#available".to_owned(), keys::AVAILABLE_CREDIT.to_owned()),
            ]);
            let mut values = HashMap::from([(":limit".to_owned(), n(limit))]);
            let (update, mut condition) = match line {
                // Purchases and payments may move `available` meanwhile: only the limit read must be unchanged.
                Some(line) => {
                    values.insert(":delta".to_owned(), n(next.available - line.available));
                    values.insert(":old".to_owned(), n(line.limit));
                    ("SET #limit = :limit, #available = #available + :delta", "#limit = :old".to_owned())
                }
                None if must_exist => (
                    "SET #limit = :limit, #available = :limit",
                    "attribute_exists(pk) AND attribute_not_exists(#limit)".to_owned(),
                ),
                None => ("SET #limit = :limit, #available = :limit", "attribute_not_exists(#limit)".to_owned()),
            };
            let Some(by) = &audited else {
                let request = self
                    .client
                    .update_item()
                    .table_name(&self.table_name)
                    .set_key(Some(keys::key(pk.clone(), sk)))
                    .update_expression(update)
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values));
                match request.send().await {
                    Ok(_) => return Ok(LineWrite::Written { after: next, audit: None }),
                    Err(SdkError::ServiceError(e))
                        if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(classify("UpdateItem credit limit", e)),
                }
            };
            // The account may have moved to another agency since it was read: its new agency decides then.
            condition.push_str(" AND #agency = :agency");
            names.insert("#agency".to_owned(), "agencyId".to_owned());
            values.insert(":agency".to_owned(), s(by.agency_id));
            let audit = limit_audit_entry(&current.string("accountId")?, by, line.map(|line| line.limit), next.limit);
            let audit_sk = keys::audit_sk(keys::LIMIT_AUDIT_SK_PREFIX, by.changed_at);
            let items = limit_transaction(
                &self.table_name,
                keys::key(pk.clone(), sk),
                update,
                &condition,
                names,
                values,
                &audit,
                &audit_sk,
            )?;
            let token = audit_sk.rsplit('#').next().unwrap_or(&audit_sk).to_owned();
            let outcome = self
                .transact_with_retries("TransactWriteItems credit limit", &items, &token, true, |reasons| {
                    Ok(condition_failed(reasons, 0).then_some(()))
                })
                .await?;
            match outcome {
                None => return Ok(LineWrite::Written { after: next, audit: Some(audit) }),
                // Our own commit, answered late and resent: the entry is there.
                Some(()) if self.get_item(keys::agency(by.agency_id), &audit_sk).await?.is_some() => {
                    return Ok(LineWrite::Written { after: next, audit: Some(audit) });
                }
                Some(()) => continue,
            }
        }
        Err(StoreError::Unavailable("the credit limit kept changing; try again".into()))
    }
}

/// The limit Update (its condition includes the agency), the audit entry Put and its `credit_limit.changed`
/// event, in that order.
#[allow(clippy::too_many_arguments)]
fn limit_transaction(
    table_name: &str,
    key: HashMap<String, AttributeValue>,
    update: &str,
    condition: &str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    audit: &CreditLimitAuditEntry,
    audit_sk: &str,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    // Made with the attempt: a retried attempt re-reads the old limit, so its event is another (only one commits).
    let event = events::credit_limit_changed(audit);
    let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the credit limit change", e);
    let update = Update::builder()
        .table_name(table_name)
        .set_key(Some(key))
        .update_expression(update)
        .condition_expression(condition)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(build)?;
    let mut item = to_item("credit limit audit entry", audit)?;
    item.extend(keys::key(keys::agency(&audit.agency_id), audit_sk));
    let put = Put::builder()
        .table_name(table_name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(build)?;
    Ok(vec![
        TransactWriteItem::builder().update(update).build(),
        TransactWriteItem::builder().put(put).build(),
        outbox_put(table_name, &event)?,
    ])
}

fn limit_audit_entry(
    account_id: &str,
    by: &LimitChangeBy<'_>,
    old_limit: Option<Decimal>,
    new_limit: Decimal,
) -> CreditLimitAuditEntry {
    CreditLimitAuditEntry {
        agency_id: by.agency_id.to_owned(),
        account_id: account_id.to_owned(),
        changed_at: by.changed_at.to_owned(),
        changed_by: by.changed_by.to_owned(),
        old_limit,
        new_limit,
    }
}
