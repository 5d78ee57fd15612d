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
}

impl LineUpdate {
    /// The line of the item at `key`, moved by `change` (negative: taken).
    pub(super) fn at(key: Item, change: Decimal) -> LineUpdate {
        LineUpdate { key, change, released_statement: None }
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

    pub(super) fn build(self, table_name: &str) -> Result<Update, StoreError> {
        let taken = self.change < Decimal::ZERO;
        let mut expression =
            if taken { "SET #available = #available - :amount" } else { "SET #available = #available + :amount" }
                .to_owned();
        let update = Update::builder()
            .table_name(table_name)
            .set_key(Some(self.key))
            .condition_expression(if taken { "#available >= :amount" } else { "attribute_exists(#available)" })
            .expression_attribute_names("#available", keys::AVAILABLE_CREDIT)
            .expression_attribute_values(":amount", n(self.change.abs()));
        let update = match self.released_statement {
            Some(statement_id) => {
                expression.push_str(" DELETE #held :statement");
                update
                    .expression_attribute_names("#held", keys::HELD_STATEMENT_IDS)
                    .expression_attribute_values(":statement", AttributeValue::Ss(vec![statement_id]))
            }
            None => update,
        };
        update.update_expression(expression).build().map_err(|e| internal("building a credit line update", e))
    }
}
