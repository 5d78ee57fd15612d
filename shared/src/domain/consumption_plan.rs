//! What one consumption does, decided from the account's facts as last seen (issue #25): each type's balance
//! change, the `credits.low` alerts that fire, the auto top-up it buys (or why not), or its refusal.
//!
//! The facts may be stale (a per-container cache), so the plan also says, per type, the range of balances
//! before for which every decision it made stays the same: the transaction commits only while the balance is in
//! that range (and the rules, the agency, the day's top-ups and the line are as read), so a decision made on a
//! stale balance can never commit. A type without rules only needs `balance >= quantity`, so consumptions far
//! from any threshold never conflict on their conditions.

use rust_decimal::Decimal;

use super::ledger::{Quantities, Shortfall};
use super::purchase::{self, Quote, quote};
use super::rules::{ConsumptionRules, TopupsOnDay};
use super::{Account, Balances, CreditType, EffectivePricing};
use crate::domain::events::TopupRefusal;

/// What a consumption decides by, as last read from the account item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub agency_id: String,
    pub balances: Balances,
    /// `None`: no line was ever given, nothing can be bought on it.
    pub line_available: Option<Decimal>,
    pub on_hold: bool,
    pub rules: ConsumptionRules,
    pub topups: Option<TopupsOnDay>,
}

impl AccountFacts {
    pub fn of(account: &Account) -> AccountFacts {
        AccountFacts {
            agency_id: account.agency_id.clone(),
            balances: account.balances.clone(),
            line_available: account.credit_line.map(|line| line.available),
            on_hold: !account.held_statement_ids.is_empty(),
            rules: account.rules.clone(),
            topups: account.topups.clone(),
        }
    }

    /// The facts after `plan` committed, as far as this container can tell (the balances are estimates: other
    /// writers may have moved them; the next transaction's conditions say).
    pub fn after(&self, plan: &Plan, today: &str) -> AccountFacts {
        let mut next = self.clone();
        for change in &plan.changes {
            let balance = next.balances.0.entry(change.credit_type).or_default();
            *balance = balance.saturating_add(change.bought).saturating_sub(change.consumed);
        }
        if let Some(topup) = &plan.topup {
            next.line_available = next.line_available.map(|available| available - topup.quote.total);
            next.topups = Some(TopupsOnDay { day: today.to_owned(), count: topup.count_before + 1 });
        }
        next
    }
}

/// The condition on one type's balance before the consumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceCondition {
    /// `balance >= n`: a type without rules (only enough matters).
    AtLeast(u64),
    /// `lo <= balance <= hi`: every decision about the type is the same across the range.
    Between(u64, u64),
}

/// One consumed type: taken, bought by the top-up, and the balance it needs before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeChange {
    pub credit_type: CreditType,
    pub consumed: u64,
    pub bought: u64,
    pub condition: BalanceCondition,
}

impl TypeChange {
    pub fn change(&self) -> i128 {
        i128::from(self.bought) - i128::from(self.consumed)
    }
}

/// `credits.low`: the balance went from at or above `threshold` to below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub credit_type: CreditType,
    pub threshold: u64,
    pub balance_after: u64,
}

/// The top-up bought inside the consumption: one purchase, one line per type that needed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopupPurchase {
    pub quote: Quote,
    /// The day's top-ups before this one (the transaction commits only while that is still the count).
    pub count_before: u32,
}

/// A top-up wanted and not bought, with the conditions that make the refusal true when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopupRefused {
    pub reason: TopupRefusal,
    /// The types and quantities it would have bought.
    pub wanted: Quantities,
    /// The day's top-ups as read.
    pub count_before: u32,
    /// The total the line was too small for (`CreditLimit`) or had room for (`AgencyCeiling`).
    pub total: Option<Decimal>,
    /// `AgencyCeiling`: the top-up's total at cost, which the agency's line must still lack when the refusal
    /// commits (a ceiling raised or a void in between makes the refusal false: the consumption plans again).
    pub cost: Option<Decimal>,
}

/// A consumption that can commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<TypeChange>,
    pub alerts: Vec<Alert>,
    pub topup: Option<TopupPurchase>,
    pub topup_refused: Option<TopupRefused>,
    /// The rules version decided by, and the day's count as read: conditions of the transaction.
    pub rules_version: u64,
    /// Whether a top-up was wanted at all: only then do the day's count and the hold matter.
    pub topup_wanted: bool,
    pub on_hold: bool,
}

/// What the consumption does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Commit(Plan),
    /// Not enough credits even with what a top-up could buy: nothing is written.
    Refuse(Vec<Shortfall>),
    /// A top-up is wanted and must be quoted: read the agency's effective prices, then plan again.
    NeedsPricing,
}

/// What the plan is made with besides the facts.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    /// UTC day, `YYYY-MM-DD`.
    pub today: &'a str,
    pub daily_cap: u32,
    pub pricing: Option<&'a EffectivePricing>,
    /// The agency's line refused this top-up's cost in this call: plan without it.
    pub agency_ceiling_refused: bool,
    /// Whether the balances were read in this call: only then is a type without rules refused here (else its
    /// `balance >= quantity` condition decides, and the cancellation brings the balances back).
    pub balances_exact: bool,
}

/// Decides one consumption of `quantities` on an account with these facts.
pub fn plan(facts: &AccountFacts, quantities: &Quantities, inputs: PlanInputs<'_>) -> Decision {
    let rules = &facts.rules;
    // 1. Which types would end below their top-up rule without one.
    let wanted: Quantities = quantities
        .iter()
        .filter_map(|(t, q)| {
            let rule = rules.topups.get(t)?;
            (facts.balances.get(*t) < rule.below.saturating_add(*q)).then_some((*t, rule.buy))
        })
        .collect();
    let count_before = TopupsOnDay::count_on(facts.topups.as_ref(), inputs.today);

    // 2. Bought, or refused with its reason.
    let mut topup = None;
    let mut topup_refused = None;
    if !wanted.is_empty() {
        let refuse =
            |reason, total, cost| Some(TopupRefused { reason, wanted: wanted.clone(), count_before, total, cost });
        if facts.on_hold {
            topup_refused = refuse(TopupRefusal::AccountOnHold, None, None);
        } else if count_before >= inputs.daily_cap {
            topup_refused = refuse(TopupRefusal::DailyCap, None, None);
        } else {
            let Some(pricing) = inputs.pricing else { return Decision::NeedsPricing };
            let request = purchase::Quantities::from_pairs(wanted.iter().map(|(t, q)| (*t, *q)));
            match quote(pricing, &request) {
                Err(_) => topup_refused = refuse(TopupRefusal::BelowMinimum, None, None),
                Ok(quote) if facts.line_available.is_none_or(|available| available < quote.total) => {
                    topup_refused = refuse(TopupRefusal::CreditLimit, Some(quote.total), None)
                }
                Ok(quote) if inputs.agency_ceiling_refused => {
                    topup_refused = refuse(TopupRefusal::AgencyCeiling, Some(quote.total), Some(quote.total_at_cost))
                }
                Ok(quote) => topup = Some(TopupPurchase { quote, count_before }),
            }
        }
    }
    let bought = |t: CreditType| {
        topup.as_ref().map_or(0, |p: &TopupPurchase| {
            p.quote.lines.iter().filter(|l| l.credit_type == t).map(|l| l.quantity).sum()
        })
    };

    // 3. Per type: enough or not, the alert, and the range of balances before over which all of it holds.
    let mut changes = Vec::new();
    let mut alerts = Vec::new();
    let mut short = Vec::new();
    for (&credit_type, &consumed) in quantities {
        let balance = facts.balances.get(credit_type);
        let bought = bought(credit_type);
        let need = consumed.saturating_sub(bought);
        let threshold = rules.alert_thresholds.get(&credit_type).copied();
        let rule = rules.topups.get(&credit_type);
        let ruled = threshold.is_some() || rule.is_some();
        if balance < need && (ruled || inputs.balances_exact) {
            short.push(Shortfall {
                credit_type,
                balance: i64::try_from(balance).unwrap_or(i64::MAX),
                requested: consumed,
                short: need - balance,
            });
            continue;
        }
        if !ruled {
            changes.push(TypeChange { credit_type, consumed, bought, condition: BalanceCondition::AtLeast(consumed) });
            continue;
        }
        // Where a decision flips, as "balance >= p": enough, the top-up wanted, the alert.
        let mut flips = vec![need];
        if let Some(rule) = rule {
            flips.push(rule.below.saturating_add(consumed));
        }
        let fires = match threshold {
            Some(threshold) if need > 0 => {
                flips.extend([threshold, threshold.saturating_add(need)]);
                balance >= threshold && balance - need < threshold
            }
            _ => false,
        };
        let condition = if fires {
            // The alert carries the balance after: exact, so pinned (only the crossing consumption pays for it).
            alerts.push(Alert { credit_type, threshold: threshold.unwrap_or(0), balance_after: balance - need });
            BalanceCondition::Between(balance, balance)
        } else {
            let lo = flips.iter().copied().filter(|p| *p <= balance).max().unwrap_or(0);
            match flips.iter().copied().filter(|p| *p > balance).min() {
                Some(next) => BalanceCondition::Between(lo, next - 1),
                None => BalanceCondition::AtLeast(lo),
            }
        };
        changes.push(TypeChange { credit_type, consumed, bought, condition });
    }
    if !short.is_empty() {
        return Decision::Refuse(short);
    }
    Decision::Commit(Plan {
        changes,
        alerts,
        topup,
        topup_refused,
        rules_version: rules.version,
        topup_wanted: !wanted.is_empty(),
        on_hold: facts.on_hold,
    })
}

#[cfg(test)]
#[path = "consumption_plan_tests.rs"]
mod tests;
