//! The run's loop: reads pages of unbilled purchases per shard, plans steps, hands them to the step pool,
//! keeps the resume position, then makes the cycle's statements payable page by page.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use rust_decimal::Decimal;

use crate::domain::billing::{StatementKind, StepPlanner};
use crate::domain::round_to_cents;
use crate::storage::billing::MAX_PURCHASES_PER_STEP;
use crate::storage::{Store, StoreError};
use crate::table::UNBILLED_SHARDS;

use super::*;

/// Bills every purchase created before the run's cycle end that is not yet billed, to its client and to its
/// agency, independently (or, for a slice run, on the slice's side to the slice's owners only). Reads only the
/// sparse unbilled indexes (Query per shard, never a Scan), so the work grows with the unbilled purchases, not
/// with the table.
pub async fn run_billing(store: &Store, run: &BillingRun) -> Result<RunSummary, BillingError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::now_v7().to_string();
    let side = run.slice.map(|slice| slice.side);
    let part = run.slice.and_then(|slice| slice.part);
    tracing::info!(
        run_id = %run_id,
        cycle_end = %run.cycle_end,
        side = side.map(StatementKind::as_str),
        part = part.map(|p| p.to_string()),
        "billing run started"
    );
    let bills_side = |kind: StatementKind| side.is_none_or(|side| side == kind);
    // One side after the other, never both at once: both sides update the same purchase items, and DynamoDB
    // cancels a transaction touching an item another transaction is writing (TransactionConflict). The agency
    // side runs even if the client side failed on bad data, as the two are billed independently ...
    // (Boxed: the SDK's paginator futures nested in the run's loops make a type too deep to lay out inline.)
    let mut client = Tally::default();
    let client_result = if bills_side(StatementKind::Client) {
        Box::pin(bill_side(store, run, &run_id, StatementKind::Client, &mut client)).await
    } else {
        Ok(())
    };
    let mut agency = Tally::default();
    // ... unless DynamoDB is unavailable or time is up: with steps in parallel, pressing on with the other side
    // would only add load to a throttled table (and retries) for a run that must be repeated anyway.
    let agency_result = match &client_result {
        Err(stop @ (BillingError::OutOfTime | BillingError::Storage(StoreError::Unavailable(_)))) => Err(stop.clone()),
        _ if bills_side(StatementKind::Agency) => {
            Box::pin(bill_side(store, run, &run_id, StatementKind::Agency, &mut agency)).await
        }
        _ => Ok(()),
    };
    // Only a run that billed every purchase of the cycle on both sides makes its statements payable; an
    // unfinished one leaves them `building` for the run that finishes the cycle, and so does a slice run, which
    // cannot know whether the rest of the cycle is billed.
    let mut made_payable = 0;
    let mut result = client_result.and(agency_result);
    let finishing = Instant::now();
    if result.is_ok() && run.slice.is_none() {
        result = finish_cycle(store, run, &mut made_payable).await;
    }
    let finish_ms = finishing.elapsed().as_millis() as u64;
    // The deadline, or a table that stayed throttled or unavailable through a step's retries, stopped a run that
    // made progress: with `hand_over`, an answer saying where to go on (the same cycle end: the unbilled indexes
    // and the building set are the record of what is left) instead of a failure, so a long throttled month is
    // not failed by a caller's bounded retries while it still moves. A run that changed nothing still fails (the
    // caller retries that with backoff), so a caller looping on `complete` cannot spin forever.
    let stopped_by = match &result {
        Err(stop @ (BillingError::OutOfTime | BillingError::Storage(StoreError::Unavailable(_)))) => Some(stop.clone()),
        _ => None,
    };
    // A slice run's reading position: pages read (and their purchases settled) are progress too, so a part
    // that owns nothing on a long index hands over where it stopped instead of failing with nothing done.
    let start = run.resume.clone().unwrap_or(ResumeAt::START);
    let resume_at = run
        .slice
        .and_then(|slice| match slice.side {
            StatementKind::Client => client.resume_at.take(),
            StatementKind::Agency => agency.resume_at.take(),
        })
        .filter(|position| position.shard < UNBILLED_SHARDS);
    let read_on = resume_at.as_ref().is_some_and(|position| *position != start);
    let progress = client.transactions + agency.transactions + made_payable > 0 || read_on;
    let handed_over = run.hand_over && stopped_by.is_some() && progress;
    if handed_over {
        result = Ok(());
    }
    let summary = RunSummary {
        run_id,
        cycle_end: run.cycle_end.to_string(),
        side,
        part,
        client_statements_written: client.statements.len() as u64,
        agency_statements_written: agency.statements.len() as u64,
        purchases_billed_to_client: client.purchases_billed,
        purchases_billed_to_agency: agency.purchases_billed,
        // Sums of cent amounts: rounding only fixes the rendering at two places ("0.00").
        total_at_price: round_to_cents(client.amount),
        total_at_cost: round_to_cents(agency.amount),
        items_read: client.items_read + agency.items_read,
        items_scanned: client.items_scanned + agency.items_scanned,
        queries: client.queries + agency.queries,
        purchases_in_other_parts: part.map(|_| client.in_other_parts + agency.in_other_parts),
        transactions: client.transactions + agency.transactions,
        purchases_already_billed: client.already_billed + agency.already_billed,
        purchases_left_for_next_cycle: client.left_for_next_cycle + agency.left_for_next_cycle,
        statements_made_payable: made_payable,
        duration_ms: started.elapsed().as_millis() as u64,
        finish_ms,
        complete: !handed_over,
        continue_with: handed_over.then(|| continuation(run, resume_at.as_ref().or(run.resume.as_ref()))),
        handed_over_on: stopped_by.filter(|_| handed_over).map(|stop| stop.error_type()),
    };
    log_summary(&summary, result.as_ref().err());
    result.map(|()| summary)
}

/// Makes the cycle's statements payable, a page at a time (`made_payable` counts as it goes, so a hand-over
/// reports what it did). The state index is eventually consistent, so one pass may miss a statement the last
/// step wrote a moment before: the building set is read again, after a short growing pause, until a whole
/// pass finds it empty. The deadline is checked before every page.
pub(super) async fn finish_cycle(store: &Store, run: &BillingRun, made_payable: &mut u64) -> Result<(), BillingError> {
    // Counted from now, when the statements become payable (a late run gives clients the same days to pay).
    let due_at = crate::domain::billing::due_at(&run.cycle_end, SystemTime::now(), run.payment_due_days);
    let out_of_time = || run.deadline.is_some_and(|deadline| Instant::now() >= deadline);
    let mut pause = FIRST_FINISH_PAUSE;
    loop {
        let mut found = 0;
        let mut after = None;
        loop {
            if out_of_time() {
                return Err(BillingError::OutOfTime);
            }
            let page = store.building_statements_page(&run.cycle_end, run.finish_page_size, after).await?;
            found += page.statements.len();
            *made_payable += store.make_payable(&page.statements, &due_at, run.concurrency).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if found == 0 {
            return Ok(());
        }
        // Sleep no later than the deadline, which the next page checks.
        let sleep =
            run.deadline.map_or(pause, |deadline| pause.min(deadline.saturating_duration_since(Instant::now())));
        tokio::time::sleep(sleep).await;
        pause = (pause * 2).min(MAX_FINISH_PAUSE);
    }
}

/// One side's counts, kept even when it fails so the partial summary can be logged.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) statements: std::collections::BTreeSet<String>,
    pub(super) purchases_billed: u64,
    pub(super) amount: Decimal,
    pub(super) items_read: u64,
    pub(super) items_scanned: u64,
    pub(super) queries: u64,
    pub(super) in_other_parts: u64,
    pub(super) transactions: u64,
    pub(super) already_billed: u64,
    pub(super) left_for_next_cycle: u64,
    /// A side's reading position when it stopped (set by [`bill_side`] only).
    pub(super) resume_at: Option<ResumeAt>,
}

impl Tally {
    pub(super) fn add(&mut self, other: Tally) {
        self.statements.extend(other.statements);
        self.purchases_billed += other.purchases_billed;
        self.amount += other.amount;
        self.items_read += other.items_read;
        self.items_scanned += other.items_scanned;
        self.queries += other.queries;
        self.in_other_parts += other.in_other_parts;
        self.transactions += other.transactions;
        self.already_billed += other.already_billed;
        self.left_for_next_cycle += other.left_for_next_cycle;
    }
}

/// Reads one side's unbilled purchases, shard after shard, and bills them in steps, up to
/// `run.concurrency` steps in flight while the next pages are read. A slice run skips the purchases of owners
/// outside its part before they are batched.
pub(super) async fn bill_side(
    store: &Store,
    run: &BillingRun,
    run_id: &str,
    kind: StatementKind,
    tally: &mut Tally,
) -> Result<(), BillingError> {
    let batch_size = run.purchases_per_transaction.clamp(1, MAX_PURCHASES_PER_STEP);
    // Steps fill across pages and shards.
    let mut planner = StepPlanner::new(kind, batch_size, run.max_buffered_purchases);
    let mut pool = StepPool::new(store, run, run_id, kind);
    // Steps waiting for a slot beyond this stop the reading until some finish (memory stays bounded).
    let backlog = 2 * pool.limit;
    let start = run.resume.clone().unwrap_or(ResumeAt::START);
    pool.marks.read_to = start.clone();
    let result = async {
        for shard in start.shard..UNBILLED_SHARDS {
            let after = if shard == start.shard { start.after.clone() } else { None };
            let mut pages = store.unbilled_pages(kind, shard, &run.cycle_end, after, run.read_page_size);
            loop {
                // Per page, not only before a transaction: a part that owns nothing on a long index sends none.
                if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return Err(BillingError::OutOfTime);
                }
                let page_start = ResumeAt { shard, after: pages.position().cloned() };
                let Some(page) = pages.next().await else { break };
                let page = page?;
                let seq = pool.marks.begin_page(page_start);
                tally.queries += 1;
                tally.items_read += page.items_read;
                tally.items_scanned += page.items_scanned;
                for purchase in page.purchases {
                    // The index is sharded by purchase, not by owner, so every part reads the whole side and
                    // keeps its own owners: reads are cheap next to the transactional writes (2 units per KB),
                    // and disjoint owners mean no two parts ever write the same item.
                    if run.slice.is_some_and(|slice| !slice.bills(kind, kind.owner(&purchase))) {
                        tally.in_other_parts += 1;
                        continue;
                    }
                    pool.marks.hold(seq, &purchase.purchase_id);
                    if let Some(step) = planner.push(purchase) {
                        pool.ready.push_back(step);
                    }
                }
                let read_to = match pages.position() {
                    Some(next) => ResumeAt { shard, after: Some(next.clone()) },
                    None => ResumeAt { shard: shard + 1, after: None },
                };
                pool.marks.end_page(seq, read_to);
                pool.ready.extend(planner.flush_if_full());
                pool.run_until(backlog, tally).await?;
            }
        }
        pool.ready.extend(planner.drain());
        pool.run_until(0, tally).await
    }
    .await;
    // Whatever happened, the steps in flight end (committed or not) before the side does.
    pool.settle_all(tally).await;
    tally.resume_at = Some(pool.marks.position());
    result
}

/// Where a side's reading could resume without skipping a purchase it holds: the pages read, in order, each
/// with its purchases of the slice not yet settled. The position is the start of the oldest page with one
/// unsettled (held in the planner, waiting, in flight or failed), else the end of the last page read.
#[derive(Default)]
pub(super) struct ReadMarks {
    pub(super) next_page: u64,
    /// Page number -> (where the page started, its purchases not yet settled).
    pub(super) pages: BTreeMap<u64, (ResumeAt, usize)>,
    pub(super) page_of: HashMap<String, u64>,
    /// Where the page after the last one read starts.
    pub(super) read_to: ResumeAt,
}

impl Default for ResumeAt {
    fn default() -> ResumeAt {
        ResumeAt::START
    }
}

impl ReadMarks {
    pub(super) fn begin_page(&mut self, start: ResumeAt) -> u64 {
        let page = self.next_page;
        self.next_page += 1;
        self.pages.insert(page, (start, 0));
        page
    }

    pub(super) fn hold(&mut self, page: u64, purchase_id: &str) {
        if let Some((_, held)) = self.pages.get_mut(&page)
            && self.page_of.insert(purchase_id.to_owned(), page).is_none()
        {
            *held += 1;
        }
    }

    pub(super) fn end_page(&mut self, page: u64, read_to: ResumeAt) {
        if self.pages.get(&page).is_some_and(|(_, held)| *held == 0) {
            self.pages.remove(&page);
        }
        self.read_to = read_to;
    }

    /// These purchases' step ended without error: they are billed (by us or another run) or left for the next
    /// cycle.
    pub(super) fn settled(&mut self, purchase_ids: &[String]) {
        for id in purchase_ids {
            let Some(page) = self.page_of.remove(id) else { continue };
            if let Some((_, held)) = self.pages.get_mut(&page) {
                *held -= 1;
                if *held == 0 {
                    self.pages.remove(&page);
                }
            }
        }
    }

    pub(super) fn position(&self) -> ResumeAt {
        self.pages.values().next().map_or_else(|| self.read_to.clone(), |(start, _)| start.clone())
    }
}

/// One JSON log line with every figure as its own field, so Logs Insights can query and graph them.
pub(super) fn log_summary(summary: &RunSummary, error: Option<&BillingError>) {
    macro_rules! log_with {
        ($level:ident, $message:literal $(, $extra:tt)*) => {
            tracing::$level!(
                $($extra,)*
                run_id = %summary.run_id,
                cycle_end = %summary.cycle_end,
                side = summary.side.map(StatementKind::as_str),
                part = summary.part.map(|p| p.to_string()),
                client_statements_written = summary.client_statements_written,
                agency_statements_written = summary.agency_statements_written,
                purchases_billed_to_client = summary.purchases_billed_to_client,
                purchases_billed_to_agency = summary.purchases_billed_to_agency,
                total_at_price = %summary.total_at_price,
                total_at_cost = %summary.total_at_cost,
                items_read = summary.items_read,
                items_scanned = summary.items_scanned,
                queries = summary.queries,
                purchases_in_other_parts = summary.purchases_in_other_parts,
                transactions = summary.transactions,
                purchases_already_billed = summary.purchases_already_billed,
                purchases_left_for_next_cycle = summary.purchases_left_for_next_cycle,
                statements_made_payable = summary.statements_made_payable,
                duration_ms = summary.duration_ms,
                finish_ms = summary.finish_ms,
                complete = summary.complete,
                handed_over_on = summary.handed_over_on,
                $message
            )
        };
    }
    match error {
        None if !summary.complete => {
            log_with!(
                warn,
                "billing run handed over (deadline, or a throttled table); invoke it again with continueWith"
            )
        }
        None => log_with!(info, "billing run finished"),
        Some(err) => {
            let error = err.to_string();
            let error_type = err.error_type();
            log_with!(error, "billing run did not finish; run it again with the same cycleEnd", error, error_type)
        }
    }
}
