//! A payment against a statement: what the payment side reports, what it does to the statement (its amounts,
//! its status, the hold it lifts), and the receipt a replay answers again.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::billing::{PAYABLE_STATUSES, STATUS_PAID, StatementKind};

/// A payment the payment side reports against a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub statement_id: String,
    pub amount: Decimal,
    pub payment_reference: String,
    pub paid_at: String,
}

/// What a recorded payment did, as first answered (a replay answers the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentReceipt {
    pub statement_id: String,
    pub payment_reference: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_paid: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_due: Decimal,
    pub status: String,
    pub paid_at: String,
}

/// What a payment does to a statement as read (its kind, status, amount due and paid so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEffect {
    /// It applies: the receipt, and whether it lifts the account's hold (a client statement paid in full).
    Applies { receipt: PaymentReceipt, releases_hold: bool },
    /// Still building (its cycle's run has not finished) or already paid.
    NotPayable { status: String },
    /// More than is due.
    Overpayment { amount_due: Decimal },
}

impl Payment {
    /// Binds a payment reference to the statement and amount it paid: the same reference for another statement
    /// or amount is another payment, refused.
    pub fn request_hash(&self) -> String {
        hex::encode(Sha256::digest(format!("{}\n{}", self.statement_id, self.amount.normalize())))
    }

    /// What this payment does to a statement of `kind` read as `status`, `due` and `paid`.
    pub fn effect(&self, kind: StatementKind, status: &str, due: Decimal, paid: Decimal) -> PaymentEffect {
        if !PAYABLE_STATUSES.contains(&status) {
            return PaymentEffect::NotPayable { status: status.to_owned() };
        }
        if self.amount > due {
            return PaymentEffect::Overpayment { amount_due: due };
        }
        let fully_paid = self.amount == due;
        let receipt = PaymentReceipt {
            statement_id: self.statement_id.clone(),
            payment_reference: self.payment_reference.clone(),
            amount: self.amount,
            amount_paid: paid + self.amount,
            amount_due: due - self.amount,
            status: if fully_paid { STATUS_PAID.to_owned() } else { status.to_owned() },
            paid_at: self.paid_at.clone(),
        };
        // A statement paid in full leaves the account's held set (if it was there): the hold lifts when no other
        // statement is left in it. Agency statements never hold anything.
        PaymentEffect::Applies { receipt, releases_hold: fully_paid && kind == StatementKind::Client }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::{STATUS_BUILDING, STATUS_PAYMENT_FAILED};

    fn payment(amount: &str) -> Payment {
        Payment {
            statement_id: "s".into(),
            amount: amount.parse().unwrap(),
            payment_reference: "pi_1".into(),
            paid_at: "2026-12-02T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_payment_in_full_pays_and_lifts_a_clients_hold_only() {
        let (due, paid) = ("10.00".parse().unwrap(), Decimal::ZERO);
        let PaymentEffect::Applies { receipt, releases_hold } =
            payment("10.00").effect(StatementKind::Client, STATUS_PAYMENT_FAILED, due, paid)
        else {
            panic!("applies")
        };
        assert_eq!((receipt.status.as_str(), receipt.amount_due, releases_hold), (STATUS_PAID, Decimal::ZERO, true));
        let agency = payment("10.00").effect(StatementKind::Agency, STATUS_PAYMENT_FAILED, due, paid);
        assert!(matches!(agency, PaymentEffect::Applies { releases_hold: false, .. }));
        let part = payment("4.00").effect(StatementKind::Client, STATUS_PAYMENT_FAILED, due, paid);
        assert!(
            matches!(part, PaymentEffect::Applies { releases_hold: false, ref receipt } if receipt.status == STATUS_PAYMENT_FAILED)
        );
        assert_eq!(
            payment("10.01").effect(StatementKind::Client, STATUS_PAYMENT_FAILED, due, paid),
            PaymentEffect::Overpayment { amount_due: due }
        );
        assert_eq!(
            payment("1").effect(StatementKind::Client, STATUS_BUILDING, due, paid),
            PaymentEffect::NotPayable { status: STATUS_BUILDING.into() }
        );
    }

    #[test]
    fn the_request_hash_ignores_how_the_amount_is_written() {
        assert_eq!(payment("10").request_hash(), payment("10.00").request_hash());
        assert_ne!(payment("10").request_hash(), payment("10.01").request_hash());
    }
}
