//! The event of each change, made from the change's own domain values when the change is (one id per change:
//! a resent transaction carries the same outbox item). Only client-price figures go in; a purchase's cost never
//! does.

use super::*;
use crate::domain::agency::CreditLimitAuditEntry;
use crate::domain::billing::Statement;
use crate::domain::consumption_plan::{Alert, TopupRefused};
use crate::domain::payment::Payment;
use crate::domain::{CURRENCY, PurchaseLine, PurchaseRecord};

/// `credits.purchased` for a purchase about to be recorded.
pub fn credits_purchased(purchase: &PurchaseRecord, trigger: PurchaseTrigger) -> OutboxEvent {
    let detail = CreditsPurchased {
        account_id: purchase.account_id.clone(),
        agency_id: purchase.agency_id.clone(),
        purchase_id: purchase.purchase_id.clone(),
        lines: PurchasedLine::all_of(purchase),
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

/// `statement.payable` for a client statement its cycle's finish makes payable (at price; agency statements, at
/// cost, are never published). `agency_id` is the agency the client last bought under in the cycle
/// ([`crate::domain::billing::statement_agency`]).
pub fn statement_payable(
    account_id: &str,
    agency_id: &str,
    statement: &Statement,
    due_at: &str,
    at: &str,
) -> OutboxEvent {
    let detail = StatementPayable {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        statement_id: statement.statement_id.clone(),
        cycle_end: statement.cycle_end.clone(),
        total: statement.total,
        currency: statement.currency.clone(),
        due_date: due_at.to_owned(),
    };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}

/// `statement.payment_failed` for a failed attempt (1, 2, ...) at collecting a client statement, once per attempt.
pub fn statement_payment_failed(
    account_id: &str,
    agency_id: &str,
    statement_id: &str,
    attempt: u32,
    reason: &str,
    at: &str,
) -> OutboxEvent {
    let detail = StatementPaymentFailed {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        statement_id: statement_id.to_owned(),
        attempt,
        failure_code: failure_code(reason),
    };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}

/// What goes out as `failureCode` (`^[a-z0-9_]{1,64}$`): Stripe's decline code as it is (`card_declined`,
/// `insufficient_funds`), our own reasons too (`no_default_payment_method`); free text a payment side sent
/// ("card declined") as a code of its words (`card_declined`), never its prose; nothing usable: `payment_failed`.
pub fn failure_code(reason: &str) -> String {
    let mut code = String::with_capacity(reason.len().min(64));
    for c in reason.chars() {
        if c.is_ascii_alphanumeric() {
            code.push(c.to_ascii_lowercase());
        } else if !code.is_empty() && !code.ends_with('_') {
            code.push('_');
        }
    }
    code.truncate(64);
    let code = code.trim_end_matches('_');
    if code.is_empty() { "payment_failed".to_owned() } else { code.to_owned() }
}

/// `credits.consumed` (`released` false) or `credits.released` for one consumption's credits.
pub fn credits_moved(
    released: bool,
    account_id: &str,
    agency_id: &str,
    consumption_id: &str,
    quantities: &Quantities,
    at: &str,
) -> OutboxEvent {
    let moved = CreditsMoved {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        consumption_id: consumption_id.to_owned(),
        quantities: quantities.clone(),
    };
    if released {
        Envelope::new(new_event_id(), at, CreditsReleased(moved)).into_outbox()
    } else {
        Envelope::new(new_event_id(), at, CreditsConsumed(moved)).into_outbox()
    }
}

/// `credits.low` for a balance a consumption took below its threshold.
pub fn credits_low(account_id: &str, agency_id: &str, alert: &Alert, at: &str) -> OutboxEvent {
    let detail = CreditsLow {
        account_id: account_id.to_owned(),
        agency_id: agency_id.to_owned(),
        credit_type: alert.credit_type,
        threshold: alert.threshold,
        balance: alert.balance_after,
    };
    Envelope::new(new_event_id(), at, detail).into_outbox()
}

/// `auto_topup.succeeded` for one line of an auto top-up purchase (its subtotal at price).
pub fn auto_topup_succeeded(purchase: &PurchaseRecord, line: &PurchaseLine) -> OutboxEvent {
    let detail = AutoTopupSucceeded {
        account_id: purchase.account_id.clone(),
        agency_id: purchase.agency_id.clone(),
        purchase_id: purchase.purchase_id.clone(),
        credit_type: line.credit_type,
        quantity: line.quantity,
        total: line.subtotal,
        currency: purchase.currency.clone(),
    };
    Envelope::new(new_event_id(), &purchase.created_at, detail).into_outbox()
}

/// `auto_topup.refused`, one per type the refused top-up would have bought.
pub fn auto_topup_refused(account_id: &str, agency_id: &str, refused: &TopupRefused, at: &str) -> Vec<OutboxEvent> {
    refused
        .wanted
        .iter()
        .map(|(credit_type, quantity)| {
            let detail = AutoTopupRefused {
                account_id: account_id.to_owned(),
                agency_id: agency_id.to_owned(),
                credit_type: *credit_type,
                quantity: *quantity,
                reason: refused.reason,
            };
            Envelope::new(new_event_id(), at, detail).into_outbox()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::failure_code;

    #[test]
    fn failure_codes_are_stripes_codes_as_they_are_and_text_as_its_words() {
        assert_eq!(failure_code("card_declined"), "card_declined");
        assert_eq!(failure_code("insufficient_funds"), "insufficient_funds");
        assert_eq!(failure_code("card declined"), "card_declined");
        assert_eq!(failure_code("  Your card was declined. "), "your_card_was_declined");
        assert_eq!(failure_code("stripe_refused_402"), "stripe_refused_402");
        assert_eq!(failure_code("carte refusée"), "carte_refus_e");
        assert_eq!(failure_code("…"), "payment_failed");
        assert_eq!(failure_code(""), "payment_failed");
        let long = failure_code(&"a_".repeat(100));
        assert!(long.len() <= 64 && !long.ends_with('_'), "{long}");
    }
}
