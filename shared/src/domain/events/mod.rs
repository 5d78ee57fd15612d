//! Domain events: what other systems are told happened, as pure types (docs/events.md).
//!
//! Every event is an [`Envelope`] (stable `id` for consumers to dedupe, `type`, `version`, `occurredAt`, `source`,
//! `detail`) around one of the detail types below. [`Detail`] is sealed: only this module defines what an event may
//! carry, and none of its detail types has a field for the agency's cost, a margin, a token or a secret, because
//! the bus they go to is one a client's integration may be given a rule on. `shared/tests/it/events.rs` holds the
//! JSON Schema of every type (`events/schemas/`) to what these types serialise, and no schema names such a field.
//!
//! Nothing here writes: storage puts an event's [`OutboxEvent`] into the change's own `TransactWriteItems`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::CreditType;
use super::agency::{PriceChangeLine, PricingAuditEntry};

/// `source` of every event, and the EventBridge `Source` of its entry.
pub const SOURCE: &str = "overage-credits";

/// Who may be given a rule on an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// About one client account: the client (rule on `detail.detail.accountId`), its agency (on `agencyId`) and
    /// the platform.
    Account,
    /// About an agency's own settings: the agency (rule on `detail.detail.agencyId`) and the platform only.
    Agency,
}

/// The partition an event's outbox item is written to: the one the change itself writes, so the outbox never
/// makes a hot key of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Account(String),
    Agency(String),
}

mod sealed {
    pub trait Sealed {}
}

/// A detail type: its event type name, schema version and audience. Sealed: new kinds of event are added here,
/// with their schema, or not at all.
pub trait Detail: Serialize + sealed::Sealed {
    const TYPE: &'static str;
    const VERSION: u32;
    const AUDIENCE: Audience;
    fn owner(&self) -> Owner;
}

/// An event as published: EventBridge's `Detail` is this whole object, so `id` survives every redelivery (the
/// entry's own EventBridge id does not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope<D> {
    /// A UUIDv7 made once, before the transaction: a resent transaction writes the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// [`super::time::timestamp`] of the change.
    pub occurred_at: String,
    pub source: String,
    pub detail: D,
}

/// An event ready for the outbox: its routing facts and its JSON, exactly as it will be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: String,
    pub event_type: &'static str,
    pub occurred_at: String,
    pub owner: Owner,
    /// The envelope serialised once, here: the publisher sends these bytes, never a re-encoding.
    pub json: String,
}

/// A new event id (UUIDv7: sorts by creation time, so outbox keys do too).
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl<D: Detail> Envelope<D> {
    pub fn new(id: String, occurred_at: &str, detail: D) -> Envelope<D> {
        Envelope {
            id,
            event_type: D::TYPE.to_owned(),
            version: D::VERSION,
            occurred_at: occurred_at.to_owned(),
            source: SOURCE.to_owned(),
            detail,
        }
    }

    pub fn into_outbox(self) -> OutboxEvent {
        // Serialising plain structs of strings, numbers and maps with string keys cannot fail.
        let json = serde_json::to_string(&self).expect("an event serialises");
        OutboxEvent {
            id: self.id,
            event_type: D::TYPE,
            occurred_at: self.occurred_at,
            owner: self.detail.owner(),
            json,
        }
    }
}

/// Credits per type (only the types the change touched): the ledger's own map, so an event carries what the
/// ledger entry of the same change records.
pub use super::ledger::Quantities;

/// What started a purchase: the purchase record's own field.
pub use super::purchase::PurchaseTrigger;

/// One line of a purchase, at the client's price (never at cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchasedLine {
    pub credit_type: CreditType,
    pub quantity: u64,
    pub unit_price: Decimal,
    pub subtotal: Decimal,
}

impl PurchasedLine {
    /// A purchase's lines as published: at price, their cost left out.
    pub fn all_of(purchase: &super::PurchaseRecord) -> Vec<PurchasedLine> {
        purchase
            .lines
            .iter()
            .map(|line| PurchasedLine {
                credit_type: line.credit_type,
                quantity: line.quantity,
                unit_price: line.unit_price,
                subtotal: line.subtotal,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditsPurchased {
    pub account_id: String,
    pub agency_id: String,
    pub purchase_id: String,
    pub lines: Vec<PurchasedLine>,
    pub total: Decimal,
    pub currency: String,
    pub trigger: PurchaseTrigger,
}

/// A consumption (`credits.consumed`) or its release (`credits.released`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditsMoved {
    pub account_id: String,
    pub agency_id: String,
    pub consumption_id: String,
    /// Credits taken (consumed) or put back (released). No balances: the change is a blind `ADD`, so it does
    /// not know them; a consumer reads `GET /accounts/{accountId}/balances`.
    pub quantities: Quantities,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreditsConsumed(pub CreditsMoved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreditsReleased(pub CreditsMoved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseVoided {
    pub account_id: String,
    pub agency_id: String,
    pub purchase_id: String,
    /// Credits taken back.
    pub quantities: Quantities,
    /// At price: what the client no longer owes.
    pub total: Decimal,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditsLow {
    pub account_id: String,
    pub agency_id: String,
    pub credit_type: CreditType,
    pub threshold: u64,
    pub balance: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoTopupSucceeded {
    pub account_id: String,
    pub agency_id: String,
    pub purchase_id: String,
    pub credit_type: CreditType,
    pub quantity: u64,
    pub total: Decimal,
    pub currency: String,
}

/// Why an auto top-up was not bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopupRefusal {
    CreditLimit,
    AgencyCeiling,
    DailyCap,
    /// The account is on hold for an unpaid statement: nothing is bought on its line until it is paid.
    AccountOnHold,
    /// A line of the top-up would come to less than a cent at the current prices.
    BelowMinimum,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoTopupRefused {
    pub account_id: String,
    pub agency_id: String,
    pub credit_type: CreditType,
    pub quantity: u64,
    pub reason: TopupRefusal,
}

/// A client statement (at price). Agency statements (at cost) are never published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatementPayable {
    pub account_id: String,
    pub agency_id: String,
    pub statement_id: String,
    pub cycle_end: String,
    pub total: Decimal,
    pub currency: String,
    pub due_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatementPaid {
    pub account_id: String,
    pub agency_id: String,
    pub statement_id: String,
    pub amount: Decimal,
    pub currency: String,
    /// The payment's own reference (a Stripe PaymentIntent id or the caller's), never a card or key.
    pub payment_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatementPaymentFailed {
    pub account_id: String,
    pub agency_id: String,
    pub statement_id: String,
    pub attempt: u32,
    /// The processor's decline code (`card_declined`, ...), not its message.
    pub failure_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountHoldStarted {
    pub account_id: String,
    pub agency_id: String,
    pub statement_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountHoldLifted {
    pub account_id: String,
    pub agency_id: String,
}

/// The agency's prices (what its clients pay; `null`: the default). Costs never change here and never show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PricingChanged {
    pub agency_id: String,
    pub version_before: u64,
    pub version_after: u64,
    pub changes: Vec<PriceChangeLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditLimitChanged {
    pub account_id: String,
    pub agency_id: String,
    /// At price; `null` when the account had no limit before.
    pub old_limit: Option<Decimal>,
    pub new_limit: Decimal,
    pub currency: String,
}

macro_rules! detail {
    ($type:ty, $name:literal, $audience:ident, |$d:ident| $owner:expr) => {
        impl sealed::Sealed for $type {}
        impl Detail for $type {
            const TYPE: &'static str = $name;
            const VERSION: u32 = 1;
            const AUDIENCE: Audience = Audience::$audience;
            fn owner(&self) -> Owner {
                let $d = self;
                $owner
            }
        }
    };
}

detail!(CreditsPurchased, "credits.purchased", Account, |d| Owner::Account(d.account_id.clone()));
detail!(CreditsConsumed, "credits.consumed", Account, |d| Owner::Account(d.0.account_id.clone()));
detail!(CreditsReleased, "credits.released", Account, |d| Owner::Account(d.0.account_id.clone()));
detail!(PurchaseVoided, "purchase.voided", Account, |d| Owner::Account(d.account_id.clone()));
detail!(CreditsLow, "credits.low", Account, |d| Owner::Account(d.account_id.clone()));
detail!(AutoTopupSucceeded, "auto_topup.succeeded", Account, |d| Owner::Account(d.account_id.clone()));
detail!(AutoTopupRefused, "auto_topup.refused", Account, |d| Owner::Account(d.account_id.clone()));
detail!(StatementPayable, "statement.payable", Account, |d| Owner::Account(d.account_id.clone()));
detail!(StatementPaid, "statement.paid", Account, |d| Owner::Account(d.account_id.clone()));
detail!(StatementPaymentFailed, "statement.payment_failed", Account, |d| Owner::Account(d.account_id.clone()));
detail!(AccountHoldStarted, "account.hold_started", Account, |d| Owner::Account(d.account_id.clone()));
detail!(AccountHoldLifted, "account.hold_lifted", Account, |d| Owner::Account(d.account_id.clone()));
detail!(PricingChanged, "pricing.changed", Agency, |d| Owner::Agency(d.agency_id.clone()));
detail!(CreditLimitChanged, "credit_limit.changed", Account, |d| Owner::Account(d.account_id.clone()));

/// The `pricing.changed` event of an audited price change, made when the change is (one id per change: the
/// transaction's resends carry the same item). Who changed it (the administrator's `sub`) stays in the audit.
pub fn pricing_changed(audit: &PricingAuditEntry) -> OutboxEvent {
    let detail = PricingChanged {
        agency_id: audit.agency_id.clone(),
        version_before: audit.version_before,
        version_after: audit.version_after,
        changes: audit.changes.clone(),
    };
    Envelope::new(new_event_id(), &audit.changed_at, detail).into_outbox()
}

/// Every event type name, in the order: each has a schema in `events/schemas/{type}.schema.json`.
pub const EVENT_TYPES: [&str; 14] = [
    CreditsPurchased::TYPE,
    CreditsConsumed::TYPE,
    CreditsReleased::TYPE,
    PurchaseVoided::TYPE,
    CreditsLow::TYPE,
    AutoTopupSucceeded::TYPE,
    AutoTopupRefused::TYPE,
    StatementPayable::TYPE,
    StatementPaid::TYPE,
    StatementPaymentFailed::TYPE,
    AccountHoldStarted::TYPE,
    AccountHoldLifted::TYPE,
    PricingChanged::TYPE,
    CreditLimitChanged::TYPE,
];

mod examples;
mod producers;
pub use examples::examples;
pub use producers::*;
