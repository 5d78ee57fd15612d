//! `reconcile`: balance = sum of ledger entries (consumptions and releases included; a purchase older than the
//! ledger counts by its record), per account and credit type, and no balance below zero.
//!
//! The table is read in one parallel Scan, so an account item and its ledger items are read at different
//! moments: under live traffic a change committed between the two reads looks like drift. Every account
//! the scan finds drifting is therefore read again as of one moment ([`Store::account_ledger`]: purchases,
//! account, purchases again, accepted only when both purchase reads agree), and only accounts still drifting
//! on that re-check are reported.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::domain::billing::{CycleEnd, StatementKind};
use shared::domain::reconcile::{AgencyDrift, Drift, Ledger};
use shared::storage::{Store, StoreError};
use shared::table::UNBILLED_SHARDS;

/// Rounds of [`Store::account_ledger`] per suspect account before it is reported unsettled; each round is itself
/// up to five reads, and rounds are spaced by a growing, jittered pause so a burst of purchases can pass.
const RECHECK_ROUNDS: u32 = 6;
const RECHECK_PAUSE: Duration = Duration::from_millis(50);

/// What one check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts still drifting when read as of one moment, in account order.
    pub drift: Vec<Drift>,
    /// Agencies whose line (at cost) is not their ceiling minus what their clients owe, confirmed after the
    /// scan by two reads of the line as of one moment, a pause apart, showing the same figures.
    pub agency_drift: Vec<AgencyDrift>,
    /// Agencies the scan found drifting whose line kept moving through every re-check.
    pub unsettled_agencies: Vec<String>,
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
    settle(store, &ledger).await
}

/// Judges what a scan read: every account and agency line that looks drifting is read again as of one moment,
/// and only what still drifts is reported; what could never be read so is reported unsettled.
pub async fn settle(store: &Store, ledger: &Ledger) -> Result<Report, StoreError> {
    let mut report = Report { accounts: ledger.balances.len(), purchases: ledger.purchases_read, ..Report::default() };
    for suspect in ledger.drift() {
        report.rechecked += 1;
        match recheck(store, &suspect.account_id).await? {
            Some(still) => report.drift.extend(still),
            None => report.unsettled.push(suspect.account_id),
        }
    }
    for suspect in ledger.agency_drift() {
        report.rechecked += 1;
        match recheck_agency(store, &suspect.agency_id).await? {
            AgencyCheck::Clean => {}
            AgencyCheck::Drifting(drift) => report.agency_drift.push(drift),
            AgencyCheck::Unsettled => report.unsettled_agencies.push(suspect.agency_id),
        }
    }
    Ok(report)
}

enum AgencyCheck {
    Clean,
    Drifting(AgencyDrift),
    Unsettled,
}

/// An agency's line read again as of one moment ([`Store::agency_line_figures`]): clean as soon as one such read
/// agrees; drifting only when two such reads a pause apart show the same figures (the purchases come from an
/// index that lags the table by a moment, so one read can miss a purchase the line already holds).
async fn recheck_agency(store: &Store, agency_id: &str) -> Result<AgencyCheck, StoreError> {
    let mut seen = None;
    for round in 0..RECHECK_ROUNDS {
        match store.agency_line_figures(agency_id).await {
            Ok(None) => return Ok(AgencyCheck::Clean),
            Ok(Some((available, expected))) if available == expected => return Ok(AgencyCheck::Clean),
            Ok(Some(figures)) if seen == Some(figures) => {
                let (available, expected) = figures;
                return Ok(AgencyCheck::Drifting(AgencyDrift { agency_id: agency_id.to_owned(), available, expected }));
            }
            Ok(Some(figures)) => seen = Some(figures),
            Err(StoreError::Unavailable(_)) => seen = None,
            Err(e) => return Err(e),
        }
        if round + 1 < RECHECK_ROUNDS {
            let pause = RECHECK_PAUSE * 2u32.pow(round);
            tokio::time::sleep(pause / 2 + pause.mul_f64(fastrand::f64() / 2.0)).await;
        }
    }
    Ok(AgencyCheck::Unsettled)
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
    // (Boxed: the SDK's paginator futures make these types too deep to lay out inline.)
    let report = Box::pin(check(store, segments)).await?;
    let drift = report.drift;
    let overdue_cycle = overdue_cycle(now);
    let (mut overdue, mut still_building) = (0, 0);
    if let Some(cycle) = &overdue_cycle {
        let cycle = CycleEnd::parse(cycle).map_err(|e| StoreError::Internal(format!("cycle end {cycle}: {e}")))?;
        overdue = Box::pin(count_unbilled_before(store, &cycle)).await?;
        // A day after the cycle end its index has long caught up: anything here was missed by the final run.
        still_building = store.count_building_statements(&cycle).await?;
    }
    for d in &drift {
        tracing::warn!(account_id = %d.account_id, "{}", describe(d));
    }
    for d in &report.agency_drift {
        tracing::warn!(agency_id = %d.agency_id, "{}", describe_agency(d));
    }
    // Neither clean nor proven drifting: an account or agency line under steady traffic, or real drift hidden by
    // it. Reported (and alarmed on when it lasts), never dropped.
    for account_id in &report.unsettled {
        tracing::warn!(account_id = %account_id, "UNSETTLED {account_id}: looked drifting, kept changing on every re-check");
    }
    for agency_id in &report.unsettled_agencies {
        tracing::warn!(agency_id = %agency_id, "UNSETTLED agency {agency_id}: its line looked drifting and kept moving on every re-check");
    }
    let figures = shared::metrics::ReconcileFigures {
        accounts_checked: report.accounts as u64,
        purchases_read: report.purchases,
        // Agencies whose line drifts count too: each is a drift someone must look at.
        drifting_accounts: (drift.len() + report.agency_drift.len()) as u64,
        overdue_unbilled_purchases: overdue,
        unsettled: (report.unsettled.len() + report.unsettled_agencies.len()) as u64,
        statements_still_building: still_building,
        duration: started.elapsed(),
    };
    tracing::info!(
        accounts_checked = figures.accounts_checked,
        purchases_read = figures.purchases_read,
        drifting_accounts = figures.drifting_accounts,
        unsettled = figures.unsettled,
        overdue_unbilled_purchases = figures.overdue_unbilled_purchases,
        statements_still_building = figures.statements_still_building,
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
            if let Some(page) = store.unbilled_pages(kind, shard, cycle, None, None).next().await {
                count += page?.items_read;
            }
        }
    }
    Ok(count)
}
