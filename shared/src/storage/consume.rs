//! One attempt of a consumption as planned (`domain::consumption_plan`): one `TransactWriteItems` with the
//! account update (each type's change, the plan's conditions, and with a top-up the line, the running unbilled
//! sums and the day's count: TransactWriteItems touches the account item once), its ledger entry, its marker,
//! the top-up purchase (record, price checks, agency line, ledger entry) and every event of the change.
//!
//! | position | item |
//! |---|---|
//! | 0 | account update |
//! | 1 | consumption ledger entry |
//! | 2 | consumption marker (exactly once per id; what happened kept on it for replays) |
//! | 3.. | with a top-up: purchase, default and agency price checks, agency line, purchase ledger entry, the agency's day sums; with a top-up refused on a quote: the price checks (and, refused by the agency's ceiling, a check that its line still lacks the cost) |
//! | then | outbox: `credits.consumed`, `credits.low`…, `credits.purchased` and `auto_topup.succeeded`… or `auto_topup.refused`… |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::agency_days::{DayChange, day_sums_update};
use super::balance_update::BalanceUpdate;
use super::consumption::{
    AGENCY_ID, ConsumptionReceipt, EFFECTS, ENTRY_ID, REQUEST_HASH, consumption_receipt, quantities_value,
};
use super::items::{Attributes, account_from_item, n, s, to_item};
use super::ledger::ledger_entry_put;
use super::line_update::LineUpdate;
use super::outbox::outbox_put;
use super::purchase_items::{pricing_checks, purchase_put};
use super::transact::condition_failed;
use super::{Store, StoreError, internal, keys};
use crate::domain::consumption_plan::{BalanceCondition, Plan};
use crate::domain::events::{self, PurchaseTrigger, PurchasedLine, TopupRefusal};
use crate::domain::ledger::{Consumption, EntryType, LedgerEntry};
use crate::domain::{Account, CreditType, EffectivePricing, PurchaseRecord};
use crate::table::{PARTITION_KEY, SORT_KEY};

const ACCOUNT: usize = 0;
const ENTRY: usize = 1;
const MARKER: usize = 2;

/// What a consumption did besides taking its credits: kept on its marker, so a replay answers the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumptionEffects {
    /// The auto top-up bought in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topup: Option<TopupReceipt>,
    /// Why the top-up the rules asked for was not bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topup_refused: Option<TopupRefusal>,
    /// The types whose `credits.low` this consumption emitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<CreditType>,
}

impl ConsumptionEffects {
    pub fn is_empty(&self) -> bool {
        *self == ConsumptionEffects::default()
    }
}

/// An auto top-up as the consumption answers it (at price; never at cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopupReceipt {
    pub purchase_id: String,
    pub lines: Vec<PurchasedLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

/// One attempt: the consumption, the plan made for it, and the top-up purchase made from the plan.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeAttempt<'a> {
    pub consumption: &'a Consumption,
    pub agency_id: &'a str,
    pub entry_id: &'a str,
    pub created_at: &'a str,
    /// UTC day of `created_at`, `YYYY-MM-DD`.
    pub today: &'a str,
    pub plan: &'a Plan,
    /// The prices the top-up (or its refusal on a quote) was quoted at.
    pub pricing: Option<&'a EffectivePricing>,
    pub topup: Option<&'a PurchaseRecord>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Consumed(ConsumptionReceipt),
    /// The same consumption id with the same request: the first result.
    Replayed(ConsumptionReceipt),
    IdReused,
    AccountMissing,
    /// The account is no longer as planned (balance out of range, rules, agency, line, hold, day's count):
    /// the item as it is now, to plan again; `pricing_stale` when the prices moved too.
    AccountChanged {
        account: Box<Account>,
        pricing_stale: bool,
    },
    /// The top-up's prices are no longer current: re-read them and plan again.
    PricingChanged,
    /// The agency's line has not the top-up's cost available: plan again without it.
    AgencyCeiling,
    /// A refusal by the agency's ceiling is no longer true (its line has the top-up's cost available now): plan
    /// again with the top-up.
    AgencyCeilingLifted,
}

impl Store {
    /// Sends one attempt (resent with the same token only while its outcome is unknown or it conflicted).
    pub async fn consume_planned(&self, attempt: ConsumeAttempt<'_>) -> Result<AttemptOutcome, StoreError> {
        let (items, positions, effects) = self.planned_transaction(attempt)?;
        let receipt = ConsumptionReceipt {
            account_id: attempt.consumption.account_id.clone(),
            consumption_id: attempt.consumption.consumption_id.clone(),
            entry_id: attempt.entry_id.to_owned(),
            created_at: attempt.created_at.to_owned(),
            quantities: attempt.consumption.quantities.clone(),
            released_at: None,
            effects,
        };
        let token = uuid::Uuid::now_v7().to_string();
        let outcome = self
            .transact_with_retries("TransactWriteItems consumption", &items, &token, true, |reasons| {
                attempt_outcome(reasons, attempt.consumption, &receipt, &positions)
            })
            .await?;
        Ok(outcome.unwrap_or(AttemptOutcome::Consumed(receipt)))
    }

    /// What an earlier consumption under the same id answers, if there is one: its replay, or `IdReused` for
    /// another request. Read before refusing a consumption no transaction was sent for (the id outranks the
    /// balance, as in the transaction).
    pub async fn earlier_consumption(&self, consumption: &Consumption) -> Result<Option<AttemptOutcome>, StoreError> {
        let key = keys::consumption_sk(&consumption.consumption_id);
        let Some(item) = self.get_item(keys::account(&consumption.account_id), &key).await? else {
            return Ok(None);
        };
        if item.string(REQUEST_HASH)? != consumption.request_hash() {
            return Ok(Some(AttemptOutcome::IdReused));
        }
        Ok(Some(AttemptOutcome::Replayed(consumption_receipt(&item)?)))
    }

    /// Sets an account's rules as the rules API does (`rulesVersion` up by one), for tests.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn set_consumption_rules_for_test(
        &self,
        account_id: &str,
        rules: &crate::domain::rules::ConsumptionRules,
    ) -> Result<(), StoreError> {
        let (thresholds, topups) = super::items::rules_values(rules);
        self.client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)))
            .update_expression("SET #a = :a, #t = :t ADD #v :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#a", keys::ALERT_THRESHOLDS)
            .expression_attribute_names("#t", keys::TOPUP_RULES)
            .expression_attribute_names("#v", keys::RULES_VERSION)
            .expression_attribute_values(":a", thresholds)
            .expression_attribute_values(":t", topups)
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| super::classify("UpdateItem rules", e))?;
        Ok(())
    }

    /// The items of a consumption of an account without rules, for the benchmark's bare-SDK side (never used by
    /// a function): what a warm `consume-credits` sends.
    #[cfg(feature = "bench-internals")]
    pub fn consumption_transaction_for_bench(
        &self,
        consumption: &Consumption,
        agency_id: &str,
        entry_id: &str,
        created_at: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        use crate::domain::consumption_plan::{AccountFacts, Decision, PlanInputs, plan};
        let facts = AccountFacts {
            agency_id: agency_id.to_owned(),
            balances: crate::domain::Balances::default(),
            line_available: None,
            on_hold: false,
            rules: crate::domain::rules::ConsumptionRules::default(),
            topups: None,
        };
        let today = &created_at[..10];
        let inputs =
            PlanInputs { today, daily_cap: 0, pricing: None, agency_ceiling_refused: false, balances_exact: false };
        let Decision::Commit(plan) = plan(&facts, &consumption.quantities, inputs) else {
            return Err(StoreError::Internal("a consumption without rules always has a plan".into()));
        };
        let attempt = ConsumeAttempt {
            consumption,
            agency_id,
            entry_id,
            created_at,
            today,
            plan: &plan,
            pricing: None,
            topup: None,
        };
        Ok(self.planned_transaction(attempt)?.0)
    }

    /// The items of one planned attempt, unsent: for the benchmark's bare-SDK side
    /// (`Consumer::next_transaction_for_bench`), never used by a function.
    #[cfg(feature = "bench-internals")]
    pub fn attempt_transaction_for_bench(
        &self,
        attempt: ConsumeAttempt<'_>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        Ok(self.planned_transaction(attempt)?.0)
    }

    fn planned_transaction(
        &self,
        attempt: ConsumeAttempt<'_>,
    ) -> Result<(Vec<TransactWriteItem>, Positions, ConsumptionEffects), StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| internal("building the consumption transaction", e);
        let ConsumeAttempt { consumption, agency_id, entry_id, created_at, plan, .. } = attempt;
        if plan.changes.is_empty() {
            return Err(StoreError::Internal("a consumption without quantities reached storage".into()));
        }
        let mut items = vec![TransactWriteItem::builder().update(account_update(&self.table_name, attempt)?).build()];

        // 1. The consumption's ledger entry.
        let entry = LedgerEntry {
            entry_id: entry_id.to_owned(),
            account_id: consumption.account_id.clone(),
            entry_type: EntryType::Consumption,
            created_at: created_at.to_owned(),
            quantities: consumption.deltas(),
            reason: Some(consumption.reason.clone()),
            reference: consumption.reference.clone(),
            consumption_id: Some(consumption.consumption_id.clone()),
            purchase_id: None,
            actor: None,
            trigger: Default::default(),
        };
        items.push(TransactWriteItem::builder().put(ledger_entry_put(&self.table_name, &entry)?).build());

        // 2. The marker: the consumption id, once per account, with what else it did.
        let mut marker = HashMap::from([
            (PARTITION_KEY.to_owned(), s(keys::account(&consumption.account_id))),
            (SORT_KEY.to_owned(), s(keys::consumption_sk(&consumption.consumption_id))),
            ("accountId".to_owned(), s(&consumption.account_id)),
            ("consumptionId".to_owned(), s(&consumption.consumption_id)),
            (REQUEST_HASH.to_owned(), s(consumption.request_hash())),
            (ENTRY_ID.to_owned(), s(entry_id)),
            ("createdAt".to_owned(), s(created_at)),
            ("quantities".to_owned(), quantities_value(&consumption.quantities)),
            ("reason".to_owned(), s(&consumption.reason)),
            (AGENCY_ID.to_owned(), s(agency_id)),
        ]);
        let effects = effects(attempt);
        if !effects.is_empty() {
            marker.insert(EFFECTS.to_owned(), AttributeValue::M(to_item("consumption effects", &effects)?));
        }
        let marker_put = Put::builder()
            .table_name(&self.table_name)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build)?;
        items.push(TransactWriteItem::builder().put(marker_put).build());

        // 3. The top-up: an ordinary unbilled purchase (its account changes are in the update above).
        let mut positions = Positions::default();
        let quoted = plan.topup.is_some()
            || plan.topup_refused.as_ref().is_some_and(|r| {
                matches!(r.reason, TopupRefusal::CreditLimit | TopupRefusal::AgencyCeiling | TopupRefusal::BelowMinimum)
            });
        if let Some(purchase) = attempt.topup {
            positions.purchase = Some(items.len());
            items.push(TransactWriteItem::builder().put(purchase_put(&self.table_name, purchase)?).build());
        }
        if quoted {
            let pricing =
                attempt.pricing.ok_or_else(|| StoreError::Internal("a quoted top-up without its prices".into()))?;
            positions.pricing = Some(items.len());
            items.extend(pricing_checks(&self.table_name, pricing)?);
        }
        if let Some(cost) =
            plan.topup_refused.as_ref().filter(|r| r.reason == TopupRefusal::AgencyCeiling).and_then(|r| r.cost)
        {
            // The refusal commits only while the agency's line still lacks the top-up's cost.
            positions.ceiling_check = Some(items.len());
            let check = ConditionCheck::builder()
                .table_name(&self.table_name)
                .set_key(Some(keys::key(keys::agency_line(agency_id), keys::CREDIT_LINE_SK)))
                .condition_expression("attribute_not_exists(#available) OR #available < :cost")
                .expression_attribute_names("#available", keys::AVAILABLE_CREDIT)
                .expression_attribute_values(":cost", n(cost))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        if let Some(purchase) = attempt.topup {
            positions.agency_line = Some(items.len());
            let line = LineUpdate::agency(&purchase.agency_id, -purchase.total_at_cost).build(&self.table_name)?;
            items.push(TransactWriteItem::builder().update(line).build());
            positions.purchase_entry = Some(items.len());
            items.push(
                TransactWriteItem::builder()
                    .put(ledger_entry_put(&self.table_name, &LedgerEntry::for_purchase(purchase))?)
                    .build(),
            );
            // The agency's day sums, as every purchase adds to them (unconditional: it never cancels).
            items.push(day_sums_update(&self.table_name, purchase, DayChange::Purchased)?);
        }

        // 4. The events, made once here: a resend of this attempt carries the same ids.
        let account_id = &consumption.account_id;
        let mut outbox = vec![events::credits_moved(
            false,
            account_id,
            agency_id,
            &consumption.consumption_id,
            &consumption.quantities,
            created_at,
        )];
        outbox.extend(plan.alerts.iter().map(|alert| events::credits_low(account_id, agency_id, alert, created_at)));
        if let Some(purchase) = attempt.topup {
            outbox.push(events::credits_purchased(purchase, PurchaseTrigger::AutoTopup));
            outbox.extend(purchase.lines.iter().map(|line| events::auto_topup_succeeded(purchase, line)));
        }
        if let Some(refused) = &plan.topup_refused {
            outbox.extend(events::auto_topup_refused(account_id, agency_id, refused, created_at));
        }
        for event in &outbox {
            items.push(outbox_put(&self.table_name, event)?);
        }
        Ok((items, positions, effects))
    }
}

/// Where the optional items went.
#[derive(Debug, Default)]
struct Positions {
    purchase: Option<usize>,
    pricing: Option<usize>,
    agency_line: Option<usize>,
    purchase_entry: Option<usize>,
    /// A refusal by the agency's ceiling: the check that its line still lacks the cost.
    ceiling_check: Option<usize>,
}

/// The account's one update: each type's change under the plan's condition, and every fact the plan decided by.
fn account_update(
    table_name: &str,
    attempt: ConsumeAttempt<'_>,
) -> Result<aws_sdk_dynamodb::types::Update, StoreError> {
    let plan = attempt.plan;
    // Each balance's condition is the plan's (its lower bound covers what is taken), not the default floor.
    let mut update = BalanceUpdate::conditioned_by_caller(plan.changes.iter().map(|c| (c.credit_type, c.change())))
        .condition("#agency = :agency")
        .name("#agency", "agencyId")
        .value(":agency", s(attempt.agency_id))
        .name("#rv", keys::RULES_VERSION);
    update = if plan.rules_version == 0 {
        update.condition("attribute_not_exists(#rv)")
    } else {
        update.condition("#rv = :rv").value(":rv", n(plan.rules_version))
    };
    for (i, change) in plan.changes.iter().enumerate() {
        let name = format!("#c{i}");
        update = update.name(&name, keys::balance_attribute(change.credit_type));
        update = match change.condition {
            BalanceCondition::AtLeast(lo) => {
                update.condition(&format!("{name} >= :lo{i}")).value(&format!(":lo{i}"), n(lo))
            }
            BalanceCondition::Between(lo, hi) => update
                .condition(&format!("{name} BETWEEN :lo{i} AND :hi{i}"))
                .value(&format!(":lo{i}"), n(lo))
                .value(&format!(":hi{i}"), n(hi)),
        };
    }
    if plan.topup_wanted {
        // The hold and the day's count as read: a top-up (or its refusal) commits only while they still are.
        update = update
            .name("#held", keys::HELD_STATEMENT_IDS)
            .name("#tday", keys::TOPUP_DAY)
            .name("#tcount", keys::TOPUP_COUNT)
            .value(":today", s(attempt.today));
        update = update.condition(if plan.on_hold { "attribute_exists(#held)" } else { "attribute_not_exists(#held)" });
        let count_before = plan
            .topup
            .as_ref()
            .map(|t| t.count_before)
            .or(plan.topup_refused.as_ref().map(|r| r.count_before))
            .unwrap_or(0);
        update = if count_before == 0 {
            update.condition("NOT (#tday = :today AND #tcount > :zero)").value(":zero", n(0))
        } else {
            update.condition("#tday = :today AND #tcount = :count").value(":count", n(count_before))
        };
        if let Some(purchase) = attempt.topup {
            update = update
                .entries(2)
                .paid_from_line(purchase.total)
                .unbilled_sums(&purchase.agency_id, 1, purchase.total, purchase.total_at_cost)
                .set("#tday = :today, #tcount = :counted")
                .value(":counted", n(count_before + 1));
        }
        match plan.topup_refused.as_ref().map(|r| (r.reason, r.total)) {
            Some((TopupRefusal::CreditLimit, Some(total))) => {
                update = update
                    .condition("(attribute_not_exists(#available) OR #available < :total)")
                    .name("#available", keys::AVAILABLE_CREDIT)
                    .value(":total", n(total))
            }
            Some((TopupRefusal::AgencyCeiling, Some(total))) => {
                update = update
                    .condition("#available >= :total")
                    .name("#available", keys::AVAILABLE_CREDIT)
                    .value(":total", n(total))
            }
            _ => {}
        }
    }
    update.build(table_name, &attempt.consumption.account_id)
}

fn effects(attempt: ConsumeAttempt<'_>) -> ConsumptionEffects {
    ConsumptionEffects {
        topup: attempt.topup.map(|purchase| TopupReceipt {
            purchase_id: purchase.purchase_id.clone(),
            lines: PurchasedLine::all_of(purchase),
            total: purchase.total,
        }),
        topup_refused: attempt.plan.topup_refused.as_ref().map(|r| r.reason),
        alerts: attempt.plan.alerts.iter().map(|a| a.credit_type).collect(),
    }
}

/// Turns condition failures of an attempt into its outcome; `None` if none failed.
fn attempt_outcome(
    reasons: &[CancellationReason],
    consumption: &Consumption,
    receipt: &ConsumptionReceipt,
    positions: &Positions,
) -> Result<Option<AttemptOutcome>, StoreError> {
    let failed = |i| condition_failed(reasons, i);
    let failed_at = |position: Option<usize>| position.is_some_and(&failed);
    // The id outranks everything: a replay returns the first result even if the credits are gone since.
    if failed(MARKER) {
        let stored = reasons[MARKER]
            .item()
            .ok_or_else(|| StoreError::Internal("consumption marker condition failed without the item".into()))?;
        if stored.string(REQUEST_HASH)? != consumption.request_hash() {
            return Ok(Some(AttemptOutcome::IdReused));
        }
        let first = consumption_receipt(stored)?;
        // Our own earlier attempt (its response lost, its token forgotten) committed: that is this call's success.
        if first.entry_id == receipt.entry_id {
            return Ok(Some(AttemptOutcome::Consumed(first)));
        }
        return Ok(Some(AttemptOutcome::Replayed(first)));
    }
    if failed(ENTRY) || failed_at(positions.purchase) || failed_at(positions.purchase_entry) {
        return Ok(Some(AttemptOutcome::Consumed(receipt.clone())));
    }
    let pricing_stale = positions.pricing.is_some_and(|p| failed(p) || failed(p + 1));
    if failed(ACCOUNT) {
        return Ok(Some(match reasons[ACCOUNT].item().filter(|item| !item.is_empty()) {
            None => AttemptOutcome::AccountMissing,
            Some(item) => AttemptOutcome::AccountChanged { account: Box::new(account_from_item(item)?), pricing_stale },
        }));
    }
    if pricing_stale {
        return Ok(Some(AttemptOutcome::PricingChanged));
    }
    if failed_at(positions.agency_line) {
        return Ok(Some(AttemptOutcome::AgencyCeiling));
    }
    if failed_at(positions.ceiling_check) {
        return Ok(Some(AttemptOutcome::AgencyCeilingLifted));
    }
    Ok(None)
}
