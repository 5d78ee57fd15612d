//! The event of each change, made from the change's own domain values when the change is (one id per change:
//! a resent transaction carries the same outbox item). Only client-price figures go in; a purchase's cost never
//! does.

use super::*;
use crate::domain::PurchaseRecord;

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
