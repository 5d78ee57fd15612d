//! The one update of an account's balances: each credit type's signed change `ADD`ed, a type going down only
//! while it stays at or above zero (`#b >= :q`), and one more ledger entry counted (`ADD #entries 1`). Every
//! balance change (purchase, consumption, release, adjustment, void) is built here; each caller adds what else
//! it changes on the account item in the same update.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, Update};
use rust_decimal::Decimal;

use super::items::n;
use super::{StoreError, internal, keys};
use crate::domain::CreditType;

/// An account item's update, started from its balance changes; `ADD`s, `SET`s and conditions can be added.
#[derive(Debug)]
pub(super) struct BalanceUpdate {
    adds: Vec<String>,
    sets: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl BalanceUpdate {
    /// Each type's change (zeros skipped), on an account that exists; a negative change only while the balance
    /// stays >= 0; the ledger entry count up by one.
    pub(super) fn new(changes: impl IntoIterator<Item = (CreditType, i128)>) -> BalanceUpdate {
        BalanceUpdate::with_floors(changes, true)
    }

    /// The same, without the `>= :q` floors: for a caller that states every changed balance's condition itself
    /// (the planned consumption, whose ranges start at or above what it takes).
    pub(super) fn conditioned_by_caller(changes: impl IntoIterator<Item = (CreditType, i128)>) -> BalanceUpdate {
        BalanceUpdate::with_floors(changes, false)
    }

    fn with_floors(changes: impl IntoIterator<Item = (CreditType, i128)>, floors: bool) -> BalanceUpdate {
        let mut update = BalanceUpdate {
            adds: vec!["#entries :one".to_owned()],
            sets: Vec::new(),
            conditions: vec!["attribute_exists(pk)".to_owned()],
            names: HashMap::from([("#entries".to_owned(), keys::LEDGER_ENTRY_COUNT.to_owned())]),
            values: HashMap::from([(":one".to_owned(), n(1))]),
        };
        for (i, (credit_type, change)) in changes.into_iter().filter(|(_, change)| *change != 0).enumerate() {
            update.adds.push(format!("#b{i} :d{i}"));
            update.names.insert(format!("#b{i}"), keys::balance_attribute(credit_type).to_owned());
            update.values.insert(format!(":d{i}"), n(change));
            if change < 0 && floors {
                update.conditions.push(format!("#b{i} >= :q{i}"));
                update.values.insert(format!(":q{i}"), n(change.unsigned_abs()));
            }
        }
        update
    }

    /// Whether it changes no balance (only the entry count): a caller's defect, never sent.
    pub(super) fn changes_nothing(&self) -> bool {
        self.adds.len() == 1
    }

    /// `ADD #name :value` of another attribute.
    pub(super) fn add(mut self, name: &str, attribute: impl Into<String>, value: &str, number: AttributeValue) -> Self {
        self.adds.push(format!("{name} {value}"));
        self.names.insert(name.to_owned(), attribute.into());
        self.values.insert(value.to_owned(), number);
        self
    }

    /// The account's running unbilled sums under `agency_id` (count, at price, at cost) moved by one purchase:
    /// `sign` 1 when it is bought, -1 when it is voided.
    pub(super) fn unbilled_sums(self, agency_id: &str, sign: i8, total: Decimal, total_at_cost: Decimal) -> Self {
        let [count, at_price, at_cost] = keys::unbilled_sums_attributes(agency_id);
        let sign_decimal = Decimal::from(sign);
        self.add("#uCount", count, ":uCount", n(sign)).add("#uPrice", at_price, ":uPrice", n(sign_decimal * total)).add(
            "#uCost",
            at_cost,
            ":uCost",
            n(sign_decimal * total_at_cost),
        )
    }

    /// `total` out of the client's line on the account item, only while at least that much is available.
    pub(super) fn paid_from_line(self, total: Decimal) -> Self {
        self.set("#available = #available - :total")
            .condition("#available >= :total")
            .name("#available", keys::AVAILABLE_CREDIT)
            .value(":total", n(total))
    }

    /// `count` ledger entries counted instead of one (a consumption with its auto top-up writes two).
    pub(super) fn entries(self, count: u32) -> Self {
        self.value(":one", n(count))
    }

    /// A `SET` clause, its names and values given with [`BalanceUpdate::name`] and [`BalanceUpdate::value`].
    pub(super) fn set(mut self, clause: &str) -> Self {
        self.sets.push(clause.to_owned());
        self
    }

    /// One more condition (all must hold).
    pub(super) fn condition(mut self, condition: &str) -> Self {
        self.conditions.push(condition.to_owned());
        self
    }

    pub(super) fn name(mut self, name: &str, attribute: &str) -> Self {
        self.names.insert(name.to_owned(), attribute.to_owned());
        self
    }

    pub(super) fn value(mut self, name: &str, value: AttributeValue) -> Self {
        self.values.insert(name.to_owned(), value);
        self
    }

    /// The update of `account_id`'s item; on a failed condition the item as it was comes back, so the caller
    /// can say which type was short.
    pub(super) fn build(self, table_name: &str, account_id: &str) -> Result<Update, StoreError> {
        let mut expression = format!("ADD {}", self.adds.join(", "));
        if !self.sets.is_empty() {
            expression.push_str(&format!(" SET {}", self.sets.join(", ")));
        }
        Update::builder()
            .table_name(table_name)
            .set_key(Some(keys::key(keys::account(account_id), keys::ACCOUNT_SK)))
            .update_expression(expression)
            .condition_expression(self.conditions.join(" AND "))
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| internal("building a balance update", e))
    }
}
