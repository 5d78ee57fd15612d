//! One consumption from plan to commit: the account's facts (remembered, or one `GetItem` on a cold container),
//! the plan (`domain::consumption_plan`), one `TransactWriteItems`; on a failed condition the account item that
//! came back with the cancellation refreshes the facts and the plan is made again, a bounded number of times.
//!
//! A warm consumption of types without rules is one DynamoDB call, a refusal too. With rules: still one call
//! while the facts hold; a top-up first needs the agency's prices (remembered for 30 s, else one
//! `BatchGetItem`); a consumption near a threshold that raced another pays one more transaction per re-plan; a
//! refusal decided before any transaction (cold, or confirmed by a read) reads the marker first (a replay wins).

use std::time::{Duration, SystemTime};

use super::facts::Consumer;
use crate::domain::consumption_plan::{AccountFacts, Decision, Plan, PlanInputs, plan};
use crate::domain::ledger::{Consumption, Shortfall};
use crate::domain::{EffectivePricing, PurchaseRecord, PurchaseTrigger, time};
use crate::storage::{AttemptOutcome, ConsumeAttempt, ConsumptionReceipt, StoreError};

/// Transactions one consumption may send before answering `StorageUnavailable` (the caller retries with the
/// same `consumptionId`: exactly once holds).
const MAX_ATTEMPTS: u32 = 10;

/// How a consumption ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Consumed {
    Done { replayed: bool, receipt: Box<ConsumptionReceipt> },
    IdReused,
    AccountMissing,
    Insufficient(Vec<Shortfall>),
}

pub(super) async fn consume(
    consumer: &Consumer,
    consumption: &Consumption,
    entry_id: &str,
    now: SystemTime,
) -> Result<Consumed, StoreError> {
    let account_id = &consumption.account_id;
    let created_at = time::timestamp(now);
    let today = &created_at[..10];
    let (mut facts, mut exact) = match consumer.facts.get(account_id) {
        Some(facts) => (facts, false),
        None => match consumer.read_facts(account_id).await? {
            Some(facts) => (facts, true),
            None => return Ok(Consumed::AccountMissing),
        },
    };
    let mut pricing = None;
    // The agency whose line refused this call's top-up (a refusal holds for that agency only; its transaction
    // checks that the line still lacks the cost).
    let mut ceiling_refused: Option<String> = None;
    let mut attempts = 0;
    loop {
        let refused_here = ceiling_refused.as_deref() == Some(facts.agency_id.as_str());
        let plan = match decide(consumer, &facts, consumption, today, &mut pricing, refused_here, exact).await? {
            Ok(plan) => plan,
            Err(short) if exact => {
                // Decided before any transaction of this call: a replay of an earlier consumption answers first.
                if attempts == 0 {
                    match consumer.store.earlier_consumption(consumption).await? {
                        Some(AttemptOutcome::Replayed(receipt)) => {
                            return Ok(Consumed::Done { replayed: true, receipt: Box::new(receipt) });
                        }
                        Some(_) => return Ok(Consumed::IdReused),
                        None => {}
                    }
                }
                return Ok(Consumed::Insufficient(short));
            }
            // Refused on remembered balances: read them before saying so.
            Err(_) => match consumer.read_facts(account_id).await? {
                Some(read) => {
                    (facts, exact) = (read, true);
                    continue;
                }
                None => return Ok(Consumed::AccountMissing),
            },
        };
        let planned = Planned::new(plan, account_id, &facts.agency_id, now);
        let attempt = planned.attempt(consumption, &facts.agency_id, entry_id, &created_at, pricing.as_ref());
        attempts += 1;
        match consumer.store.consume_planned(attempt).await? {
            AttemptOutcome::Consumed(receipt) => {
                consumer.facts.put(account_id, facts.after(&planned.plan, today));
                return Ok(Consumed::Done { replayed: false, receipt: Box::new(receipt) });
            }
            AttemptOutcome::Replayed(receipt) => {
                return Ok(Consumed::Done { replayed: true, receipt: Box::new(receipt) });
            }
            AttemptOutcome::IdReused => return Ok(Consumed::IdReused),
            AttemptOutcome::AccountMissing => {
                consumer.facts.remove(account_id);
                return Ok(Consumed::AccountMissing);
            }
            AttemptOutcome::AccountChanged { account, pricing_stale } => {
                (facts, exact) = (AccountFacts::of(&account), true);
                consumer.facts.put(account_id, facts.clone());
                if pricing_stale {
                    pricing = Some(consumer.pricing_of(&facts.agency_id, true).await?);
                }
            }
            AttemptOutcome::PricingChanged => pricing = Some(consumer.pricing_of(&facts.agency_id, true).await?),
            AttemptOutcome::AgencyCeiling => ceiling_refused = Some(facts.agency_id.clone()),
            AttemptOutcome::AgencyCeilingLifted => ceiling_refused = None,
        }
        if attempts >= MAX_ATTEMPTS {
            tracing::warn!(attempts, %account_id, "consumption: the account kept changing; giving up");
            return Err(StoreError::Unavailable(format!(
                "consumption on {account_id}: the account changed under {attempts} attempts"
            )));
        }
        // A short full-jitter pause spreads consumptions that re-plan against each other.
        let ceiling = Duration::from_millis(4 << attempts.min(5));
        tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
    }
}

/// The plan for these facts, with the agency's prices read (remembered, else one `BatchGetItem`) when a top-up
/// needs a quote; `pricing` keeps them for the call's next attempts. `Err`: the shortfalls it refuses on.
async fn decide(
    consumer: &Consumer,
    facts: &AccountFacts,
    consumption: &Consumption,
    today: &str,
    pricing: &mut Option<EffectivePricing>,
    agency_ceiling_refused: bool,
    balances_exact: bool,
) -> Result<Result<Plan, Vec<Shortfall>>, StoreError> {
    if pricing.as_ref().is_some_and(|p| p.agency_id != facts.agency_id) {
        *pricing = None;
    }
    loop {
        let inputs = PlanInputs {
            today,
            daily_cap: consumer.settings.auto_topup_daily_cap,
            pricing: pricing.as_ref(),
            agency_ceiling_refused,
            balances_exact,
        };
        match plan(facts, &consumption.quantities, inputs) {
            Decision::Commit(plan) => return Ok(Ok(plan)),
            Decision::Refuse(short) => return Ok(Err(short)),
            // Only asked for while `pricing` is `None`: the next round has them.
            Decision::NeedsPricing => *pricing = Some(consumer.pricing_of(&facts.agency_id, false).await?),
        }
    }
}

/// A plan that can commit and the top-up purchase made from it (a fresh purchase id per plan): what one attempt
/// sends.
struct Planned {
    plan: Plan,
    topup: Option<PurchaseRecord>,
}

impl Planned {
    fn new(plan: Plan, account_id: &str, agency_id: &str, now: SystemTime) -> Planned {
        let topup = plan.topup.as_ref().map(|topup| PurchaseRecord {
            trigger: PurchaseTrigger::AutoTopup,
            ..PurchaseRecord::unbilled(
                uuid::Uuid::now_v7().to_string(),
                account_id,
                agency_id,
                now,
                topup.quote.clone(),
                None,
            )
        });
        Planned { plan, topup }
    }

    fn attempt<'a>(
        &'a self,
        consumption: &'a Consumption,
        agency_id: &'a str,
        entry_id: &'a str,
        created_at: &'a str,
        pricing: Option<&'a EffectivePricing>,
    ) -> ConsumeAttempt<'a> {
        ConsumeAttempt {
            consumption,
            agency_id,
            entry_id,
            created_at,
            today: &created_at[..10],
            plan: &self.plan,
            pricing,
            topup: self.topup.as_ref(),
        }
    }
}

#[cfg(feature = "bench-internals")]
impl Consumer {
    /// The items the next warm consumption of `consumption` would send, planned as [`consume`] plans (from the
    /// remembered facts, else one read; prices remembered, else one read), never sent; the account is then
    /// remembered as the plan leaves it, as after a commit. For the benchmark's bare-SDK side only.
    pub async fn next_transaction_for_bench(
        &self,
        consumption: &Consumption,
        entry_id: &str,
        now: SystemTime,
    ) -> Result<Vec<aws_sdk_dynamodb::types::TransactWriteItem>, StoreError> {
        let account_id = &consumption.account_id;
        let created_at = time::timestamp(now);
        let today = &created_at[..10];
        let facts = match self.facts.get(account_id) {
            Some(facts) => facts,
            None => self
                .read_facts(account_id)
                .await?
                .ok_or_else(|| StoreError::Internal(format!("bench: no account {account_id}")))?,
        };
        let mut pricing = None;
        let plan = decide(self, &facts, consumption, today, &mut pricing, false, false)
            .await?
            .map_err(|short| StoreError::Internal(format!("bench: the consumption would be refused: {short:?}")))?;
        let planned = Planned::new(plan, account_id, &facts.agency_id, now);
        let attempt = planned.attempt(consumption, &facts.agency_id, entry_id, &created_at, pricing.as_ref());
        let items = self.store.attempt_transaction_for_bench(attempt)?;
        self.facts.put(account_id, facts.after(&planned.plan, today));
        Ok(items)
    }
}
