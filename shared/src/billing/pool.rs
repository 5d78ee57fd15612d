//! The steps of one side in flight, at most the run's concurrency at once, never two of one statement.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::domain::billing::{StatementKind, Step};
use crate::storage::{StepOutcome, Store, StoreError};

use super::*;

/// What a step's task answers: its owner, its purchase ids, what it did and how it ended.
pub(super) type StepDone = (String, Vec<String>, Tally, Result<(), BillingError>);

/// The steps of one side in flight, each in its own task, at most `limit` at once and never two for the same
/// statement: two transactions on the one statement item would cancel each other (TransactionConflict), and
/// the statement's order of steps does not matter for its sums, only that each commits once.
///
/// Exactly once does not rest on this scheduling: each purchase's `billedTo… = false` condition, the
/// deterministic statement id and the `building` condition hold whatever runs alongside (other tasks, other
/// runs), as `storage::billing` explains.
pub(super) struct StepPool {
    pub(super) store: Store,
    pub(super) run: Arc<BillingRun>,
    pub(super) run_id: Arc<str>,
    pub(super) kind: StatementKind,
    pub(super) limit: usize,
    /// Steps waiting for a slot, in the order planned.
    pub(super) ready: VecDeque<Step>,
    /// Owners with a step in flight.
    pub(super) busy: HashSet<String>,
    pub(super) tasks: tokio::task::JoinSet<StepDone>,
    /// The first failure; no step starts after it.
    pub(super) error: Option<BillingError>,
    /// Which pages read still hold purchases not settled: where the side could resume.
    pub(super) marks: ReadMarks,
}

impl StepPool {
    pub(super) fn new(store: &Store, run: &BillingRun, run_id: &str, kind: StatementKind) -> StepPool {
        StepPool {
            store: store.clone(),
            run: Arc::new(run.clone()),
            run_id: Arc::from(run_id),
            kind,
            limit: run.concurrency.clamp(1, MAX_BILLING_CONCURRENCY),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            tasks: tokio::task::JoinSet::new(),
            error: None,
            marks: ReadMarks::default(),
        }
    }

    /// Starts waiting steps whose statement has none in flight, while slots are free.
    pub(super) fn start_ready(&mut self) {
        let mut i = 0;
        while self.error.is_none() && self.tasks.len() < self.limit && i < self.ready.len() {
            if self.busy.contains(&self.ready[i].owner) {
                i += 1;
                continue;
            }
            let Some(step) = self.ready.remove(i) else { break };
            self.busy.insert(step.owner.clone());
            let (store, run, run_id, kind) = (self.store.clone(), self.run.clone(), self.run_id.clone(), self.kind);
            self.tasks.spawn(async move {
                let owner = step.owner.clone();
                let ids = step.purchases.iter().map(|p| p.purchase_id.clone()).collect();
                let mut tally = Tally::default();
                let result = bill_step(&store, &run, &run_id, kind, step, &mut tally).await;
                (owner, ids, tally, result)
            });
        }
    }

    /// Starts and settles steps until at most `backlog` wait (and, for 0, none is in flight either).
    pub(super) async fn run_until(&mut self, backlog: usize, tally: &mut Tally) -> Result<(), BillingError> {
        loop {
            if let Some(error) = &self.error {
                return Err(error.clone());
            }
            self.start_ready();
            let done =
                if backlog == 0 { self.ready.is_empty() && self.tasks.is_empty() } else { self.ready.len() <= backlog };
            if done {
                return Ok(());
            }
            match self.tasks.join_next().await {
                Some(joined) => self.settle(joined, tally),
                // Nothing in flight and nothing could start: only with no slot at all, which `limit` >= 1 rules out.
                None => return Ok(()),
            }
        }
    }

    pub(super) fn settle(&mut self, joined: Result<StepDone, tokio::task::JoinError>, tally: &mut Tally) {
        let failure = match joined {
            Ok((owner, ids, step_tally, result)) => {
                self.busy.remove(&owner);
                tally.add(step_tally);
                if result.is_ok() {
                    self.marks.settled(&ids);
                }
                result.err()
            }
            Err(join_error) => {
                Some(BillingError::Storage(StoreError::Internal(format!("a billing step task failed: {join_error}"))))
            }
        };
        if let Some(failure) = failure {
            self.error.get_or_insert(failure);
        }
    }

    /// Waits for every step in flight, counting what they did; starts nothing new.
    pub(super) async fn settle_all(&mut self, tally: &mut Tally) {
        while let Some(joined) = self.tasks.join_next().await {
            self.settle(joined, tally);
        }
    }
}

/// Sends one step, dropping purchases another run billed meanwhile and sending the rest again.
pub(super) async fn bill_step(
    store: &Store,
    run: &BillingRun,
    run_id: &str,
    kind: StatementKind,
    mut step: Step,
    tally: &mut Tally,
) -> Result<(), BillingError> {
    let statement_id = kind.statement_id(&step.owner, &run.cycle_end);
    while !step.purchases.is_empty() {
        // The deadline is checked before each transaction, never inside one.
        if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(BillingError::OutOfTime);
        }
        match store.bill_step(kind, &run.cycle_end, &step, run_id).await? {
            StepOutcome::Committed(delta) => {
                tally.transactions += 1;
                tally.statements.insert(statement_id);
                tally.purchases_billed += delta.purchase_count;
                tally.amount += delta.total;
                return Ok(());
            }
            StepOutcome::AlreadyBilled(positions) => {
                tracing::info!(statement_id = %statement_id, count = positions.len(), "purchases already billed by another run; dropped");
                tally.already_billed += positions.len() as u64;
                step = step.without(&positions);
            }
            StepOutcome::StatementClosed => {
                tracing::warn!(
                    statement_id = %statement_id,
                    count = step.purchases.len(),
                    "statement no longer building; its purchases stay unbilled for the next cycle"
                );
                tally.left_for_next_cycle += step.purchases.len() as u64;
                return Ok(());
            }
        }
    }
    Ok(())
}
