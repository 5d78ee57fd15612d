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
use crate::domain::consumption_plan::{AccountFacts, Decision, PlanInputs, plan};
use crate::domain::ledger::{Consumption, Shortfall};
use crate::domain::{PurchaseRecord, PurchaseTrigger, time};
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
    let mut ceiling_refused = false;
    let mut attempts = 0;
    loop {
        if pricing.as_ref().is_some_and(|p: &crate::domain::EffectivePricing| p.agency_id != facts.agency_id) {
            pricing = None;
        }
        let inputs = PlanInputs {
            today,
            daily_cap: consumer.settings.auto_topup_daily_cap,
            pricing: pricing.as_ref(),
            agency_ceiling_refused: ceiling_refused,
            balances_exact: exact,
        };
        let plan = match plan(&facts, &consumption.quantities, inputs) {
            Decision::Commit(plan) => plan,
            Decision::NeedsPricing => {
                pricing = Some(consumer.pricing_of(&facts.agency_id, false).await?);
                continue;
            }
            Decision::Refuse(short) if exact => {
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
            Decision::Refuse(_) => match consumer.read_facts(account_id).await? {
                Some(read) => {
                    (facts, exact) = (read, true);
                    continue;
                }
                None => return Ok(Consumed::AccountMissing),
            },
        };
        let topup = plan.topup.as_ref().map(|topup| PurchaseRecord {
            trigger: PurchaseTrigger::AutoTopup,
            ..PurchaseRecord::unbilled(
                uuid::Uuid::now_v7().to_string(),
                account_id,
                &facts.agency_id,
                now,
                topup.quote.clone(),
                None,
            )
        });
        let attempt = ConsumeAttempt {
            consumption,
            agency_id: &facts.agency_id,
            entry_id,
            created_at: &created_at,
            today,
            plan: &plan,
            pricing: pricing.as_ref(),
            topup: topup.as_ref(),
        };
        attempts += 1;
        match consumer.store.consume_planned(attempt).await? {
            AttemptOutcome::Consumed(receipt) => {
                consumer.facts.put(account_id, facts.after(&plan, today));
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
            AttemptOutcome::AgencyCeiling => ceiling_refused = true,
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
