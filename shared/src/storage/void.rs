//! The void of an unbilled purchase by its agency: one `TransactWriteItems` that undoes it exactly once. (The
//! agency's lists of purchases are in `agency_purchases`.)
//!
//! | item | pk | sk |
//! |---|---|---|
//! | void (ledger entry, type `void`) | `ACCOUNT#{accountId}` | `LEDGER#{createdAt}#{entryId}` |
//! | void idempotency key | `AGENCY#{agencyId}` | `IDEMPOTENCY#{key}`: keys are the agency's, as a purchase's are the account's |
//!
//! The void and the billing step each check the other's mark inside their own transaction: the step bills only
//! `billedTo… = false AND attribute_not_exists(voidedAt)`, the void only `billedToClient = false AND
//! billedToAgency = false AND attribute_not_exists(voidedAt)`. Whichever commits first wins; the other's
//! condition fails, so a purchase is never both voided and billed.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use sha2::{Digest, Sha256};

use super::agency_days::{DayChange, day_sums_update};
use super::balance_update::BalanceUpdate;
use super::idempotency::{IdempotencyClaim, KeyOwner, StoredIdempotency, idempotency_put, stored_idempotency};
use super::items::{Attributes, n, s, signed_balances};
use super::ledger::ledger_entry_put;
use super::line_update::LineUpdate;
use super::outbox::outbox_put;
use super::transact::condition_failed;
use super::{Store, StoreError, internal, keys};
use crate::domain::PurchaseRecord;
use crate::domain::events::{self, OutboxEvent};
use crate::domain::ledger::{LedgerEntry, Shortfall, shortfalls};
use crate::table::{CLIENT_UNBILLED_INDEX, UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX};

/// What a void asks for: the purchase as read just before (its lines and totals are immutable), who voids it,
/// when, and the entry id (fresh; also the transaction's token).
#[derive(Debug, Clone)]
pub struct VoidRequest<'a> {
    pub purchase: &'a PurchaseRecord,
    pub agency_id: &'a str,
    pub voided_by: &'a str,
    pub reason: Option<&'a str>,
    pub entry_id: &'a str,
    pub voided_at: &'a str,
    /// Whether the client's account has a line to give the total back to (read with the account).
    pub client_has_line: bool,
    pub idempotency: Option<&'a IdempotencyClaim>,
}

/// How a void ended when it did not fail outright. Every outcome but `Voided` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// Committed: the purchase as it now is.
    Voided(Box<PurchaseRecord>),
    /// The key was already claimed (and has not expired): the first void's request.
    IdempotencyKeyTaken(StoredIdempotency),
    /// No such purchase of this agency.
    NotFound,
    AlreadyVoided,
    /// Billed to the client or to the agency meanwhile (a billing run won the race).
    AlreadyBilled,
    /// The client has spent some of the credits: the first short type, and by how much.
    CreditsAlreadyUsed(Shortfall),
}

// Positions of the void transaction's items.
const PURCHASE: usize = 0;
const ACCOUNT: usize = 1;
const LEDGER_ENTRY: usize = 2;
const AGENCY_LINE: usize = 3;

impl Store {
    /// Voids an unbilled purchase in one `TransactWriteItems`: the purchase marked void and out of the three
    /// unbilled indexes, its credits taken back out of the balance (each type only while it stays >= 0), its
    /// total given back to the client's line and its total at cost to the agency's, a `void` ledger entry, and
    /// the idempotency key if any. Resent with the same token on conflicts and lost answers.
    pub async fn void_purchase(&self, request: &VoidRequest<'_>) -> Result<VoidOutcome, StoreError> {
        // An agency without a line (none in the seeds: a purchase needs one) has nothing to give back; the
        // transaction is sent again without that item rather than read the line first.
        let mut with_agency_line = true;
        // Made once: whichever of the two transactions commits carries this event id.
        let event = events::purchase_voided(request.purchase, request.voided_at);
        loop {
            let items = self.void_items(request, with_agency_line, &event)?;
            let key_at = items.len() - 1;
            let has_key = request.idempotency.is_some();
            // Another set of items needs another token: DynamoDB refuses a token reused for a different request.
            let token = if with_agency_line {
                request.entry_id.to_owned()
            } else {
                hex::encode(&Sha256::digest(format!("void without agency line\n{}", request.entry_id))[..16])
            };
            let outcome = self
                .transact_with_retries("TransactWriteItems void", &items, &token, true, |reasons| {
                    void_outcome(reasons, request, with_agency_line, has_key.then_some(key_at))
                })
                .await?;
            match outcome {
                Some(Conditions::AgencyHasNoLine) => with_agency_line = false,
                Some(Conditions::Refused(outcome)) => return Ok(outcome),
                None => return Ok(VoidOutcome::Voided(Box::new(voided(request)))),
            }
        }
    }

    /// The void's items: [0] the purchase, [1] the account, [2] the ledger entry, [3] the agency's line (when
    /// it has one), then the agency's day sums, its `purchase.voided` event, then the idempotency key (when sent;
    /// always last).
    fn void_items(
        &self,
        request: &VoidRequest<'_>,
        with_agency_line: bool,
        event: &OutboxEvent,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the void transaction", e);
        let purchase = request.purchase;
        let account_pk = keys::account(&purchase.account_id);

        // 0. The purchase: marked void and out of every unbilled index, only if it is this agency's, unbilled on
        //    both sides and not voided. Its agency-items keys stay: the agency still lists it, as voided.
        let mut set = vec!["#voidedAt = :at", "#voidedBy = :by"];
        let mut names = HashMap::from([
            ("#voidedAt".to_owned(), keys::VOIDED_AT.to_owned()),
            ("#voidedBy".to_owned(), keys::VOIDED_BY.to_owned()),
            ("#agency".to_owned(), "agencyId".to_owned()),
            ("#billedToClient".to_owned(), "billedToClient".to_owned()),
            ("#billedToAgency".to_owned(), "billedToAgency".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":at".to_owned(), s(request.voided_at)),
            (":by".to_owned(), s(request.voided_by)),
            (":agency".to_owned(), s(request.agency_id)),
            (":false".to_owned(), AttributeValue::Bool(false)),
        ]);
        if let Some(reason) = request.reason {
            set.push("#reason = :reason");
            names.insert("#reason".to_owned(), keys::VOID_REASON.to_owned());
            values.insert(":reason".to_owned(), s(reason));
        }
        let mut remove = Vec::new();
        for (i, index) in [UNBILLED_CLIENT_INDEX, UNBILLED_AGENCY_INDEX, CLIENT_UNBILLED_INDEX].iter().enumerate() {
            remove.push(format!("#ix{i}Pk, #ix{i}Sk"));
            names.insert(format!("#ix{i}Pk"), index.partition_key.to_owned());
            names.insert(format!("#ix{i}Sk"), index.sort_key.to_owned());
        }
        let purchase_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(account_pk.clone(), &keys::purchase_sk(&purchase.purchase_id))))
            .update_expression(format!("SET {} REMOVE {}", set.join(", "), remove.join(", ")))
            .condition_expression(
                "attribute_exists(pk) AND #agency = :agency AND #billedToClient = :false \
                 AND #billedToAgency = :false AND attribute_not_exists(#voidedAt)",
            )
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;

        // 1. The credits back out, each type only while the balance stays >= 0 (the client may have spent them);
        //    the total back on the client's line; one more ledger entry.
        let taken = purchase.credits_per_type();
        if taken.is_empty() {
            return Err(StoreError::Internal(format!("purchase {} has no lines", purchase.purchase_id)));
        }
        // Out of the purchase's agency's running unbilled sums for this client, too.
        let account_update = BalanceUpdate::new(taken.iter().map(|(t, q)| (*t, -i128::from(*q)))).unbilled_sums(
            &purchase.agency_id,
            -1,
            purchase.total,
            purchase.total_at_cost,
        );
        let account_update = if request.client_has_line {
            account_update
                .set("#available = #available + :total")
                .name("#available", keys::AVAILABLE_CREDIT)
                .value(":total", n(purchase.total))
        } else {
            account_update
        }
        .build(&self.table_name, &purchase.account_id)?;

        // 2. The void's ledger entry: the credits taken back, so balance = Σ entries stays true.
        let entry =
            LedgerEntry::for_void(purchase, request.entry_id, request.voided_at, request.reason, request.voided_by);
        let entry_put = ledger_entry_put(&self.table_name, &entry)?;

        let mut items = vec![
            TransactWriteItem::builder().update(purchase_update).build(),
            TransactWriteItem::builder().update(account_update).build(),
            TransactWriteItem::builder().put(entry_put).build(),
        ];

        // 3. The total at cost back on the agency's line.
        if with_agency_line {
            let agency_line =
                LineUpdate::agency(&purchase.agency_id, purchase.total_at_cost).build(&self.table_name)?;
            items.push(TransactWriteItem::builder().update(agency_line).build());
        }

        // 4. Out of the agency's sums of the purchase's own day, if it was counted in them (a purchase recorded
        //    before they existed was not); before the key, which stays last.
        if purchase.in_day_sums {
            items.push(day_sums_update(&self.table_name, purchase, DayChange::Voided)?);
        }

        // 5. The `purchase.voided` event (at price: the cost given back to the agency's line is not in it).
        items.push(outbox_put(&self.table_name, event)?);

        // 6. The agency's idempotency key, unless someone holds it and it has not expired.
        if let Some(claim) = request.idempotency {
            let owner = KeyOwner::Agency(request.agency_id);
            let put = idempotency_put(&self.table_name, owner, claim, &purchase.account_id, &purchase.purchase_id)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }
}

/// What a cancelled void transaction means.
enum Conditions {
    Refused(VoidOutcome),
    /// Only the agency line's condition failed: the agency has no line.
    AgencyHasNoLine,
}

/// Turns condition failures of the void transaction into an outcome; `None` if none failed.
fn void_outcome(
    reasons: &[CancellationReason],
    request: &VoidRequest<'_>,
    with_agency_line: bool,
    key_at: Option<usize>,
) -> Result<Option<Conditions>, StoreError> {
    let failed = |i: usize| condition_failed(reasons, i);
    let refused = |outcome| Ok(Some(Conditions::Refused(outcome)));
    // The key outranks everything: a replay must get the first answer, not "already voided".
    if let Some(at) = key_at
        && failed(at)
    {
        let item = reasons[at]
            .item()
            .ok_or_else(|| StoreError::Internal("idempotency condition failed without the stored item".into()))?;
        return refused(VoidOutcome::IdempotencyKeyTaken(stored_idempotency(item)?));
    }
    // Our entry already exists only if an earlier attempt of this very call committed (its answer lost and its
    // token forgotten): that is success.
    if failed(LEDGER_ENTRY) {
        return Ok(None);
    }
    if failed(PURCHASE) {
        let old = reasons[PURCHASE].item().filter(|item| !item.is_empty());
        return refused(match old {
            None => VoidOutcome::NotFound,
            Some(item) if item.optional_string("agencyId").as_deref() != Some(request.agency_id) => {
                VoidOutcome::NotFound
            }
            Some(item) if item.contains_key(keys::VOIDED_AT) => VoidOutcome::AlreadyVoided,
            Some(_) => VoidOutcome::AlreadyBilled,
        });
    }
    if failed(ACCOUNT) {
        let Some(account) = reasons[ACCOUNT].item().filter(|item| !item.is_empty()) else {
            return Err(StoreError::Internal(format!(
                "purchase {} of a missing account {}",
                request.purchase.purchase_id, request.purchase.account_id
            )));
        };
        let short = shortfalls(&signed_balances(account)?, &request.purchase.credits_per_type());
        return match short.into_iter().next() {
            Some(first) => refused(VoidOutcome::CreditsAlreadyUsed(first)),
            None => Err(StoreError::Internal(format!(
                "account {} refused a void for no visible reason",
                request.purchase.account_id
            ))),
        };
    }
    if with_agency_line && failed(AGENCY_LINE) {
        return Ok(Some(Conditions::AgencyHasNoLine));
    }
    Ok(None)
}

/// The purchase as the committed void left it.
fn voided(request: &VoidRequest<'_>) -> PurchaseRecord {
    PurchaseRecord {
        voided_at: Some(request.voided_at.to_owned()),
        voided_by: Some(request.voided_by.to_owned()),
        ..request.purchase.clone()
    }
}
