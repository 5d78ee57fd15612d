//! Reconciliation: every account's balance must equal the sum of its purchase records per credit type.
//!
//! Purchases are today the only thing that changes a balance. A future change of balance (consumption,
//! refunds, grants) must be recorded as its own ledger item and added here, or it will show as drift.

use std::collections::BTreeMap;

use super::{Balances, CreditType};

/// One account whose balance disagrees with its purchase records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub account_id: String,
    /// Per drifting credit type: (stored balance, sum of purchase records). `None` balance: no account item.
    pub differences: Vec<(CreditType, Option<u64>, u64)>,
}

/// Sums purchases into per-account totals as the ledger is read.
#[derive(Debug, Default)]
pub struct Ledger {
    pub balances: BTreeMap<String, Balances>,
    pub purchased: BTreeMap<String, Balances>,
    pub purchases_read: u64,
}

impl Ledger {
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
        let mut ids: Vec<&String> = self.balances.keys().chain(self.purchased.keys()).collect();
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
                (!differences.is_empty()).then(|| Drift { account_id: id.clone(), differences })
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
                Drift { account_id: "b".into(), differences: vec![(CreditType::Pixel, Some(5), 4)] },
                Drift { account_id: "ghost".into(), differences: vec![(CreditType::Enrichment, None, 1)] },
            ]
        );
        assert_eq!(ledger.purchases_read, 4);
    }
}
