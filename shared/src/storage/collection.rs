//! Collection attempts: what `collect-payments` claims before it calls Stripe, kept on the statement item
//! itself, so one conditional write checks the statement's status, its amount due and the attempt together.
//!
//! Attributes (all absent until the first attempt): `collectAttempt` (1, 2, ...), `collectState`
//! (`in_flight` → `succeeded` | `failed` | `exhausted`), `collectAmount` (what the attempt charges),
//! `collectCustomer`, `collectClaimedAt` (the claim's lease), `collectIntentId` (Stripe's PaymentIntent, stored
//! as soon as Stripe answers), `collectReason` and `collectNextAt` (a failed attempt: when the next may start),
//! `collectFirstFailedAt` (the dunning schedule counts from it).
//!
//! Payable statements are found through the statement-state index: client statements in `UNPAID` (by due date)
//! and agency statements in `AGENCY_UNPAID` (made payable by `finish_cycle`); a statement paid in full leaves
//! its partition (`record_payment` removes the index keys). Never a Scan.

use aws_sdk_dynamodb::error::SdkError;
use rust_decimal::Decimal;

use super::items::{Attributes, Item, n, s};
use super::{Store, StoreError, classify, keys};
use crate::domain::billing::{STATUS_PAYMENT_FAILED, STATUS_PENDING_PAYMENT, StatementKind, StatementRef};
use crate::table::STATEMENT_STATE_INDEX;

pub const STATE_IN_FLIGHT: &str = "in_flight";
pub const STATE_SUCCEEDED: &str = "succeeded";
pub const STATE_FAILED: &str = "failed";
/// Failed, and no attempt is left: it stays `payment_failed` until paid another way or swept `overdue`.
pub const STATE_EXHAUSTED: &str = "exhausted";

/// The account or agency attribute naming its Stripe customer. Never part of any API answer.
pub const STRIPE_CUSTOMER_ID: &str = "stripeCustomerId";

/// A statement collection may charge, as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayableStatement {
    pub statement_id: String,
    pub reference: StatementRef,
    pub status: String,
    /// As stored (not rounded): collection refuses anything that is not whole cents.
    pub amount_due: Decimal,
    pub currency: String,
    pub attempt: Option<Attempt>,
}

/// The latest collection attempt of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub state: String,
    pub amount: Decimal,
    pub customer: Option<String>,
    pub claimed_at: String,
    pub intent_id: Option<String>,
    pub reason: Option<String>,
    pub next_at: Option<String>,
    pub first_failed_at: Option<String>,
}

/// How an attempt ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd<'a> {
    Succeeded,
    Failed { reason: &'a str, next_at: Option<&'a str>, failed_at: &'a str },
}

fn attempt_from_item(item: &Item) -> Result<Option<Attempt>, StoreError> {
    let number = item.count("collectAttempt")?;
    if number == 0 {
        return Ok(None);
    }
    Ok(Some(Attempt {
        number: u32::try_from(number).map_err(|_| StoreError::Internal(format!("collectAttempt {number}")))?,
        state: item.string("collectState")?,
        amount: item.decimal("collectAmount")?.unwrap_or_default(),
        customer: item.optional_string("collectCustomer"),
        claimed_at: item.string("collectClaimedAt")?,
        intent_id: item.optional_string("collectIntentId"),
        reason: item.optional_string("collectReason"),
        next_at: item.optional_string("collectNextAt"),
        first_failed_at: item.optional_string("collectFirstFailedAt"),
    }))
}

fn payable_from_item(item: &Item) -> Result<Option<PayableStatement>, StoreError> {
    let statement_id = item.string("statementId")?;
    let Some(reference) = StatementRef::parse(&statement_id) else {
        return Err(StoreError::Internal(format!("statement id {statement_id:?}")));
    };
    Ok(Some(PayableStatement {
        statement_id,
        reference,
        status: item.string("status")?,
        amount_due: item.decimal("amountDue")?.unwrap_or_default(),
        currency: item.string("currency")?,
        attempt: attempt_from_item(item)?,
    }))
}

impl Store {
    /// Every payable statement, client and agency, from the statement-state index (eventually consistent:
    /// each claim re-checks the statement).
    pub async fn payable_statements(&self) -> Result<Vec<PayableStatement>, StoreError> {
        let mut statements = Vec::new();
        for partition in [keys::UNPAID_PARTITION, keys::AGENCY_UNPAID_PARTITION] {
            let query = self.index_query(STATEMENT_STATE_INDEX, partition.to_owned(), None);
            for item in self.partition_items("Query payable statements", query).await? {
                statements.extend(payable_from_item(&item)?);
            }
        }
        Ok(statements)
    }

    /// The Stripe customer of a statement's owner: the account's (client) or the agency's (agency statement).
    pub async fn stripe_customer(&self, reference: &StatementRef) -> Result<Option<String>, StoreError> {
        let item = match reference.kind {
            StatementKind::Client => self.get_item(keys::account(&reference.owner), keys::ACCOUNT_SK).await?,
            StatementKind::Agency => self.get_item(keys::agency_line(&reference.owner), keys::CREDIT_LINE_SK).await?,
        };
        Ok(item.and_then(|item| item.optional_string(STRIPE_CUSTOMER_ID)))
    }

    /// Claims attempt `number` (the previous plus one) of a statement: only if it is still payable with the
    /// amount due we read, and its previous attempt (if any) failed and may be retried by `now`. Returns whether
    /// this caller won the claim; only the winner calls Stripe.
    pub async fn claim_new_attempt(
        &self,
        statement: &PayableStatement,
        number: u32,
        customer: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = statement_key(&statement.reference);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk, &sk)))
            .update_expression(
                "SET collectAttempt = :number, collectState = :inFlight, collectAmount = :due, \
                 collectCustomer = :customer, collectClaimedAt = :now \
                 REMOVE collectIntentId, collectReason, collectNextAt",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(STATUS_PENDING_PAYMENT))
            .expression_attribute_values(":failedStatus", s(STATUS_PAYMENT_FAILED))
            .expression_attribute_values(":due", n(statement.amount_due))
            .expression_attribute_values(":number", n(number))
            .expression_attribute_values(":inFlight", s(STATE_IN_FLIGHT))
            .expression_attribute_values(":customer", s(customer))
            .expression_attribute_values(":now", s(now));
        let payable = "#status IN (:pending, :failedStatus) AND amountDue = :due";
        request = if number == 1 {
            request.condition_expression(format!("{payable} AND attribute_not_exists(collectAttempt)"))
        } else {
            request
                .condition_expression(format!(
                    "{payable} AND collectAttempt = :previous AND collectState = :failed AND collectNextAt <= :now"
                ))
                .expression_attribute_values(":previous", n(number - 1))
                .expression_attribute_values(":failed", s(STATE_FAILED))
        };
        conditional(request.send().await, "UpdateItem claim collection attempt")
    }

    /// Takes over attempt `number` left `in_flight` by a run that stopped (its claim older than
    /// `stale_before`): the same attempt, so the same Idempotency-Key.
    pub async fn resume_attempt(
        &self,
        statement: &PayableStatement,
        number: u32,
        stale_before: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = statement_key(&statement.reference);
        let request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk, &sk)))
            .update_expression("SET collectClaimedAt = :now")
            .condition_expression(
                "#status IN (:pending, :failedStatus) AND collectAttempt = :number AND collectState = :inFlight \
                 AND collectClaimedAt <= :staleBefore",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(STATUS_PENDING_PAYMENT))
            .expression_attribute_values(":failedStatus", s(STATUS_PAYMENT_FAILED))
            .expression_attribute_values(":number", n(number))
            .expression_attribute_values(":inFlight", s(STATE_IN_FLIGHT))
            .expression_attribute_values(":staleBefore", s(stale_before))
            .expression_attribute_values(":now", s(now));
        conditional(request.send().await, "UpdateItem resume collection attempt")
    }

    /// Stores Stripe's PaymentIntent id on the attempt as soon as Stripe answers, before the outcome is
    /// recorded: a run that stops after this asks Stripe for that intent instead of charging again.
    pub async fn store_attempt_intent(
        &self,
        reference: &StatementRef,
        number: u32,
        intent_id: &str,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = statement_key(reference);
        let request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk, &sk)))
            .update_expression("SET collectIntentId = :intent")
            .condition_expression("collectAttempt = :number AND collectState = :inFlight")
            .expression_attribute_values(":number", n(number))
            .expression_attribute_values(":inFlight", s(STATE_IN_FLIGHT))
            .expression_attribute_values(":intent", s(intent_id));
        conditional(request.send().await, "UpdateItem collection intent")
    }

    /// Ends attempt `number` (after its outcome went through `record_payment` or `mark_unpaid`).
    pub async fn finish_attempt(
        &self,
        reference: &StatementRef,
        number: u32,
        end: AttemptEnd<'_>,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = statement_key(reference);
        let request = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(pk, &sk)))
            .condition_expression("collectAttempt = :number AND collectState = :inFlight")
            .expression_attribute_values(":number", n(number))
            .expression_attribute_values(":inFlight", s(STATE_IN_FLIGHT));
        let request = match end {
            AttemptEnd::Succeeded => request
                .update_expression("SET collectState = :state REMOVE collectNextAt")
                .expression_attribute_values(":state", s(STATE_SUCCEEDED)),
            AttemptEnd::Failed { reason, next_at: Some(next_at), failed_at } => request
                .update_expression(
                    "SET collectState = :state, collectReason = :reason, collectNextAt = :next, \
                     collectFirstFailedAt = if_not_exists(collectFirstFailedAt, :failedAt)",
                )
                .expression_attribute_values(":state", s(STATE_FAILED))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":next", s(next_at))
                .expression_attribute_values(":failedAt", s(failed_at)),
            AttemptEnd::Failed { reason, next_at: None, failed_at } => request
                .update_expression(
                    "SET collectState = :state, collectReason = :reason, \
                     collectFirstFailedAt = if_not_exists(collectFirstFailedAt, :failedAt) REMOVE collectNextAt",
                )
                .expression_attribute_values(":state", s(STATE_EXHAUSTED))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":failedAt", s(failed_at)),
        };
        conditional(request.send().await, "UpdateItem finish collection attempt")
    }

    /// Sets (or replaces) the Stripe customer of an agency, on its credit line item (`AGENCYLINE#`), where
    /// collection reads it; a missing line is created with the default ceiling ([`Store::write_agency`]).
    pub async fn set_agency_stripe_customer(&self, agency_id: &str, customer: &str) -> Result<(), StoreError> {
        self.write_agency(agency_id, Some(customer), crate::domain::credit::DEFAULT_AGENCY_CEILING_AT_COST, None)
            .await
            .map(|_| ())
    }
}

fn statement_key(reference: &StatementRef) -> (String, String) {
    (keys::statement_pk(reference.kind, &reference.owner), keys::statement_sk(reference.cycle_end.as_str()))
}

/// A conditional update: `Ok(true)` written, `Ok(false)` its condition failed.
fn conditional<T>(
    result: Result<
        T,
        SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
    what: &str,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
        Err(e) => Err(classify(what, e)),
    }
}
