//! Per-agency daily running sums of its clients' purchases, for the overview's chart: one item per agency and
//! UTC day, `AGENCYLINE#{agencyId}` / `DAY#{YYYY-MM-DD}` with `purchases`, `total` (at price) and `totalAtCost`.
//!
//! Written inside the purchase transaction (`ADD` +1 and the totals, one more Update appended last: a warm
//! purchase stays one DynamoDB call) and the void transaction (`ADD` −1 and minus the totals, on the purchase's
//! own day), so a day always equals the sum of that day's purchases not voided, and the overview reads a whole
//! cycle with one Query of at most 31 items instead of the cycle's purchases.
//!
//! Why the agency line's partition and not `AGENCY#`: what the sums count at cost is exactly what was drawn on the
//! agency's line, and the functions that write them (purchases, voids, auto top-ups) already move that line; a
//! grant on `AGENCY#` would also let them write the agency's prices. The partition is as hot as before: every
//! purchase of the agency already updates its line item in the same transaction.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use rust_decimal::Decimal;

use super::items::{Attributes, n, s};
use super::{Store, StoreError, classify, internal, keys};
use crate::domain::PurchaseRecord;
use crate::domain::overview::{DaySums, day_of_timestamp};

pub const DAY_SK_PREFIX: &str = "DAY#";
const PURCHASES: &str = "purchases";
const TOTAL: &str = "total";
const TOTAL_AT_COST: &str = "totalAtCost";

/// A day's sort key in the agency line's partition.
fn day_sk(date: &str) -> String {
    format!("{DAY_SK_PREFIX}{date}")
}

/// Whether the purchase counts in, or (voided) comes back out of, its day's sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DayChange {
    Purchased,
    Voided,
}

/// The Update of the purchase's agency's sums of the purchase's own day (UTC). Unconditional: `ADD` creates the
/// item on the day's first purchase, so it never cancels the transaction it rides in.
pub(super) fn day_sums_update(
    table_name: &str,
    purchase: &PurchaseRecord,
    change: DayChange,
) -> Result<TransactWriteItem, StoreError> {
    let date = day_of_timestamp(&purchase.created_at).ok_or_else(|| {
        StoreError::Internal(format!("purchase {} has no UTC day: {:?}", purchase.purchase_id, purchase.created_at))
    })?;
    let sign = match change {
        DayChange::Purchased => Decimal::ONE,
        DayChange::Voided => Decimal::NEGATIVE_ONE,
    };
    let update = Update::builder()
        .table_name(table_name)
        .set_key(Some(keys::key(keys::agency_line(&purchase.agency_id), &day_sk(date))))
        .update_expression("ADD #purchases :count, #total :total, #atCost :atCost")
        .expression_attribute_names("#purchases", PURCHASES)
        .expression_attribute_names("#total", TOTAL)
        .expression_attribute_names("#atCost", TOTAL_AT_COST)
        .expression_attribute_values(":count", n(sign))
        .expression_attribute_values(":total", n(sign * purchase.total))
        .expression_attribute_values(":atCost", n(sign * purchase.total_at_cost))
        .build()
        .map_err(|e| internal("building the day sums update", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

impl Store {
    /// The agency's stored days from `first` through `last` (`YYYY-MM-DD`, at most 31 days apart: one cycle),
    /// by date: one strongly consistent Query, `Limit` the number of days, so it reads at most 31 small items.
    pub async fn agency_days(
        &self,
        agency_id: &str,
        first: &str,
        last: &str,
        days: u32,
    ) -> Result<Vec<(String, DaySums)>, StoreError> {
        if days == 0 || days > 31 || first > last {
            return Err(StoreError::Internal(format!("a day range of {days} days, {first}..{last}, reached storage")));
        }
        let output = self
            .client
            .query()
            .table_name(&self.table_name)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
            .expression_attribute_values(":pk", s(keys::agency_line(agency_id)))
            .expression_attribute_values(":first", s(day_sk(first)))
            .expression_attribute_values(":last", s(day_sk(last)))
            .consistent_read(true)
            .limit(i32::try_from(days).unwrap_or(31))
            .send()
            .await
            .map_err(|e| classify("Query agency days", e))?;
        output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                let sk = item.string("sk")?;
                let date = sk.strip_prefix(DAY_SK_PREFIX).unwrap_or(&sk).to_owned();
                let purchases = item.decimal(PURCHASES)?.unwrap_or_default();
                let purchases = i64::try_from(purchases)
                    .ok()
                    .filter(|_| purchases.fract().is_zero())
                    .ok_or_else(|| StoreError::Internal(format!("day {date}: purchases {purchases}")))?;
                let sums = DaySums {
                    purchases,
                    total: item.decimal(TOTAL)?.unwrap_or_default(),
                    total_at_cost: item.decimal(TOTAL_AT_COST)?.unwrap_or_default(),
                };
                Ok((date, sums))
            })
            .collect()
    }
}
