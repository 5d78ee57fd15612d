//! Reconciliation: every account's balance must equal the sum of its ledger entries per credit type and never
//! be negative, and every credit line must have exactly `limit − (purchases not yet paid)` available: per
//! account at price, per agency at cost.
//!
//! Every change of a balance is a ledger entry (purchase, consumption, release, void, adjustment). Purchases
//! made before the ledger existed have no entry: such a purchase counts by its record instead, so each
//! purchase counts exactly once (by its entry when it has one).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::CreditType;
use super::credit::CreditLine;
use super::ledger::{Deltas, EntryType};

/// Balances as stored, signed (a negative one is reported, never assumed away).
pub type SignedBalances = BTreeMap<CreditType, i64>;

/// One account whose balance or line disagrees with its purchase and payment records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub account_id: String,
    /// Per drifting credit type: (stored balance, sum of the ledger). `None` balance: no account item.
    pub differences: Vec<(CreditType, Option<i64>, i64)>,
    /// Per credit type whose stored balance is below zero: that balance.
    pub negative: Vec<(CreditType, i64)>,
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

/// Sums ledger entries, purchases and payments into per-account and per-agency figures as the ledger is read.
#[derive(Debug, Default)]
pub struct Ledger {
    pub balances: BTreeMap<String, SignedBalances>,
    /// Per account: the sum of its ledger entries.
    pub entry_sums: BTreeMap<String, SignedBalances>,
    /// Per account: the purchases that have their ledger entry.
    pub purchases_with_entry: BTreeMap<String, BTreeSet<String>>,
    /// Per account: each purchase record's quantities, by purchase id (counted only if it has no entry).
    pub purchase_records: BTreeMap<String, BTreeMap<String, SignedBalances>>,
    pub purchases_read: u64,
    pub entries_read: u64,
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

    pub fn add_account(&mut self, account_id: &str, balances: SignedBalances) {
        self.balances.insert(account_id.to_owned(), balances);
    }

    /// A purchase record: counts towards the balance only if the purchase has no ledger entry (it predates the
    /// ledger).
    pub fn add_purchase(
        &mut self,
        account_id: &str,
        purchase_id: &str,
        lines: impl IntoIterator<Item = (CreditType, u64)>,
    ) {
        self.purchases_read += 1;
        let sums =
            self.purchase_records.entry(account_id.to_owned()).or_default().entry(purchase_id.to_owned()).or_default();
        for (credit_type, quantity) in lines {
            *sums.entry(credit_type).or_default() += i64::try_from(quantity).unwrap_or(i64::MAX);
        }
    }

    /// A ledger entry of any type; a purchase's entry stands for its purchase record.
    pub fn add_entry(&mut self, account_id: &str, entry_type: EntryType, purchase_id: Option<&str>, deltas: &Deltas) {
        self.entries_read += 1;
        if entry_type == EntryType::Purchase
            && let Some(purchase_id) = purchase_id
        {
            self.purchases_with_entry.entry(account_id.to_owned()).or_default().insert(purchase_id.to_owned());
        }
        let sums = self.entry_sums.entry(account_id.to_owned()).or_default();
        for (credit_type, delta) in deltas {
            *sums.entry(*credit_type).or_default() += delta;
        }
    }

    /// What an account's balance should be per type: its entries, plus purchases that have no entry.
    pub fn expected_balances(&self, account_id: &str) -> SignedBalances {
        let mut sums = self.entry_sums.get(account_id).cloned().unwrap_or_default();
        let with_entry = self.purchases_with_entry.get(account_id);
        for (purchase_id, quantities) in self.purchase_records.get(account_id).into_iter().flatten() {
            if with_entry.is_some_and(|ids| ids.contains(purchase_id)) {
                continue;
            }
            for (t, q) in quantities {
                *sums.entry(*t).or_default() += q;
            }
        }
        sums
    }

    /// Every account (or orphan entry or purchase owner) whose numbers disagree or whose balance is negative,
    /// in account order.
    pub fn drift(&self) -> Vec<Drift> {
        let mut ids: Vec<&String> = self
            .balances
            .keys()
            .chain(self.entry_sums.keys())
            .chain(self.purchase_records.keys())
            .chain(self.account_lines.keys())
            .collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| {
                let stored = self.balances.get(id);
                let expected = self.expected_balances(id);
                let differences: Vec<_> = CreditType::ALL
                    .into_iter()
                    .filter_map(|t| {
                        let balance = stored.map(|b| b.get(&t).copied().unwrap_or(0));
                        let sum = expected.get(&t).copied().unwrap_or(0);
                        (balance != Some(sum) && !(balance.is_none() && sum == 0)).then_some((t, balance, sum))
                    })
                    .collect();
                let negative: Vec<_> =
                    stored.into_iter().flat_map(|b| b.iter().filter(|(_, v)| **v < 0).map(|(t, v)| (*t, *v))).collect();
                let line = self.account_lines.get(id).and_then(|line| {
                    let expected = line.limit - self.account_owed.get(id).copied().unwrap_or_default();
                    (line.available != expected).then_some((line.available, expected))
                });
                (!differences.is_empty() || !negative.is_empty() || line.is_some()).then(|| Drift {
                    account_id: id.clone(),
                    differences,
                    negative,
                    line,
                })
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
        ledger.add_account("a", [(CreditType::Audience, 3)].into());
        ledger.add_purchase("a", "p1", [(CreditType::Audience, 1)]);
        ledger.add_purchase("a", "p2", [(CreditType::Audience, 2)]);
        ledger.add_account("b", [(CreditType::Pixel, 5)].into());
        ledger.add_purchase("b", "p3", [(CreditType::Pixel, 4)]);
        ledger.add_purchase("ghost", "p4", [(CreditType::Enrichment, 1)]);
        ledger.add_account("idle", SignedBalances::default());
        let drift = ledger.drift();
        assert_eq!(
            drift,
            vec![
                Drift {
                    account_id: "b".into(),
                    differences: vec![(CreditType::Pixel, Some(5), 4)],
                    negative: vec![],
                    line: None
                },
                Drift {
                    account_id: "ghost".into(),
                    differences: vec![(CreditType::Enrichment, None, 1)],
                    negative: vec![],
                    line: None
                },
            ]
        );
        assert_eq!(ledger.purchases_read, 4);
    }

    #[test]
    fn entries_count_once_with_their_purchases_and_negative_balances_are_reported() {
        let mut ledger = Ledger::default();
        // p1 has its entry (counted once), p0 predates the ledger (counted by its record).
        ledger.add_purchase("a", "p0", [(CreditType::Audience, 2)]);
        ledger.add_purchase("a", "p1", [(CreditType::Audience, 10)]);
        ledger.add_entry("a", EntryType::Purchase, Some("p1"), &[(CreditType::Audience, 10)].into());
        ledger.add_entry("a", EntryType::Consumption, None, &[(CreditType::Audience, -7)].into());
        ledger.add_entry("a", EntryType::Release, None, &[(CreditType::Audience, 3)].into());
        ledger.add_account("a", [(CreditType::Audience, 8)].into());
        assert!(ledger.drift().is_empty(), "{:?}", ledger.drift());

        ledger.add_entry("b", EntryType::Consumption, None, &[(CreditType::Pixel, -1)].into());
        ledger.add_account("b", [(CreditType::Pixel, -1)].into());
        assert_eq!(
            ledger.drift(),
            vec![Drift {
                account_id: "b".into(),
                differences: vec![],
                negative: vec![(CreditType::Pixel, -1)],
                line: None
            }]
        );
    }

    #[test]
    fn lines_must_hold_exactly_limit_minus_what_is_unpaid() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut ledger = Ledger::default();
        ledger.add_account("a", SignedBalances::default());
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
