//! `reconcile`: balance = sum of purchase records, per account and credit type.

use std::time::{SystemTime, UNIX_EPOCH};

use shared::domain::billing::{CycleEnd, StatementKind};
use shared::domain::reconcile::{Drift, Ledger};
use shared::storage::{Store, StoreError};
use shared::table::UNBILLED_SHARDS;

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

/// What the scheduled check (`reconcile-run`) found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledReport {
    pub drift: Vec<Drift>,
    pub figures: shared::metrics::ReconcileFigures,
    /// The cycle whose overdue purchases were counted (`None` on the 1st of a month, before a day has passed).
    pub overdue_cycle: Option<String>,
}

/// The daily check: balances against purchases (as [`check`]), and whether the month's billing run
/// finished: purchases of the cycle that ended at 00:00 UTC on the 1st still unbilled a day later. Logs one
/// line per drifting account (with its id) and writes one EMF line (counts only, no dimension).
pub async fn scheduled_check(store: &Store, segments: i32, now: SystemTime) -> Result<ScheduledReport, StoreError> {
    let started = std::time::Instant::now();
    let (drift, accounts, purchases) = check(store, segments).await?;
    let overdue_cycle = overdue_cycle(now);
    let mut overdue = 0;
    if let Some(cycle) = &overdue_cycle {
        let cycle = CycleEnd::parse(cycle).map_err(|e| StoreError::Internal(format!("cycle end {cycle}: {e}")))?;
        overdue = count_unbilled_before(store, &cycle).await?;
    }
    for d in &drift {
        tracing::warn!(account_id = %d.account_id, "{}", describe(d));
    }
    let figures = shared::metrics::ReconcileFigures {
        accounts_checked: accounts as u64,
        purchases_read: purchases,
        drifting_accounts: drift.len() as u64,
        overdue_unbilled_purchases: overdue,
        duration: started.elapsed(),
    };
    tracing::info!(
        accounts_checked = figures.accounts_checked,
        purchases_read = figures.purchases_read,
        drifting_accounts = figures.drifting_accounts,
        overdue_unbilled_purchases = figures.overdue_unbilled_purchases,
        overdue_cycle = overdue_cycle.as_deref().unwrap_or(""),
        "reconcile finished"
    );
    shared::metrics::record_reconcile(&figures);
    Ok(ScheduledReport { drift, figures, overdue_cycle })
}

/// The cycle end (00:00 UTC on the 1st of `now`'s month) whose purchases must all be billed by `now`, if a
/// day has passed since it (the billing run starts at the cycle end and retries for up to 6 hours).
pub fn overdue_cycle(now: SystemTime) -> Option<String> {
    let seconds = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let days = (seconds / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    (day >= 2).then(|| format!("{year:04}-{month:02}-01T00:00:00Z"))
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unbilled purchases created before `cycle` on either side: the first page of each shard of both sparse
/// indexes (a Query, read-only). Billing empties them, so anything here is overdue.
async fn count_unbilled_before(store: &Store, cycle: &CycleEnd) -> Result<u64, StoreError> {
    let mut count = 0;
    for kind in [StatementKind::Client, StatementKind::Agency] {
        for shard in 0..UNBILLED_SHARDS {
            if let Some(page) = store.unbilled_pages(kind, shard, cycle).next().await {
                count += page?.items_read;
            }
        }
    }
    Ok(count)
}
