//! Every key of the table's items: partition and sort key prefixes, composed keys, index partitions and index
//! sort keys (the layout is in `storage`'s module comment), and the attribute names several aggregates share
//! (balances, lines, holds, the ledger count, the void marks). Attribute names one aggregate alone writes (a
//! statement's sums, a collection attempt's state) are named beside its expressions, in its own file.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::CreditType;
use crate::domain::billing::{CycleEnd, StatementKind};
use crate::table::{PARTITION_KEY, SORT_KEY};

pub const DEFAULT_PRICING_PK: &str = "PRICING#DEFAULT";
pub const PRICING_SK: &str = "PRICING";
pub const ACCOUNT_SK: &str = "ACCOUNT";
pub const PURCHASE_SK_PREFIX: &str = "PURCHASE#";
pub const STATEMENT_SK_PREFIX: &str = "STATEMENT#";
pub const PART_MARKER: &str = "#PART#";

pub const CREDIT_LINE_SK: &str = "CREDIT_LINE";

/// On a voided purchase: when it was voided (its presence is the mark billing checks) and by whom.
pub const VOIDED_AT: &str = "voidedAt";
pub const VOIDED_BY: &str = "voidedBy";
pub const VOID_REASON: &str = "voidReason";

/// Credit line attributes on the account item (client line, at price) and the agency line item (at cost).
pub const CREDIT_LIMIT: &str = "creditLimit";
pub const AVAILABLE_CREDIT: &str = "availableCredit";
/// On the account item: the ids of its client statements that are `payment_failed` or `overdue` and not paid in
/// full (a string set; DynamoDB drops the attribute when its last member goes). Purchases require it absent.
pub const HELD_STATEMENT_IDS: &str = "heldStatementIds";

/// On the account item: the client's consumption rules (`domain::rules`). Thresholds are a map of type to
/// number; top-up rules a map of type to `{below, buy}`; the version goes up by one on every change of either.
pub const ALERT_THRESHOLDS: &str = "alertThresholds";
pub const TOPUP_RULES: &str = "topupRules";
pub const RULES_VERSION: &str = "rulesVersion";
/// On the account item: the UTC day (`YYYY-MM-DD`) of the last auto top-up and how many were made that day.
pub const TOPUP_DAY: &str = "topupDay";
pub const TOPUP_COUNT: &str = "topupCount";

/// An outbox item's sort key prefix, in the partition its change already writes (`storage::outbox`).
pub const OUTBOX_SK_PREFIX: &str = "OUTBOX#";

/// An outbox item's sort key: `OUTBOX#{occurredAt}#{eventId}` (the timestamp has no `#`).
pub fn outbox_sk(occurred_at: &str, event_id: &str) -> String {
    format!("{OUTBOX_SK_PREFIX}{occurred_at}#{event_id}")
}

/// On a statement paid in full: the instant of the payment that paid it off.
pub const STATEMENT_PAID_AT: &str = "paidAt";

/// On the account item: the id of its latest client statement that billed purchases made under `agency_id`, set
/// after each client-side billing step commits. The agency's clients page reads it from the item it already reads, then that
/// page's statements in one BatchGetItem: a page costs the same whatever the clients bought, and an agency never
/// sees the statement of a cycle when the client was another agency's.
pub fn last_statement_attribute(agency_id: &str) -> String {
    format!("lastStatementId#{agency_id}")
}

/// On a client statement: the `createdAt` of the latest purchase a billing step billed onto it under `agency_id`
/// (one attribute per agency: two for a client that moved mid-cycle). The cycle's finish reads them from the
/// statement item it already has and names the latest one's agency in `statement.payable`
/// ([`crate::domain::billing::statement_agency`]), so finishing a statement still reads nothing more.
pub const STATEMENT_AGENCY_PREFIX: &str = "lastPurchaseAt#";

pub fn statement_agency_attribute(agency_id: &str) -> String {
    format!("{STATEMENT_AGENCY_PREFIX}{agency_id}")
}

/// On the account item: what the client has bought under `agency_id` and not yet been billed for (count, total
/// at price, total at cost), kept per agency so a client that moves takes none of its old agency's figures
/// along. Purchases add to them, voids and the client side's billing steps take away, in their own transactions.
pub fn unbilled_sums_attributes(agency_id: &str) -> [String; 3] {
    [
        format!("unbilledCount#{agency_id}"),
        format!("unbilledAtPrice#{agency_id}"),
        format!("unbilledAtCost#{agency_id}"),
    ]
}

/// An agency's line lives in a partition of its own, so a function allowed to move lines (by IAM LeadingKeys)
/// is not thereby allowed to write the agency's prices.
pub fn agency_line(agency_id: &str) -> String {
    format!("{AGENCY_LINE_PK_PREFIX}{agency_id}")
}

pub const AGENCY_LINE_PK_PREFIX: &str = "AGENCYLINE#";
pub const AGENCY_PK_PREFIX: &str = "AGENCY#";
pub const ACCOUNT_PK_PREFIX: &str = "ACCOUNT#";

pub fn agency(agency_id: &str) -> String {
    format!("{AGENCY_PK_PREFIX}{agency_id}")
}

/// A request of the provisioning entry point (`provision-account`), kept so it is applied once: in a partition of
/// its own (whatever account or agency it names), written in the change's transaction.
pub fn provision(request_id: &str) -> String {
    format!("PROVISION#{request_id}")
}
pub const PROVISION_SK: &str = "REQUEST";

pub fn account(account_id: &str) -> String {
    format!("{ACCOUNT_PK_PREFIX}{account_id}")
}

/// Sort key prefixes of [`crate::table::AGENCY_INDEX`]: client items carry `CLIENT#{accountId}`, purchases
/// `PURCHASE#{createdAt}#{purchaseId}`.
pub const AGENCY_CLIENT_PREFIX: &str = "CLIENT#";
pub const AGENCY_PURCHASE_PREFIX: &str = "PURCHASE#";

/// A client's sort key in its agency's partition of the agency-items index.
pub fn agency_client_sk(account_id: &str) -> String {
    format!("{AGENCY_CLIENT_PREFIX}{account_id}")
}

/// A purchase's sort key in its agency's partition of the agency-items index: newest last by time.
pub fn agency_purchase_sk(created_at: &str, purchase_id: &str) -> String {
    format!("{AGENCY_PURCHASE_PREFIX}{created_at}#{purchase_id}")
}

/// An unbilled purchase's sort key in the unbilled indexes: by time, then id.
pub fn unbilled_sk(created_at: &str, purchase_id: &str) -> String {
    format!("{created_at}#{purchase_id}")
}

pub fn purchase_sk(purchase_id: &str) -> String {
    format!("{PURCHASE_SK_PREFIX}{purchase_id}")
}

/// The unbilled-index partition of shard `shard`: written by a purchase, queried by the billing run.
pub fn unbilled(shard: u32) -> String {
    format!("UNBILLED#{shard}")
}

/// Audit entries in the agency's partition: price changes and credit limit changes.
pub const PRICING_AUDIT_SK_PREFIX: &str = "AUDIT#PRICING#";
pub const LIMIT_AUDIT_SK_PREFIX: &str = "AUDIT#LIMIT#";

/// An audit entry's sort key: its time first, so the partition lists entries in time order, then a UUIDv7 so
/// two changes in the same millisecond never share a key.
pub fn audit_sk(prefix: &str, changed_at: &str) -> String {
    format!("{prefix}{changed_at}#{}", uuid::Uuid::now_v7())
}

/// An `Idempotency-Key` lives in its account's partition: keys of two accounts never meet.
pub fn idempotency_sk(key: &str) -> String {
    format!("IDEMPOTENCY#{key}")
}

pub const LEDGER_SK_PREFIX: &str = "LEDGER#";

/// A ledger entry in its account's partition: `LEDGER#{createdAt}#{entryId}`, so the entries sort by time.
pub fn ledger_sk(created_at: &str, entry_id: &str) -> String {
    format!("{LEDGER_SK_PREFIX}{created_at}#{entry_id}")
}

pub const CONSUMPTION_SK_PREFIX: &str = "CONSUMPTION#";

/// A consumption's exactly-once marker (the caller's id, its request hash, its entry, its release).
pub fn consumption_sk(consumption_id: &str) -> String {
    format!("{CONSUMPTION_SK_PREFIX}{consumption_id}")
}

/// On the account item: how many ledger entries were written (ADD 1 in each entry's transaction), so a reader
/// can tell that no entry landed between two reads.
pub const LEDGER_ENTRY_COUNT: &str = "ledgerEntryCount";

pub const PAYMENT_SK_PREFIX: &str = "PAYMENT#";

/// A payment's exactly-once record: in a partition of its own per payment reference.
pub fn payment_pk(reference: &str) -> String {
    format!("{PAYMENT_SK_PREFIX}{reference}")
}
pub const PAYMENT_SK: &str = "PAYMENT";

/// A payment in its owner's partition.
pub fn payment_sk(reference: &str) -> String {
    format!("{PAYMENT_SK_PREFIX}{reference}")
}

/// The state index partition of a cycle's statements while its run has not finished.
pub fn building_partition(cycle_end: &CycleEnd) -> String {
    format!("BUILDING#{}", cycle_end.as_str())
}

/// The state index partition of payable client statements, sorted by due date.
pub const UNPAID_PARTITION: &str = "UNPAID";

/// The state index partition of payable agency statements (by due date), where collection finds them. Separate
/// from [`UNPAID_PARTITION`]: agency statements never fall overdue or hold an account.
pub const AGENCY_UNPAID_PARTITION: &str = "AGENCY_UNPAID";

/// A payable statement's sort key in its unpaid partition: by due date, then id.
pub fn unpaid_sk(due_at: &str, statement_id: &str) -> String {
    format!("{due_at}#{statement_id}")
}

pub fn statement_sk(cycle_end: &str) -> String {
    format!("{STATEMENT_SK_PREFIX}{cycle_end}")
}

pub fn statement_part_sk(cycle_end: &str, first_purchase_id: &str) -> String {
    format!("{STATEMENT_SK_PREFIX}{cycle_end}{PART_MARKER}{first_purchase_id}")
}

/// The partition holding an owner's statements: the account's (client) or the agency's (agency).
pub fn statement_pk(kind: StatementKind, owner: &str) -> String {
    match kind {
        StatementKind::Client => account(owner),
        StatementKind::Agency => agency(owner),
    }
}

/// A full primary key.
pub fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), AttributeValue::S(pk)),
        (SORT_KEY.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// The balance attribute of one credit type on the account item (top-level, so `ADD` can create it).
pub fn balance_attribute(credit_type: CreditType) -> &'static str {
    match credit_type {
        CreditType::Audience => "balanceAudience",
        CreditType::Enrichment => "balanceEnrichment",
        CreditType::Pixel => "balancePixel",
        CreditType::CustomModel => "balanceCustomModel",
    }
}

/// Top-level number attributes of a statement per credit type (top-level so `ADD` can create them).
pub fn statement_line_attributes(credit_type: CreditType) -> (&'static str, &'static str) {
    match credit_type {
        CreditType::Audience => ("quantityAudience", "amountAudience"),
        CreditType::Enrichment => ("quantityEnrichment", "amountEnrichment"),
        CreditType::Pixel => ("quantityPixel", "amountPixel"),
        CreditType::CustomModel => ("quantityCustomModel", "amountCustomModel"),
    }
}
