use std::collections::BTreeMap;

use super::*;
use crate::domain::pricing::resolve_pricing;
use crate::domain::pricing::tests::{d, default_pricing};
use crate::domain::rules::{AlertThresholds, TopupRule, TopupRules};

const TODAY: &str = "2026-12-07";
const A: CreditType = CreditType::Audience;
const P: CreditType = CreditType::Pixel;

fn facts(balances: &[(CreditType, u64)]) -> AccountFacts {
    AccountFacts {
        agency_id: "agency-a".into(),
        balances: Balances(balances.iter().copied().collect()),
        line_available: Some(d("1000.00")),
        on_hold: false,
        rules: ConsumptionRules::default(),
        topups: None,
    }
}

fn alert_at(mut facts: AccountFacts, credit_type: CreditType, threshold: u64) -> AccountFacts {
    facts.rules.alert_thresholds = AlertThresholds::from([(credit_type, threshold)]);
    facts.rules.version = 1;
    facts
}

fn topup_rule(mut facts: AccountFacts, credit_type: CreditType, below: u64, buy: u64) -> AccountFacts {
    facts.rules.topups.insert(credit_type, TopupRule { below, buy });
    facts.rules.version = 2;
    facts
}

/// Every type at 0.0500 at price, 0.0300 at cost.
fn pricing() -> EffectivePricing {
    resolve_pricing("agency-a", &default_pricing(), None).unwrap()
}

fn run(facts: &AccountFacts, quantities: &[(CreditType, u64)]) -> Decision {
    let pricing = pricing();
    let inputs = PlanInputs {
        today: TODAY,
        daily_cap: 3,
        pricing: Some(&pricing),
        agency_ceiling_refused: false,
        balances_exact: true,
    };
    plan(facts, &quantities.iter().copied().collect::<BTreeMap<_, _>>(), inputs)
}

fn committed(decision: Decision) -> Plan {
    match decision {
        Decision::Commit(plan) => plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

#[test]
fn without_rules_only_enough_matters_and_a_stale_balance_is_left_to_the_condition() {
    let plan = committed(run(&facts(&[(A, 10)]), &[(A, 4)]));
    assert_eq!(plan.changes[0].condition, BalanceCondition::AtLeast(4));
    assert_eq!(plan.changes[0].change(), -4);
    assert!(plan.alerts.is_empty() && plan.topup.is_none() && plan.topup_refused.is_none());
    // Exact balances refuse with the shortfall; cached ones let the transaction's condition decide.
    let Decision::Refuse(short) = run(&facts(&[(A, 3)]), &[(A, 4)]) else { panic!("refused") };
    assert_eq!((short[0].balance, short[0].short), (3, 1));
    let pricing = pricing();
    let stale = PlanInputs {
        today: TODAY,
        daily_cap: 3,
        pricing: Some(&pricing),
        agency_ceiling_refused: false,
        balances_exact: false,
    };
    let plan = committed(plan_of(&facts(&[(A, 3)]), &[(A, 4)], stale));
    assert_eq!(plan.changes[0].condition, BalanceCondition::AtLeast(4));
}

fn plan_of(facts: &AccountFacts, quantities: &[(CreditType, u64)], inputs: PlanInputs<'_>) -> Decision {
    plan(facts, &quantities.iter().copied().collect(), inputs)
}

#[test]
fn the_alert_fires_only_when_crossing_from_at_or_above_to_below() {
    let account = |balance| alert_at(facts(&[(A, balance)]), A, 10);
    // Exactly at the threshold before, one below after: fires, with the exact balance pinned.
    let plan = committed(run(&account(10), &[(A, 1)]));
    assert_eq!(plan.alerts, [Alert { credit_type: A, threshold: 10, balance_after: 9 }]);
    assert_eq!(plan.changes[0].condition, BalanceCondition::Between(10, 10));
    // Landing exactly on the threshold is not below it.
    let plan = committed(run(&account(12), &[(A, 2)]));
    assert!(plan.alerts.is_empty());
    assert_eq!(plan.changes[0].condition, BalanceCondition::AtLeast(12));
    // Already below: quiet, and the range says so (below the threshold, at least the quantity).
    let plan = committed(run(&account(9), &[(A, 1)]));
    assert!(plan.alerts.is_empty());
    assert_eq!(plan.changes[0].condition, BalanceCondition::Between(1, 9));
    // Far above: one open range, so it never conflicts with other consumptions far above.
    let plan = committed(run(&account(500), &[(A, 3)]));
    assert!(plan.alerts.is_empty());
    assert_eq!(plan.changes[0].condition, BalanceCondition::AtLeast(13));
    // A big consumption crossing from well above fires too.
    assert_eq!(committed(run(&account(40), &[(A, 35)])).alerts.len(), 1);
}

#[test]
fn every_balance_in_the_range_makes_the_same_decision() {
    // Brute force: for many facts, each balance inside the plan's range gives the same plan (but for the pinned
    // alert balance), and the balance just outside a closed range gives another.
    let rules = |balance| topup_rule(alert_at(facts(&[(A, balance)]), A, 20), A, 10, 15);
    for q in [1, 3, 7, 25] {
        for balance in 0..80 {
            let Decision::Commit(plan) = run(&rules(balance), &[(A, q)]) else { continue };
            let BalanceCondition::Between(lo, hi) = plan.changes[0].condition else {
                let BalanceCondition::AtLeast(lo) = plan.changes[0].condition else { unreachable!() };
                for other in lo..lo + 60 {
                    assert_eq!(committed(run(&rules(other), &[(A, q)])).changes, plan.changes, "q {q} b {other}");
                }
                continue;
            };
            assert!(lo <= balance && balance <= hi, "q {q} b {balance}: {lo}..={hi}");
            for other in lo..=hi {
                let again = committed(run(&rules(other), &[(A, q)]));
                assert_eq!(again.changes, plan.changes, "q {q} b {balance} vs {other}");
                assert_eq!(again.alerts.len(), plan.alerts.len());
                assert_eq!(again.topup.is_some(), plan.topup.is_some());
            }
            if let Decision::Commit(next) = run(&rules(hi + 1), &[(A, q)]) {
                let same = next.alerts.len() == plan.alerts.len() && next.topup.is_some() == plan.topup.is_some();
                assert!(!same || !plan.alerts.is_empty(), "q {q} b {balance}: {hi}+1 decides the same");
            }
        }
    }
}

#[test]
fn a_topup_buys_the_rule_quantity_at_the_current_price_and_can_save_the_consumption() {
    let account = topup_rule(facts(&[(A, 5)]), A, 10, 100);
    // 5 − 8 would not even be enough: the top-up of 100 makes it 97.
    let plan = committed(run(&account, &[(A, 8)]));
    let topup = plan.topup.expect("a top-up");
    assert_eq!(topup.quote.lines[0].quantity, 100);
    assert_eq!(topup.quote.total, d("5.00"));
    assert_eq!(topup.quote.total_at_cost, d("3.00"));
    assert_eq!(topup.count_before, 0);
    assert_eq!(plan.changes[0].change(), 92);
    assert_eq!(plan.changes[0].condition, BalanceCondition::Between(0, 17));
    // Leaving exactly the rule's `below` is not below it: no top-up.
    let plan = committed(run(&topup_rule(facts(&[(A, 18)]), A, 10, 100), &[(A, 8)]));
    assert!(plan.topup.is_none() && plan.topup_refused.is_none());
    assert_eq!(plan.changes[0].condition, BalanceCondition::AtLeast(18));
    // Without pricing the plan asks for it.
    let inputs =
        PlanInputs { today: TODAY, daily_cap: 3, pricing: None, agency_ceiling_refused: false, balances_exact: true };
    assert_eq!(plan_of(&account, &[(A, 8)], inputs), Decision::NeedsPricing);
}

#[test]
fn the_alert_is_decided_after_the_topup() {
    // 12 − 4 = 8 < 10 would fire, but the top-up of 5 leaves 13: quiet.
    let account = topup_rule(alert_at(facts(&[(A, 12)]), A, 10), A, 10, 5);
    let plan = committed(run(&account, &[(A, 4)]));
    assert!(plan.topup.is_some());
    assert!(plan.alerts.is_empty());
    // A top-up too small to get back above: fires with the balance after both.
    let account = topup_rule(alert_at(facts(&[(A, 12)]), A, 10), A, 10, 1);
    let plan = committed(run(&account, &[(A, 4)]));
    assert_eq!(plan.alerts, [Alert { credit_type: A, threshold: 10, balance_after: 9 }]);
}

#[test]
fn refused_topups_say_why_and_fail_the_consumption_only_when_the_balance_does_not_suffice() {
    let base = || topup_rule(facts(&[(A, 20)]), A, 30, 100);
    let reason = |plan: &Plan| plan.topup_refused.as_ref().map(|r| r.reason);
    // Daily cap reached: today's count, not another day's.
    let mut capped = base();
    capped.topups = Some(TopupsOnDay { day: TODAY.into(), count: 3 });
    let plan = committed(run(&capped, &[(A, 5)]));
    assert_eq!((reason(&plan), plan.changes[0].change()), (Some(TopupRefusal::DailyCap), -5));
    capped.topups = Some(TopupsOnDay { day: "2026-12-06".into(), count: 3 });
    assert_eq!(committed(run(&capped, &[(A, 5)])).topup.unwrap().count_before, 0);
    // The line too small for 100 × 0.05 = 5.00 (or no line at all).
    let mut short_line = base();
    short_line.line_available = Some(d("4.99"));
    let plan = committed(run(&short_line, &[(A, 5)]));
    assert_eq!(reason(&plan), Some(TopupRefusal::CreditLimit));
    assert_eq!(plan.topup_refused.unwrap().total, Some(d("5.00")));
    short_line.line_available = None;
    assert_eq!(reason(&committed(run(&short_line, &[(A, 5)]))), Some(TopupRefusal::CreditLimit));
    short_line.line_available = Some(d("5.00"));
    assert!(committed(run(&short_line, &[(A, 5)])).topup.is_some(), "exactly the total is enough");
    // On hold.
    let mut held = base();
    held.on_hold = true;
    assert_eq!(reason(&committed(run(&held, &[(A, 5)]))), Some(TopupRefusal::AccountOnHold));
    // The agency's ceiling, learned from its line's condition.
    let pricing = pricing();
    let ceiling = PlanInputs {
        today: TODAY,
        daily_cap: 3,
        pricing: Some(&pricing),
        agency_ceiling_refused: true,
        balances_exact: true,
    };
    let Decision::Commit(plan) = plan_of(&base(), &[(A, 5)], ceiling) else { panic!() };
    assert_eq!(reason(&plan), Some(TopupRefusal::AgencyCeiling));
    // Refused and not enough: the consumption is refused, the shortfall counted without the top-up.
    let Decision::Refuse(short) = run(&held, &[(A, 25)]) else { panic!("refused") };
    assert_eq!((short[0].requested, short[0].short), (25, 5));
}

#[test]
fn several_types_share_one_topup_and_a_cap_of_zero_refuses_all() {
    let account = topup_rule(topup_rule(facts(&[(A, 5), (P, 5)]), A, 10, 100), P, 10, 200);
    let plan = committed(run(&account, &[(A, 1), (P, 1)]));
    let topup = plan.topup.unwrap();
    assert_eq!(topup.quote.lines.len(), 2);
    assert_eq!(topup.quote.total, d("15.00"));
    let pricing = pricing();
    let no_cap = PlanInputs {
        today: TODAY,
        daily_cap: 0,
        pricing: Some(&pricing),
        agency_ceiling_refused: false,
        balances_exact: true,
    };
    let Decision::Commit(plan) = plan_of(&account, &[(A, 1), (P, 1)], no_cap) else { panic!() };
    let refused = plan.topup_refused.unwrap();
    assert_eq!(refused.reason, TopupRefusal::DailyCap);
    assert_eq!(refused.wanted, BTreeMap::from([(A, 100), (P, 200)]));
}

#[test]
fn a_topup_below_a_cent_is_refused_not_given_away() {
    let account = topup_rule(facts(&[(A, 5)]), A, 10, 1);
    let mut pricing = pricing();
    pricing.rates.iter_mut().for_each(|rate| rate.price = d("0.0010"));
    let inputs = PlanInputs {
        today: TODAY,
        daily_cap: 3,
        pricing: Some(&pricing),
        agency_ceiling_refused: false,
        balances_exact: true,
    };
    let Decision::Commit(plan) = plan_of(&account, &[(A, 1)], inputs) else { panic!() };
    assert_eq!(plan.topup_refused.map(|r| r.reason), Some(TopupRefusal::BelowMinimum));
}

#[test]
fn facts_after_a_commit_follow_the_plan() {
    let account = topup_rule(facts(&[(A, 5)]), A, 10, 100);
    let plan = committed(run(&account, &[(A, 8)]));
    let after = account.after(&plan, TODAY);
    assert_eq!(after.balances.get(A), 97);
    assert_eq!(after.line_available, Some(d("995.00")));
    assert_eq!(after.topups, Some(TopupsOnDay { day: TODAY.into(), count: 1 }));
    let _ = TopupRules::new();
}
