//! `reconcile`: balance = sum of ledger entries (consumptions and releases included; a purchase older than the
//! ledger counts by its record), per account and credit type, and no balance below zero.
//!
//! The table is read in one parallel Scan, so an account item and its ledger items are read at different
//! moments: under live traffic a change committed between the two reads looks like drift. Every account
//! the scan finds drifting is therefore read again as of one moment ([`Store::account_ledger`]: purchases,
//! account, purchases again, accepted only when both purchase reads agree), and only accounts still drifting
//! on that re-check are reported.

use std::time::Duration;

use shared::domain::reconcile::{AgencyDrift, Drift, Ledger};
use shared::storage::{Store, StoreError};

/// Rounds of [`Store::account_ledger`] per suspect account before it is reported unsettled; each round is itself
/// up to five reads, and rounds are spaced by a growing, jittered pause so a burst of purchases can pass.
const RECHECK_ROUNDS: u32 = 6;
const RECHECK_PAUSE: Duration = Duration::from_millis(50);

/// What one check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts still drifting when read as of one moment, in account order.
    pub drift: Vec<Drift>,
    /// Agencies whose line (at cost) is not their ceiling minus what their clients owe. Judged from the scan
    /// alone (an agency's figures span every client's partition): run it when purchases are quiet, or twice.
    pub agency_drift: Vec<AgencyDrift>,
    /// Accounts and purchases the scan read.
    pub accounts: usize,
    pub purchases: u64,
    /// Accounts the scan found drifting and that were read again as of one moment.
    pub rechecked: usize,
    /// Accounts whose purchases kept changing through every re-check (or whose re-check DynamoDB kept
    /// refusing as unavailable): neither clean nor drifting.
    pub unsettled: Vec<String>,
}

/// Reads the whole ledger, re-checks every account that looks drifting with a consistent read, and reports
/// only those still drifting.
pub async fn check(store: &Store, segments: i32) -> Result<Report, StoreError> {
    let mut ledger = Ledger::default();
    store.read_ledger(&mut ledger, segments).await?;
    let mut report = Report {
        accounts: ledger.balances.len(),
        purchases: ledger.purchases_read,
        agency_drift: ledger.agency_drift(),
        ..Report::default()
    };
    for suspect in ledger.drift() {
        report.rechecked += 1;
        match recheck(store, &suspect.account_id).await? {
            Some(still) => report.drift.extend(still),
            None => report.unsettled.push(suspect.account_id),
        }
    }
    Ok(report)
}

/// The account's drift as of one moment (empty: the scan's drift was a read racing a purchase); `None` when no
/// consistent read could be had.
async fn recheck(store: &Store, account_id: &str) -> Result<Option<Vec<Drift>>, StoreError> {
    for round in 0..RECHECK_ROUNDS {
        match store.account_ledger(account_id).await {
            Ok(ledger) => return Ok(Some(ledger.drift())),
            Err(StoreError::Unavailable(_)) if round + 1 < RECHECK_ROUNDS => {
                let pause = RECHECK_PAUSE * 2u32.pow(round);
                tokio::time::sleep(pause / 2 + pause.mul_f64(fastrand::f64() / 2.0)).await;
            }
            Err(StoreError::Unavailable(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// One line per drifting account, for people and for grep.
pub fn describe(drift: &Drift) -> String {
    let mut parts: Vec<String> = drift
        .differences
        .iter()
        .map(|(t, balance, sum)| match balance {
            Some(b) => format!("{t}: balance {b} != ledger {sum}"),
            None => format!("{t}: no account item, ledger {sum}"),
        })
        .collect();
    parts.extend(drift.negative.iter().map(|(t, balance)| format!("{t}: negative balance {balance}")));
    if let Some((available, expected)) = drift.line {
        parts.push(format!("credit line: available {available} != limit - unpaid = {expected}"));
    }
    format!("DRIFT {}: {}", drift.account_id, parts.join("; "))
}

/// One line per drifting agency line.
pub fn describe_agency(drift: &AgencyDrift) -> String {
    format!(
        "DRIFT agency {}: credit line available {} != ceiling - unpaid at cost = {}",
        drift.agency_id, drift.available, drift.expected
    )
}
