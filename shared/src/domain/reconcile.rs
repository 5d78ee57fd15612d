//! Reconciliation: every account's balance must equal the sum of its purchase records per credit type, and
//! every credit line must have exactly `limit − (purchases not yet paid)` available: per account at price,
//! per agency at cost.
//!
//! Purchases are today the only thing that changes a balance. A future change of balance (consumption,
//! refunds, grants) must be recorded as its own ledger item and added here, or it will show as drift.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::credit::CreditLine;
use super::{Balances, CreditType};

/// One account whose balance or line disagrees with its purchase and payment records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub account_id: String,
    /// Per drifting credit type: (stored balance, sum of purchase records). `None` balance: no account item.
    pub differences: Vec<(CreditType, Option<u64>, u64)>,
    /// The line's stored `available` and what it should be (limit − purchases + payments), when they differ.
    pub line: Option<(Decimal, Decimal)>,
}

/// An agency whose line (at cost) disagrees with its clients' purchases and its payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyDrift {
    pub agency_id: String,
    pub available: Decimal,
    pub expected: Decimal,
}

/// Sums purchases and payments into per-account and per-agency figures as the ledger is read.
#[derive(Debug, Default)]
pub struct Ledger {
    pub balances: BTreeMap<String, Balances>,
    pub purchased: BTreeMap<String, Balances>,
    pub purchases_read: u64,
    pub account_lines: BTreeMap<String, CreditLine>,
    /// Per account: purchase totals at price minus payments of its client statements.
    pub account_owed: BTreeMap<String, Decimal>,
    pub agency_lines: BTreeMap<String, CreditLine>,
    /// Per agency: its clients' purchase totals at cost minus payments of its statements.
    pub agency_owed: BTreeMap<String, Decimal>,
}

/// Whose line a payment releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOwner<'a> {
    Account(&'a str),
    Agency(&'a str),
}

impl Ledger {
    pub fn add_account_line(&mut self, account_id: &str, line: CreditLine) {
        self.account_lines.insert(account_id.to_owned(), line);
    }

    pub fn add_agency_line(&mut self, agency_id: &str, line: CreditLine) {
        self.agency_lines.insert(agency_id.to_owned(), line);
    }

    /// What a purchase puts on both lines.
    pub fn add_purchase_amounts(&mut self, account_id: &str, agency_id: &str, total: Decimal, total_at_cost: Decimal) {
        *self.account_owed.entry(account_id.to_owned()).or_default() += total;
        *self.agency_owed.entry(agency_id.to_owned()).or_default() += total_at_cost;
    }

    /// A payment of a client statement (releases the account's line) or an agency statement (the agency's).
    pub fn add_payment(&mut self, owner: PaymentOwner<'_>, amount: Decimal) {
        match owner {
            PaymentOwner::Account(id) => *self.account_owed.entry(id.to_owned()).or_default() -= amount,
            PaymentOwner::Agency(id) => *self.agency_owed.entry(id.to_owned()).or_default() -= amount,
        }
    }

    /// Every agency whose line's available differs from its ceiling minus what its clients owe at cost.
    pub fn agency_drift(&self) -> Vec<AgencyDrift> {
        self.agency_lines
            .iter()
            .filter_map(|(id, line)| {
                let expected = line.limit - self.agency_owed.get(id).copied().unwrap_or_default();
                (line.available != expected).then(|| AgencyDrift {
                    agency_id: id.clone(),
                    available: line.available,
                    expected,
                })
            })
            .collect()
    }

    pub fn add_account(&mut self, account_id: &str, balances: Balances) {
        self.balances.insert(account_id.to_owned(), balances);
    }

    pub fn add_purchase(&mut self, account_id: &str, lines: impl IntoIterator<Item = (CreditType, u64)>) {
        self.purchases_read += 1;
        let sums = self.purchased.entry(account_id.to_owned()).or_default();
        for (credit_type, quantity) in lines {
            *sums.0.entry(credit_type).or_default() += quantity;
        }
    }

    /// Every account (or orphan purchase owner) whose numbers disagree, in account order.
    pub fn drift(&self) -> Vec<Drift> {
        let mut ids: Vec<&String> =
            self.balances.keys().chain(self.purchased.keys()).chain(self.account_lines.keys()).collect();
        ids.sort();
        ids.dedup();
        let empty = Balances::default();
        ids.into_iter()
            .filter_map(|id| {
                let stored = self.balances.get(id);
                let bought = self.purchased.get(id).unwrap_or(&empty);
                let differences: Vec<_> = CreditType::ALL
                    .into_iter()
                    .filter_map(|t| {
                        let balance = stored.map(|b| b.get(t));
                        let sum = bought.get(t);
                        (balance != Some(sum) && !(balance.is_none() && sum == 0)).then_some((t, balance, sum))
                    })
                    .collect();
                let line = self.account_lines.get(id).and_then(|line| {
                    let expected = line.limit - self.account_owed.get(id).copied().unwrap_or_default();
                    (line.available != expected).then_some((line.available, expected))
                });
                (!differences.is_empty() || line.is_some()).then(|| Drift { account_id: id.clone(), differences, line })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_ledger_has_no_drift_and_mismatches_are_listed() {
        let mut ledger = Ledger::default();
        ledger.add_account("a", Balances([(CreditType::Audience, 3)].into()));
        ledger.add_purchase("a", [(CreditType::Audience, 1)]);
        ledger.add_purchase("a", [(CreditType::Audience, 2)]);
        ledger.add_account("b", Balances([(CreditType::Pixel, 5)].into()));
        ledger.add_purchase("b", [(CreditType::Pixel, 4)]);
        ledger.add_purchase("ghost", [(CreditType::Enrichment, 1)]);
        ledger.add_account("idle", Balances::default());
        let drift = ledger.drift();
        assert_eq!(
            drift,
            vec![
                Drift { account_id: "b".into(), differences: vec![(CreditType::Pixel, Some(5), 4)], line: None },
                Drift { account_id: "ghost".into(), differences: vec![(CreditType::Enrichment, None, 1)], line: None },
            ]
        );
        assert_eq!(ledger.purchases_read, 4);
    }

    #[test]
    fn lines_must_hold_exactly_limit_minus_what_is_unpaid() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut ledger = Ledger::default();
        ledger.add_account("a", Balances::default());
        ledger.add_account_line("a", CreditLine { limit: d("100.00"), available: d("70.00") });
        ledger.add_purchase_amounts("a", "g", d("50.00"), d("20.00"));
        ledger.add_payment(PaymentOwner::Account("a"), d("20.00"));
        ledger.add_agency_line("g", CreditLine { limit: d("1000.00"), available: d("985.00") });
        ledger.add_payment(PaymentOwner::Agency("g"), d("5.00"));
        assert!(ledger.drift().is_empty(), "{:?}", ledger.drift());
        assert!(ledger.agency_drift().is_empty());

        ledger.add_payment(PaymentOwner::Account("a"), d("1.00"));
        ledger.add_agency_line("g", CreditLine { limit: d("1000.00"), available: d("990.00") });
        assert_eq!(ledger.drift()[0].line, Some((d("70.00"), d("71.00"))));
        assert_eq!(
            ledger.agency_drift(),
            vec![AgencyDrift { agency_id: "g".into(), available: d("990.00"), expected: d("985.00") }]
        );
    }
}
