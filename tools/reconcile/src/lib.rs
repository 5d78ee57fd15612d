//! `reconcile`: balance = sum of purchase records, per account and credit type.

use shared::domain::reconcile::{Drift, Ledger};
use shared::storage::{Store, StoreError};

/// Reads the whole ledger and returns what drifts, with the number of accounts and purchases read.
pub async fn check(store: &Store, segments: i32) -> Result<(Vec<Drift>, usize, u64), StoreError> {
    let mut ledger = Ledger::default();
    store.read_ledger(&mut ledger, segments).await?;
    Ok((ledger.drift(), ledger.balances.len(), ledger.purchases_read))
}

/// One line per drifting account, for people and for grep.
pub fn describe(drift: &Drift) -> String {
    let parts: Vec<String> = drift
        .differences
        .iter()
        .map(|(t, balance, sum)| match balance {
            Some(b) => format!("{t}: balance {b} != purchased {sum}"),
            None => format!("{t}: no account item, purchased {sum}"),
        })
        .collect();
    format!("DRIFT {}: {}", drift.account_id, parts.join("; "))
}
