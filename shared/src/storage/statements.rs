//! A statement's life after billing: made payable when its cycle's run finishes, paid (in part or in full),
//! failed, or overdue. Each change is one transaction with the credit line it moves and the hold it sets or
//! lifts, so a line and its statements never disagree.
//!
//! Items: a payment is recorded once per payment reference under `PAYMENT#{reference}` / `PAYMENT` (what was
//! paid, against which statement, and the receipt first answered), and again in its owner's partition
//! (`ACCOUNT#` or `AGENCY#`, sort key `PAYMENT#{reference}`), where reconcile sums an owner's payments.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::items::{Attributes, Item, held_statement_ids, n, s, statement_from_item, to_item};
use super::line_update::LineUpdate;
use super::outbox::outbox_put;
use super::{Store, StoreError, internal, keys};
use crate::domain::billing::{
    STATUS_OVERDUE, STATUS_PAID, STATUS_PAYMENT_FAILED, STATUS_PENDING_PAYMENT, Statement, StatementKind, StatementRef,
};
use crate::domain::events::{self, OutboxEvent};
use crate::domain::payment::PaymentEffect;
use crate::domain::time;
use crate::table::{PARTITION_KEY, SORT_KEY, STATEMENT_STATE_INDEX};

pub use crate::domain::payment::{Payment, PaymentReceipt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Recorded(PaymentReceipt),
    /// The same reference was recorded before for the same statement and amount: its first receipt.
    Replayed(PaymentReceipt),
    /// The reference was recorded before for another statement or amount.
    ReferenceReused,
    StatementNotFound,
    /// Still building (its cycle's run has not finished) or already paid.
    NotPayable {
        status: String,
    },
    /// More than is due.
    Overpayment {
        amount_due: Decimal,
    },
}

/// What [`Store::mark_unpaid`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpaidMark<'a> {
    /// Attempt `attempt` (1, 2, ...) at collecting the statement failed, for `reason`: Stripe's decline code or
    /// our own (`statement.payment_failed`'s `failureCode` is made of it).
    Failed { attempt: u32, reason: &'a str },
    /// The daily sweep found it unpaid past its due date.
    Overdue,
}

/// The reason an overdue statement is stored with.
const OVERDUE_REASON: &str = "unpaid past its due date";

/// On a client statement: the highest collection attempt whose failure is recorded (absent before the first).
const FAILED_ATTEMPT: &str = "failedAttempt";

/// How a failure or overdue mark ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    Marked,
    StatementNotFound,
    NotPayable { status: String },
}

/// A client statement paid off: how many statements held its account when read, and the events it emits.
struct PaidOff {
    held_count: usize,
    events: Vec<OutboxEvent>,
}

/// Attempts at a payment whose statement or account changed between our read and our write.
const ATTEMPTS: usize = 4;

/// The statement's (pk, sk).
fn statement_pk_sk(reference: &StatementRef) -> (String, String) {
    (keys::statement_pk(reference.kind, &reference.owner), keys::statement_sk(reference.cycle_end.as_str()))
}

fn statement_key(reference: &StatementRef) -> HashMap<String, AttributeValue> {
    let (pk, sk) = statement_pk_sk(reference);
    keys::key(pk, &sk)
}

/// The line a statement's payments release: the account's (client) or the agency's (agency).
fn line_key(reference: &StatementRef) -> HashMap<String, AttributeValue> {
    match reference.kind {
        StatementKind::Client => keys::key(keys::account(&reference.owner), keys::ACCOUNT_SK),
        StatementKind::Agency => keys::key(keys::agency_line(&reference.owner), keys::CREDIT_LINE_SK),
    }
}

/// `#status`, and the state index keys when the update removes them (DynamoDB refuses unused names).
fn statement_names(with_state_keys: bool) -> HashMap<String, String> {
    let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
    if with_state_keys {
        names.insert("#statePk".to_owned(), STATEMENT_STATE_INDEX.partition_key.to_owned());
        names.insert("#stateSk".to_owned(), STATEMENT_STATE_INDEX.sort_key.to_owned());
    }
    names
}

/// A transaction cancelled because a condition failed: what we read has moved, so read again. Conflicts and
/// throttling are the shared retry loop's to resend (`Store::transact_with_retries`).
fn any_condition_failed(reasons: &[CancellationReason]) -> Result<Option<()>, StoreError> {
    Ok(reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed")).then_some(()))
}

impl Store {
    /// One statement, without its purchase ids.
    pub async fn statement(&self, statement_id: &str) -> Result<Option<Statement>, StoreError> {
        let Some(reference) = StatementRef::parse(statement_id) else { return Ok(None) };
        let item = self
            .get_item(
                keys::statement_pk(reference.kind, &reference.owner),
                &keys::statement_sk(reference.cycle_end.as_str()),
            )
            .await?;
        item.map(|item| statement_from_item(&item)).transpose()
    }

    /// Records a payment against a statement, exactly once per payment reference: in one transaction the
    /// payment, the statement's amounts and status (`paid` when nothing is due), the owner's line released by
    /// the amount, and, when paid in full, the account's hold if this statement caused it.
    pub async fn record_payment(&self, payment: &Payment) -> Result<PaymentOutcome, StoreError> {
        let request_hash = payment.request_hash();
        for _ in 0..ATTEMPTS {
            // The statement first, then the reference: a payment commits both at once, so a delivery that finds
            // the statement already paid by its own reference (a concurrent delivery of it) sees that reference
            // recorded and answers the replay, never "not payable".
            let statement_item = match StatementRef::parse(&payment.statement_id) {
                Some(reference) => self.statement_item(&reference).await?.map(|item| (reference, item)),
                None => None,
            };
            if let Some(stored) = self.get_item(keys::payment_pk(&payment.payment_reference), keys::PAYMENT_SK).await? {
                if stored.string("requestHash")? != request_hash {
                    return Ok(PaymentOutcome::ReferenceReused);
                }
                let receipt: PaymentReceipt = serde_json::from_str(&stored.string("receipt")?)
                    .map_err(|e| internal("stored payment receipt", e))?;
                return Ok(PaymentOutcome::Replayed(receipt));
            }
            let Some((reference, item)) = statement_item else {
                return Ok(PaymentOutcome::StatementNotFound);
            };
            let statement = statement_from_item(&item)?;
            let due = item.decimal("amountDue")?.unwrap_or_default();
            let paid = item.decimal("amountPaid")?.unwrap_or_default();
            let (receipt, releases_hold) = match payment.effect(reference.kind, &statement.status, due, paid) {
                PaymentEffect::Applies { receipt, releases_hold } => (receipt, releases_hold),
                PaymentEffect::NotPayable { status } => return Ok(PaymentOutcome::NotPayable { status }),
                PaymentEffect::Overpayment { amount_due } => return Ok(PaymentOutcome::Overpayment { amount_due }),
            };
            let now = time::timestamp(std::time::SystemTime::now());
            // A client statement paid off: `statement.paid`, and `account.hold_lifted` when it was the last
            // statement holding the account. The account (its agency, its held set) is read for them; the line
            // update then commits only while the held set is as read, so the lift is decided exactly.
            let payoff = match releases_hold {
                true => {
                    let Some(account) = self.get_item(keys::account(&reference.owner), keys::ACCOUNT_SK).await? else {
                        return Ok(PaymentOutcome::StatementNotFound);
                    };
                    let held = held_statement_ids(&account)?;
                    let agency_id = account.string("agencyId")?;
                    let paid = events::statement_paid(&reference.owner, &agency_id, &statement, payment, &now);
                    let lifted = (held == [payment.statement_id.as_str()])
                        .then(|| events::account_hold_lifted(&reference.owner, &agency_id, &now));
                    Some(PaidOff {
                        held_count: held.len(),
                        events: [Some(paid), lifted].into_iter().flatten().collect(),
                    })
                }
                false => None,
            };
            let items = self.payment_items(
                payment,
                &reference,
                &statement.status,
                due,
                &receipt,
                &request_hash,
                payoff.as_ref(),
                &now,
            )?;
            // One token per reference, statement state read and write time: a resend of these very items is a
            // no-op, while a concurrent delivery of the same reference (another `updatedAt`) is another request
            // whose conditions fail, so it re-reads and answers the replay instead of `IdempotentParameterMismatch`.
            let token = hex::encode(
                &Sha256::digest(format!("payment\n{}\n{due}\n{}\n{now}", payment.payment_reference, statement.status))
                    [..16],
            );
            let moved = self
                .transact_with_retries("TransactWriteItems payment", &items, &token, true, any_condition_failed)
                .await?;
            match moved {
                None => {
                    tracing::info!(
                        statement_id = %payment.statement_id,
                        payment_reference = %payment.payment_reference,
                        amount = %payment.amount,
                        status = %receipt.status,
                        "payment recorded"
                    );
                    return Ok(PaymentOutcome::Recorded(receipt));
                }
                // The statement, the account's hold or the reference moved since we read them: read again.
                Some(()) => continue,
            }
        }
        Err(StoreError::Unavailable("the statement kept changing while the payment was recorded".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn payment_items(
        &self,
        payment: &Payment,
        reference: &StatementRef,
        status_read: &str,
        due_read: Decimal,
        receipt: &PaymentReceipt,
        request_hash: &str,
        payoff: Option<&PaidOff>,
        now: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building a payment", e);
        let mut record = to_item(
            "payment",
            &PaymentRecord { statement_id: &payment.statement_id, amount: payment.amount, paid_at: &payment.paid_at },
        )?;
        record.extend(keys::key(keys::payment_pk(&payment.payment_reference), keys::PAYMENT_SK));
        record.insert("requestHash".into(), s(request_hash));
        record.insert("receipt".into(), s(serde_json::to_string(receipt).map_err(|e| internal("payment receipt", e))?));
        let payment_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;

        let fully_paid = receipt.status == STATUS_PAID;
        // Paid in full: it leaves the unpaid index and keeps the instant of the payment that paid it off.
        let paid_off = if fully_paid { ", #paidAt = :paidAt REMOVE #statePk, #stateSk" } else { "" };
        let statement_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(statement_key(reference)))
            .update_expression(format!(
                "SET amountDue = :due, amountPaid = amountPaid + :amount, #status = :status, updatedAt = :now{paid_off}"
            ))
            .condition_expression("amountDue = :dueRead AND #status = :statusRead")
            .set_expression_attribute_names(Some(statement_names(fully_paid)))
            .expression_attribute_values(":due", n(receipt.amount_due))
            .expression_attribute_values(":amount", n(payment.amount))
            .expression_attribute_values(":status", s(&receipt.status))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":dueRead", n(due_read))
            .expression_attribute_values(":statusRead", s(status_read));
        let statement_update = if fully_paid {
            statement_update
                .expression_attribute_names("#paidAt", keys::STATEMENT_PAID_AT)
                .expression_attribute_values(":paidAt", s(&payment.paid_at))
        } else {
            statement_update
        }
        .build()
        .map_err(build)?;

        let line_update = LineUpdate::at(line_key(reference), payment.amount);
        let line_update = match payoff {
            Some(payoff) => line_update.releasing_hold(&payment.statement_id).held_as_read(payoff.held_count),
            None => line_update,
        };
        let line_update = line_update.build(&self.table_name)?;

        // The same payment in its owner's partition, where reconcile sums an owner's payments.
        let owner_copy = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(HashMap::from([
                (PARTITION_KEY.to_owned(), s(keys::statement_pk(reference.kind, &reference.owner))),
                (SORT_KEY.to_owned(), s(keys::payment_sk(&payment.payment_reference))),
                ("statementId".to_owned(), s(&payment.statement_id)),
                ("amount".to_owned(), n(payment.amount)),
                ("paidAt".to_owned(), s(&payment.paid_at)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;

        let mut items = vec![
            TransactWriteItem::builder().put(payment_put).build(),
            TransactWriteItem::builder().update(statement_update).build(),
            TransactWriteItem::builder().update(line_update).build(),
            TransactWriteItem::builder().put(owner_copy).build(),
        ];
        for event in payoff.map(|p| p.events.as_slice()).unwrap_or_default() {
            items.push(outbox_put(&self.table_name, event)?);
        }
        Ok(items)
    }

    /// Marks a client statement `payment_failed` (an attempt at collecting it failed) or `overdue` (the daily
    /// sweep found it unpaid past its due date), and puts its account on hold, in one transaction with its
    /// events: `statement.payment_failed` once per failed attempt (a later attempt's failure marks the failed
    /// statement again; the same attempt again, a webhook's replay or the webhook after collection's own answer,
    /// writes nothing), and `account.hold_started` when nothing held the account yet. Overdue is not a payment
    /// attempt: it emits only the hold.
    pub async fn mark_unpaid(&self, statement_id: &str, mark: UnpaidMark<'_>) -> Result<MarkOutcome, StoreError> {
        let (status, reason) = match mark {
            UnpaidMark::Failed { reason, .. } => (STATUS_PAYMENT_FAILED, reason),
            UnpaidMark::Overdue => (STATUS_OVERDUE, OVERDUE_REASON),
        };
        for _ in 0..ATTEMPTS {
            let Some(reference) = StatementRef::parse(statement_id).filter(|r| r.kind == StatementKind::Client) else {
                return Ok(MarkOutcome::StatementNotFound);
            };
            let Some(item) = self.statement_item(&reference).await? else {
                return Ok(MarkOutcome::StatementNotFound);
            };
            let statement = statement_from_item(&item)?;
            let failed_attempt_read = item.count(FAILED_ATTEMPT)?;
            // A failed statement may still fall overdue, or fail again on a later attempt, but never go back
            // from overdue to failed, nor from paid.
            let allowed = [STATUS_PENDING_PAYMENT, STATUS_PAYMENT_FAILED];
            let already = match mark {
                UnpaidMark::Overdue => statement.status == STATUS_OVERDUE,
                UnpaidMark::Failed { attempt, .. } => {
                    statement.status == STATUS_PAYMENT_FAILED && u64::from(attempt) <= failed_attempt_read
                }
            };
            if already {
                return Ok(MarkOutcome::Marked);
            }
            if !allowed.contains(&statement.status.as_str()) {
                return Ok(MarkOutcome::NotPayable { status: statement.status });
            }
            let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building an unpaid mark", e);
            let now = time::timestamp(std::time::SystemTime::now());
            // A failed statement stays in the unpaid index, so the sweep still finds it at its due date and
            // makes it overdue; an overdue one has nothing left to fall into and leaves the index.
            let statement_update = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(statement_key(&reference)))
                .set_expression_attribute_names(Some(statement_names(status == STATUS_OVERDUE)))
                .expression_attribute_values(":status", s(status))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":now", s(&now))
                .expression_attribute_values(":statusRead", s(&statement.status));
            let statement_update = match mark {
                UnpaidMark::Overdue => statement_update
                    .update_expression(
                        "SET #status = :status, unpaidReason = :reason, updatedAt = :now REMOVE #statePk, #stateSk",
                    )
                    .condition_expression("#status = :statusRead"),
                // The attempt number written with the failure is what makes each attempt's failure (and its
                // event) count once.
                UnpaidMark::Failed { attempt, .. } => statement_update
                    .update_expression(
                        "SET #status = :status, unpaidReason = :reason, updatedAt = :now, #failedAttempt = :attempt",
                    )
                    .condition_expression(
                        "#status = :statusRead AND (attribute_not_exists(#failedAttempt) OR #failedAttempt < :attempt)",
                    )
                    .expression_attribute_names("#failedAttempt", FAILED_ATTEMPT)
                    .expression_attribute_values(":attempt", n(attempt)),
            }
            .build()
            .map_err(build)?;
            // The account as it is (its agency, its held set): `account.hold_started` when nothing held it yet.
            // The hold below commits only while the held set has the size read, so that is decided exactly.
            let Some(account) = self.get_item(keys::account(&reference.owner), keys::ACCOUNT_SK).await? else {
                return Ok(MarkOutcome::StatementNotFound);
            };
            let held = held_statement_ids(&account)?;
            let agency_id = account.string("agencyId")?;
            let hold_started =
                held.is_empty().then(|| events::account_hold_started(&reference.owner, &agency_id, statement_id, &now));
            let payment_failed = match mark {
                UnpaidMark::Failed { attempt, reason } => Some(events::statement_payment_failed(
                    &reference.owner,
                    &agency_id,
                    statement_id,
                    attempt,
                    reason,
                    &now,
                )),
                UnpaidMark::Overdue => None,
            };
            // Every held statement is a member of the account's held set (ADD is idempotent): the account stays
            // on hold until each is paid in full, whatever order the marks and payments land in.
            let hold = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(line_key(&reference)))
                .update_expression("ADD #held :statement")
                .expression_attribute_names("#held", keys::HELD_STATEMENT_IDS)
                .expression_attribute_values(":statement", AttributeValue::Ss(vec![statement_id.to_owned()]));
            let hold = match held.len() {
                0 => hold.condition_expression("attribute_exists(pk) AND attribute_not_exists(#held)"),
                count => hold
                    .condition_expression("attribute_exists(pk) AND size(#held) = :heldCount")
                    .expression_attribute_values(":heldCount", n(count)),
            }
            .build()
            .map_err(build)?;
            let mut items = vec![
                TransactWriteItem::builder().update(statement_update).build(),
                TransactWriteItem::builder().update(hold).build(),
            ];
            for event in hold_started.iter().chain(&payment_failed) {
                items.push(outbox_put(&self.table_name, event)?);
            }
            // The write time is part of the token, as for payments: two deliveries of one failure never share a
            // token with different items.
            let attempt = match mark {
                UnpaidMark::Failed { attempt, .. } => attempt,
                UnpaidMark::Overdue => 0,
            };
            let token = hex::encode(
                &Sha256::digest(format!("{status}\n{statement_id}\n{attempt}\n{}\n{now}", statement.status))[..16],
            );
            let moved = self
                .transact_with_retries(
                    "TransactWriteItems unpaid statement",
                    &items,
                    &token,
                    true,
                    any_condition_failed,
                )
                .await?;
            match moved {
                None => {
                    tracing::warn!(statement_id, status, reason, attempt, "statement unpaid; account on hold");
                    return Ok(MarkOutcome::Marked);
                }
                Some(()) => continue,
            }
        }
        Err(StoreError::Unavailable(format!("{statement_id} kept changing while it was marked {status}")))
    }

    /// Client statements unpaid past their due date (`dueAt` before `now`), from the unpaid index.
    pub async fn overdue_statement_ids(&self, now: &str) -> Result<Vec<String>, StoreError> {
        let query = self.index_query(STATEMENT_STATE_INDEX, keys::UNPAID_PARTITION.to_owned(), Some(now));
        let items = self.partition_items("Query overdue statements", query).await?;
        items.iter().map(|item| item.string("statementId")).collect()
    }

    async fn statement_item(&self, reference: &StatementRef) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = statement_pk_sk(reference);
        self.get_item(pk, &sk).await
    }
}

/// The stored part of a payment beside its receipt.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentRecord<'a> {
    statement_id: &'a str,
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    paid_at: &'a str,
}
