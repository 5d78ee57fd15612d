//! The one move of a credit line's available amount (a client's on its account item, at price; an agency's on
//! its own line item, at cost): taken only while at least that much is available, given back only to a line
//! that exists.

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use rust_decimal::Decimal;

use super::items::{Item, n};
use super::{StoreError, internal, keys};

/// `SET #available = #available ± :amount` on one line item.
#[derive(Debug)]
pub(super) struct LineUpdate {
    key: Item,
    change: Decimal,
    released_statement: Option<String>,
    /// How many held statements the account had when read: the release then commits only if that is still so,
    /// so whether it lifted the hold (and emits `account.hold_lifted`) is exact.
    held_as_read: Option<usize>,
}

impl LineUpdate {
    /// The line of the item at `key`, moved by `change` (negative: taken).
    pub(super) fn at(key: Item, change: Decimal) -> LineUpdate {
        LineUpdate { key, change, released_statement: None, held_as_read: None }
    }

    /// The agency's own line, moved by `change` (negative: taken).
    pub(super) fn agency(agency_id: &str, change: Decimal) -> LineUpdate {
        LineUpdate::at(keys::key(keys::agency_line(agency_id), keys::CREDIT_LINE_SK), change)
    }

    /// Also out of the account's held statements (a payment of a statement that held it). DELETE of an absent
    /// member (or from an absent set) changes nothing; the last member's DELETE removes the attribute, which is
    /// what purchases check.
    pub(super) fn releasing_hold(mut self, statement_id: &str) -> LineUpdate {
        self.released_statement = Some(statement_id.to_owned());
        self
    }

    /// Only while the account still holds exactly `count` statements (0: none), as read before.
    pub(super) fn held_as_read(mut self, count: usize) -> LineUpdate {
        self.held_as_read = Some(count);
        self
    }

    pub(super) fn build(self, table_name: &str) -> Result<Update, StoreError> {
        let taken = self.change < Decimal::ZERO;
        let mut expression =
            if taken { "SET #available = #available - :amount" } else { "SET #available = #available + :amount" }
                .to_owned();
        let update = Update::builder()
            .table_name(table_name)
            .set_key(Some(self.key))
            .expression_attribute_names("#available", keys::AVAILABLE_CREDIT)
            .expression_attribute_values(":amount", n(self.change.abs()));
        let mut condition = if taken { "#available >= :amount" } else { "attribute_exists(#available)" }.to_owned();
        let update = match self.released_statement {
            Some(statement_id) => {
                expression.push_str(" DELETE #held :statement");
                let update = update
                    .expression_attribute_names("#held", keys::HELD_STATEMENT_IDS)
                    .expression_attribute_values(":statement", AttributeValue::Ss(vec![statement_id]));
                match self.held_as_read {
                    Some(0) => {
                        condition.push_str(" AND attribute_not_exists(#held)");
                        update
                    }
                    Some(count) => {
                        condition.push_str(" AND size(#held) = :heldCount");
                        update.expression_attribute_values(":heldCount", n(count))
                    }
                    None => update,
                }
            }
            None => update,
        };
        update
            .update_expression(expression)
            .condition_expression(condition)
            .build()
            .map_err(|e| internal("building a credit line update", e))
    }
}
