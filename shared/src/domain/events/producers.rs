//! The event of each change, made from the change's own domain values when the change is (one id per change:
//! a resent transaction carries the same outbox item). Only client-price figures go in; a purchase's cost never
//! does.

use super::*;
use crate::domain::agency::CreditLimitAuditEntry;
use crate::domain::billing::Statement;
use crate::domain::payment::Payment;
use crate::domain::{CURRENCY, PurchaseRecord};

/// `credits.purchased` for a purchase about to be recorded.
pub fn credits_purchased(purchase: &PurchaseRecord, trigger: PurchaseTrigger) -> OutboxEvent {
    let detail = CreditsPurchased {
        account_id: purchase.account_id.clone(),
        agency_id: purchase.agency_id.clone(),
        purchase_id: purchase.purchase_id.clone(),
        lines: purchase
            .lines
            .iter()
            .map(|line| PurchasedLine {
                credit_type: line.credit_type,
                quantity: line.quantity,
                unit_price: line.unit_price,
                subtotal: line.subtotal,
            })
            .collect(),
        total: purchase.total,
        currency: purchase.currency.clone(),
        trigger,
    };
    Envelope::new(new_event_id(), &purchase.created_at, detail).into_outbox()
}

/// `purchase.voided` for an unbilled purchase being voided: the credits taken back and the total the client no
/// longer owes, at price.
pub fn purchase_voided(purchase: &PurchaseRecord, voided_at: &str) -> OutboxEvent {
    let detail = PurchaseVoided {
        account_id: purchase.account_id.clone(),
        agency_id: purchase.agency_id.clone(),
        purchase_id: purchase.purchase_id.clone(),
        quantities: purchase.credits_per_type(),
        total: purchase.total,
        currency: purchase.currency.clone(),
    };
    Envelope::new(new_event_id(), voided_at, detail).into_outbox()
}

/// `credit_limit.changed` for an agency's audited change of its client's limit (at price). Who changed it (the
/// administrator's `sub`) stays in the audit entry.
pub fn credit_limit_changed(audit: &CreditLimitAuditEntry) -> OutboxEvent {
    let detail = CreditLimitChanged {
        account_id: audit.account_id.clone(),
        agency_id: audit.agency_id.clone(),
        old_limit: audit.old_limit,
        new_limit: audit.new_limit,
        currency: CURRENCY.to_owned(),
    };
    Envelope::new(new_event_id(), &audit.changed_at, detail).into_outbox()
}

/// `statement.paid` for the payment that pays a client statement off (`amount` is that payment's). Agency
/// statements (at cost) are never published.
pub fn statement_paid(
    account_id: &str,
    agency_id: &str,
    statement: &Statement,
    payment: &Payment,
    at: &str,
) -> OutboxEvent {
    let detail = StatementPaid {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        statement_id: statement.statement_id.clone(),
        amount: payment.amount,
        currency: statement.currency.clone(),
        payment_reference: payment.payment_reference.clone(),
    };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}

/// `account.hold_lifted` when the last statement holding an account is paid off.
pub fn account_hold_lifted(account_id: &str, agency_id: &str, at: &str) -> OutboxEvent {
    let detail = AccountHoldLifted { account_id: account_id.to_owned(), agency_id: agency_id.to_owned() };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}

/// `account.hold_started` when a failed or overdue statement puts an account that nothing held yet on hold.
pub fn account_hold_started(account_id: &str, agency_id: &str, statement_id: &str, at: &str) -> OutboxEvent {
    let detail = AccountHoldStarted {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        statement_ids: vec![statement_id.to_owned()],
    };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}
