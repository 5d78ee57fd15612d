//! The agency's side of its clients' purchases: pages of them (the agency's whole book, or one client's), and
//! the void, one `TransactWriteItems` that undoes an unbilled purchase exactly once.
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

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::history::{PurchaseKey, PurchasePage};
use super::items::{Attributes, Item, from_item, n, s, signed_balances};
use super::ledger::ledger_entry_put;
use super::purchases::idempotency_put;
use super::transact::condition_failed;
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::ledger::{EntryType, LedgerEntry, Quantities, Shortfall, shortfalls};
use crate::domain::{PurchaseRecord, is_valid_account_id};
use crate::table::{
    AGENCY_INDEX, AGENCY_PURCHASE_PREFIX, CLIENT_UNBILLED_INDEX, PARTITION_KEY, SORT_KEY, UNBILLED_AGENCY_INDEX,
    UNBILLED_CLIENT_INDEX,
};

/// Why the void happened, when the administrator said (at most this many characters).
pub const MAX_VOID_REASON_CHARS: usize = 500;

const VOID_REASON: &str = "voidReason";

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
    pub idempotency: Option<&'a VoidIdempotencyClaim>,
}

/// Claims an agency's `Idempotency-Key` in the void's own transaction.
#[derive(Debug, Clone)]
pub struct VoidIdempotencyClaim {
    pub key: String,
    pub request_hash: String,
    pub now_epoch_seconds: u64,
    pub expires_at_epoch_seconds: u64,
}

/// What an earlier void stored under an agency's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVoidIdempotency {
    pub account_id: String,
    pub purchase_id: String,
    pub request_hash: String,
}

/// How a void ended when it did not fail outright. Every outcome but `Voided` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidOutcome {
    /// Committed: the purchase as it now is.
    Voided(Box<PurchaseRecord>),
    /// The key was already claimed (and has not expired): the first void's request.
    IdempotencyKeyTaken(StoredVoidIdempotency),
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
    /// What this agency stored under an idempotency key, if it has not expired.
    pub async fn void_idempotency(
        &self,
        agency_id: &str,
        key: &str,
        now_epoch_seconds: u64,
    ) -> Result<Option<StoredVoidIdempotency>, StoreError> {
        let item = self.live_idempotency_item(keys::agency(agency_id), key, now_epoch_seconds).await?;
        item.map(|item| stored_void_idempotency(&item)).transpose()
    }

    /// Voids an unbilled purchase in one `TransactWriteItems`: the purchase marked void and out of the three
    /// unbilled indexes, its credits taken back out of the balance (each type only while it stays >= 0), its
    /// total given back to the client's line and its total at cost to the agency's, a `void` ledger entry, and
    /// the idempotency key if any. Resent with the same token on conflicts and lost answers.
    pub async fn void_purchase(&self, request: &VoidRequest<'_>) -> Result<VoidOutcome, StoreError> {
        // An agency without a line (none in the seeds: a purchase needs one) has nothing to give back; the
        // transaction is sent again without that item rather than read the line first.
        let mut with_agency_line = true;
        loop {
            let items = self.void_items(request, with_agency_line)?;
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
    /// it has one), then the idempotency key (when sent).
    fn void_items(
        &self,
        request: &VoidRequest<'_>,
        with_agency_line: bool,
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
            names.insert("#reason".to_owned(), VOID_REASON.to_owned());
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
        let taken = taken_quantities(purchase);
        if taken.is_empty() {
            return Err(StoreError::Internal(format!("purchase {} has no lines", purchase.purchase_id)));
        }
        let mut adds = Vec::new();
        let mut conditions = vec!["attribute_exists(pk)".to_owned()];
        let mut names = HashMap::from([("#entries".to_owned(), keys::LEDGER_ENTRY_COUNT.to_owned())]);
        let mut values = HashMap::from([(":one".to_owned(), n(1))]);
        for (i, (credit_type, quantity)) in taken.iter().enumerate() {
            adds.push(format!("#b{i} :minus{i}"));
            conditions.push(format!("#b{i} >= :q{i}"));
            names.insert(format!("#b{i}"), keys::balance_attribute(*credit_type).to_owned());
            values.insert(format!(":q{i}"), n(quantity));
            values.insert(format!(":minus{i}"), n(-i128::from(*quantity)));
        }
        // Out of the purchase's agency's running unbilled sums for this client.
        let [count, at_price, at_cost] = keys::unbilled_sums_attributes(&purchase.agency_id);
        names.extend([("#uCount".to_owned(), count), ("#uPrice".to_owned(), at_price), ("#uCost".to_owned(), at_cost)]);
        values.insert(":minusOne".to_owned(), n(-1));
        values.insert(":minusTotal".to_owned(), n(-purchase.total));
        values.insert(":minusCost".to_owned(), n(-purchase.total_at_cost));
        adds.extend(["#uCount :minusOne".to_owned(), "#uPrice :minusTotal".to_owned(), "#uCost :minusCost".to_owned()]);
        let mut expression = format!("ADD {}, #entries :one", adds.join(", "));
        if request.client_has_line {
            expression.push_str(" SET #available = #available + :total");
            names.insert("#available".to_owned(), keys::AVAILABLE_CREDIT.to_owned());
            values.insert(":total".to_owned(), n(purchase.total));
        }
        let account_update = Update::builder()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(account_pk.clone(), keys::ACCOUNT_SK)))
            .update_expression(expression)
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;

        // 2. The void's ledger entry: the credits taken back, so balance = Σ entries stays true.
        let entry_put = ledger_entry_put(&self.table_name, &void_entry(request))?;

        let mut items = vec![
            TransactWriteItem::builder().update(purchase_update).build(),
            TransactWriteItem::builder().update(account_update).build(),
            TransactWriteItem::builder().put(entry_put).build(),
        ];

        // 3. The total at cost back on the agency's line.
        if with_agency_line {
            let agency_line = Update::builder()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(keys::agency_line(&purchase.agency_id), keys::CREDIT_LINE_SK)))
                .update_expression("SET #available = #available + :cost")
                .condition_expression("attribute_exists(#available)")
                .expression_attribute_names("#available", keys::AVAILABLE_CREDIT)
                .expression_attribute_values(":cost", n(purchase.total_at_cost))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().update(agency_line).build());
        }

        // 4. The agency's idempotency key, unless someone holds it and it has not expired.
        if let Some(claim) = request.idempotency {
            let attributes = [
                ("agencyId", s(request.agency_id)),
                ("accountId", s(&purchase.account_id)),
                ("purchaseId", s(&purchase.purchase_id)),
                ("requestHash", s(&claim.request_hash)),
            ];
            let put = idempotency_put(
                &self.table_name,
                keys::agency(request.agency_id),
                &claim.key,
                attributes,
                claim.expires_at_epoch_seconds,
                claim.now_epoch_seconds,
            )?;
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
        return refused(VoidOutcome::IdempotencyKeyTaken(stored_void_idempotency(item)?));
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
        let short = shortfalls(&signed_balances(account)?, &taken_quantities(request.purchase));
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

/// The credits a purchase put in, per type (what a void takes back out).
fn taken_quantities(purchase: &PurchaseRecord) -> Quantities {
    let mut taken = Quantities::new();
    for line in &purchase.lines {
        *taken.entry(line.credit_type).or_default() += line.quantity;
    }
    taken
}

/// The void's ledger entry: every bought type negative, the purchase as its reference, the administrator as
/// its actor (never shown to the client).
fn void_entry(request: &VoidRequest<'_>) -> LedgerEntry {
    let purchase = request.purchase;
    LedgerEntry {
        entry_id: request.entry_id.to_owned(),
        account_id: purchase.account_id.clone(),
        entry_type: EntryType::Void,
        created_at: request.voided_at.to_owned(),
        quantities: taken_quantities(purchase)
            .into_iter()
            .map(|(t, q)| (t, -i64::try_from(q).unwrap_or(i64::MAX)))
            .collect(),
        reason: request.reason.map(str::to_owned),
        reference: Some(purchase.purchase_id.clone()),
        consumption_id: None,
        purchase_id: Some(purchase.purchase_id.clone()),
        actor: Some(request.voided_by.to_owned()),
    }
}

/// The purchase as the committed void left it.
fn voided(request: &VoidRequest<'_>) -> PurchaseRecord {
    PurchaseRecord {
        voided_at: Some(request.voided_at.to_owned()),
        voided_by: Some(request.voided_by.to_owned()),
        ..request.purchase.clone()
    }
}

fn stored_void_idempotency(item: &Item) -> Result<StoredVoidIdempotency, StoreError> {
    Ok(StoredVoidIdempotency {
        account_id: item.string("accountId")?,
        purchase_id: item.string("purchaseId")?,
        request_hash: item.string("requestHash")?,
    })
}

/// A position in an agency's purchases (the `agency-items` index): the index keys and the table keys of the
/// page's last purchase, as DynamoDB wants them back to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyPurchasePosition {
    #[serde(rename = "agencyPk")]
    pub agency_pk: String,
    #[serde(rename = "agencySk")]
    pub agency_sk: String,
    pub pk: String,
    pub sk: String,
}

impl AgencyPurchasePosition {
    fn of(purchase: &PurchaseRecord) -> AgencyPurchasePosition {
        AgencyPurchasePosition {
            agency_pk: keys::agency(&purchase.agency_id),
            agency_sk: format!("{AGENCY_PURCHASE_PREFIX}{}#{}", purchase.created_at, purchase.purchase_id),
            pk: keys::account(&purchase.account_id),
            sk: keys::purchase_sk(&purchase.purchase_id),
        }
    }

    /// The index's `ExclusiveStartKey`: its keys and the table's.
    fn index_key(&self) -> Item {
        HashMap::from([
            (AGENCY_INDEX.partition_key.to_owned(), s(&self.agency_pk)),
            (AGENCY_INDEX.sort_key.to_owned(), s(&self.agency_sk)),
            (PARTITION_KEY.to_owned(), s(&self.pk)),
            (SORT_KEY.to_owned(), s(&self.sk)),
        ])
    }

    /// Whether this is the position of a purchase in `agency_id`'s partition of the index:
    /// `PURCHASE#{timestamp}#{uuid}` with the table's one timestamp format and a canonical UUID, and the
    /// table key of that same purchase. Anything else never reaches a Query.
    pub fn is_in_agency(&self, agency_id: &str) -> bool {
        let canonical = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
        let Some(rest) = self.agency_sk.strip_prefix(AGENCY_PURCHASE_PREFIX) else { return false };
        let Some((at, id)) = rest.split_once('#') else { return false };
        self.agency_pk == keys::agency(agency_id)
            && at.len() == 24
            && humantime::parse_rfc3339(at).is_ok()
            && canonical(id)
            && self.sk == keys::purchase_sk(id)
            && self.pk.strip_prefix("ACCOUNT#").is_some_and(is_valid_account_id)
    }
}

/// One page of an agency's purchases, newest first.
#[derive(Debug, Clone)]
pub struct AgencyPurchasePage {
    pub purchases: Vec<PurchaseRecord>,
    pub next: Option<AgencyPurchasePosition>,
}

/// A position in the agency's own book (the `agency-items` index) filtered to one account that is not the
/// agency's client now: the filtered account and the index and table keys where the reading stopped. The account
/// is part of it so a cursor of one list never continues another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInBookPosition {
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(rename = "agencyPk")]
    pub agency_pk: String,
    #[serde(rename = "agencySk")]
    pub agency_sk: String,
    pub pk: String,
    pub sk: String,
}

impl ClientInBookPosition {
    fn in_book(&self) -> AgencyPurchasePosition {
        AgencyPurchasePosition {
            agency_pk: self.agency_pk.clone(),
            agency_sk: self.agency_sk.clone(),
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }

    /// Whether this is a position in `agency_id`'s book filtered to `account_id`. The purchase it names may be
    /// any client's: reading stops wherever the budget runs out, on a purchase the filter dropped or not.
    pub fn is_in_agency_for(&self, agency_id: &str, account_id: &str) -> bool {
        self.account_id == account_id && self.in_book().is_in_agency(agency_id)
    }
}

/// One page of an agency's purchases of one account that is not its client now, newest first.
#[derive(Debug, Clone)]
pub struct ClientInBookPage {
    pub purchases: Vec<PurchaseRecord>,
    pub next: Option<ClientInBookPosition>,
}

/// The most items one request of a filtered list may read, whatever `limit`: a request's work is bounded by
/// this, never by the size of a partition (another agency's client may have 10^5 purchases).
pub const MAX_ITEMS_READ_PER_REQUEST: usize = 400;

/// Items a filtered page of `limit` may read: four pages' worth (the filter rarely drops anything), at most
/// [`MAX_ITEMS_READ_PER_REQUEST`]. When it runs out the page ends short, with a cursor where reading stopped.
pub fn items_read_budget(limit: usize) -> usize {
    (limit.saturating_add(1).saturating_mul(4)).min(MAX_ITEMS_READ_PER_REQUEST)
}

/// How a budgeted, filtered read ended: up to `limit + 1` matching items, and where reading stopped if the
/// budget ran out first (`None`: the partition ended, or `limit + 1` matched).
struct Budgeted {
    matched: Vec<Item>,
    stopped_at: Option<Item>,
}

/// Reads `query` (a filtered Query; `Limit` and `ExclusiveStartKey` are set here) page by page, the first asking
/// for `limit + 1` items and each next for twice as many, until `limit + 1` match, the partition ends, or
/// [`items_read_budget`] items were read.
async fn budgeted_read(
    what: &str,
    query: impl Fn() -> QueryFluentBuilder,
    limit: usize,
    mut start: Option<Item>,
) -> Result<Budgeted, StoreError> {
    let budget = items_read_budget(limit);
    let (mut read, mut ask) = (0, limit + 1);
    let mut matched = Vec::with_capacity(limit + 1);
    loop {
        let ask_now = ask.min(budget - read);
        let output = query()
            .limit(i32::try_from(ask_now).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        read += usize::try_from(output.scanned_count).map_or(ask_now, |scanned| scanned.min(ask_now));
        for item in output.items.unwrap_or_default() {
            if matched.len() > limit {
                break;
            }
            matched.push(item);
        }
        match output.last_evaluated_key {
            Some(_) if matched.len() > limit => return Ok(Budgeted { matched, stopped_at: None }),
            Some(key) if read >= budget => return Ok(Budgeted { matched, stopped_at: Some(key) }),
            Some(key) => start = Some(key),
            None => return Ok(Budgeted { matched, stopped_at: None }),
        }
        ask = ask.saturating_mul(2);
    }
}

impl Store {
    /// Up to `limit` of the agency's clients' purchases (billed, unbilled and voided), newest first, after
    /// `after`: one Query of the agency's partition of the `agency-items` index (no filter, so `Limit` is exact).
    pub async fn agency_purchases_page(
        &self,
        agency_id: &str,
        limit: usize,
        after: Option<&AgencyPurchasePosition>,
    ) -> Result<AgencyPurchasePage, StoreError> {
        if after.is_some_and(|position| !position.is_in_agency(agency_id)) {
            return Err(StoreError::Internal("a purchases position of another agency reached storage".into()));
        }
        let start = after.map(AgencyPurchasePosition::index_key);
        let output = self
            .client
            .query()
            .table_name(&self.table_name)
            .index_name(AGENCY_INDEX.name)
            .key_condition_expression("#agencyPk = :agencyPk AND begins_with(#agencySk, :prefix)")
            .expression_attribute_names("#agencyPk", AGENCY_INDEX.partition_key)
            .expression_attribute_names("#agencySk", AGENCY_INDEX.sort_key)
            .expression_attribute_values(":agencyPk", s(keys::agency(agency_id)))
            .expression_attribute_values(":prefix", s(AGENCY_PURCHASE_PREFIX))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Query agency purchases", e))?;
        let mut purchases = Vec::with_capacity(limit + 1);
        for item in output.items.unwrap_or_default() {
            let purchase: PurchaseRecord = from_item("purchase", item)?;
            // The partition decides the agency already; checking it too means no agency ever sees another's costs.
            if purchase.agency_id != agency_id {
                return Err(StoreError::Internal(format!("a foreign purchase in the partition of {agency_id}")));
            }
            purchases.push(purchase);
        }
        let more = purchases.len() > limit;
        purchases.truncate(limit);
        let next = if more { purchases.last().map(AgencyPurchasePosition::of) } else { None };
        Ok(AgencyPurchasePage { purchases, next })
    }

    /// Up to `limit` of a current client's purchases made through this agency, newest first, after `after`: the
    /// account's own partition (`PURCHASE#{uuidv7}`, time-ordered), filtered to `agencyId = :agency` (the filter
    /// drops only purchases made before the account joined this agency). Reads at most [`items_read_budget`]
    /// items: a page may end short of `limit` with `next` where reading stopped.
    pub async fn client_purchases_for_agency(
        &self,
        agency_id: &str,
        account_id: &str,
        limit: usize,
        after: Option<&PurchaseKey>,
    ) -> Result<PurchasePage, StoreError> {
        if after.is_some_and(|key| !key.is_purchase_of(account_id)) {
            return Err(StoreError::Internal("a purchases position of another account reached storage".into()));
        }
        let query = || {
            self.partition_query(keys::account(account_id), keys::PURCHASE_SK_PREFIX)
                .scan_index_forward(false)
                .filter_expression("#agency = :agency")
                .expression_attribute_names("#agency", "agencyId")
                .expression_attribute_values(":agency", s(agency_id))
        };
        let start = after.map(|k| keys::key(k.pk.clone(), &k.sk));
        let read = budgeted_read("Query client purchases", query, limit, start).await?;
        let mut purchases: Vec<PurchaseRecord> =
            read.matched.into_iter().map(|item| from_item("purchase", item)).collect::<Result<_, _>>()?;
        let next = if purchases.len() > limit {
            purchases.truncate(limit);
            purchases.last().map(|p| PurchaseKey::of(&p.account_id, &p.purchase_id))
        } else {
            match read.stopped_at {
                Some(key) => Some(PurchaseKey { pk: key.string(PARTITION_KEY)?, sk: key.string(SORT_KEY)? }),
                None => None,
            }
        };
        Ok(PurchasePage { purchases, next })
    }

    /// Up to `limit` of this agency's purchases of an account that is not its client now (it left, or never
    /// was, or does not exist), newest first, after `after`: the agency's own book (`agency-items`) filtered to
    /// `accountId = :account`. The work depends only on the agency's own book, never on that account's history
    /// under another agency; at most [`items_read_budget`] items, so a page may be empty with a `next`.
    pub async fn client_purchases_in_book(
        &self,
        agency_id: &str,
        account_id: &str,
        limit: usize,
        after: Option<&ClientInBookPosition>,
    ) -> Result<ClientInBookPage, StoreError> {
        if after.is_some_and(|position| !position.is_in_agency_for(agency_id, account_id)) {
            return Err(StoreError::Internal("a purchases position of another list reached storage".into()));
        }
        let query = || {
            self.client
                .query()
                .table_name(&self.table_name)
                .index_name(AGENCY_INDEX.name)
                .key_condition_expression("#agencyPk = :agencyPk AND begins_with(#agencySk, :prefix)")
                .filter_expression("#account = :account")
                .expression_attribute_names("#agencyPk", AGENCY_INDEX.partition_key)
                .expression_attribute_names("#agencySk", AGENCY_INDEX.sort_key)
                .expression_attribute_names("#account", "accountId")
                .expression_attribute_values(":agencyPk", s(keys::agency(agency_id)))
                .expression_attribute_values(":prefix", s(AGENCY_PURCHASE_PREFIX))
                .expression_attribute_values(":account", s(account_id))
                .scan_index_forward(false)
        };
        let start = after.map(|p| p.in_book().index_key());
        let read = budgeted_read("Query agency purchases of one account", query, limit, start).await?;
        let mut purchases = Vec::with_capacity(read.matched.len());
        for item in read.matched {
            let purchase: PurchaseRecord = from_item("purchase", item)?;
            if purchase.agency_id != agency_id || purchase.account_id != account_id {
                return Err(StoreError::Internal(format!("a foreign purchase in the partition of {agency_id}")));
            }
            purchases.push(purchase);
        }
        let position = |p: AgencyPurchasePosition| ClientInBookPosition {
            account_id: account_id.to_owned(),
            agency_pk: p.agency_pk,
            agency_sk: p.agency_sk,
            pk: p.pk,
            sk: p.sk,
        };
        let next = if purchases.len() > limit {
            purchases.truncate(limit);
            purchases.last().map(|p| position(AgencyPurchasePosition::of(p)))
        } else {
            match read.stopped_at {
                Some(key) => Some(position(AgencyPurchasePosition {
                    agency_pk: key.string(AGENCY_INDEX.partition_key)?,
                    agency_sk: key.string(AGENCY_INDEX.sort_key)?,
                    pk: key.string(PARTITION_KEY)?,
                    sk: key.string(SORT_KEY)?,
                })),
                None => None,
            }
        };
        Ok(ClientInBookPage { purchases, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_positions_only_move_within_the_agencys_purchases() {
        let id = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let good = AgencyPurchasePosition {
            agency_pk: "AGENCY#agency-a".into(),
            agency_sk: format!("PURCHASE#2026-11-26T01:00:00.000Z#{id}"),
            pk: "ACCOUNT#acct-a".into(),
            sk: format!("PURCHASE#{id}"),
        };
        assert!(good.is_in_agency("agency-a"));
        assert!(!good.is_in_agency("agency-b"));
        let other = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
        for bad in [
            AgencyPurchasePosition { sk: format!("PURCHASE#{other}"), ..good.clone() },
            AgencyPurchasePosition { pk: "AGENCY#agency-a".into(), ..good.clone() },
            AgencyPurchasePosition { pk: "ACCOUNT#a#b".into(), ..good.clone() },
            AgencyPurchasePosition { agency_sk: format!("CLIENT#acct-a#{id}"), ..good.clone() },
            AgencyPurchasePosition { agency_sk: format!("PURCHASE#yesterday#{id}"), ..good.clone() },
            AgencyPurchasePosition {
                agency_sk: format!("PURCHASE#2026-11-26T01:00:00.000Z#{}", id.to_uppercase()),
                ..good.clone()
            },
        ] {
            assert!(!bad.is_in_agency("agency-a"), "{bad:?}");
        }
    }
}
