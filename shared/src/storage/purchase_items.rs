//! The pieces every purchase transaction is built from (a client's purchase, an auto top-up inside a
//! consumption): the record in every index it belongs to, and the checks that the prices quoted are current.

use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};

use super::items::{n, s, to_item};
use super::purchases::unbilled_shard;
use super::{StoreError, internal, keys};
use crate::domain::{EffectivePricing, PurchaseRecord};
use crate::table::{AGENCY_INDEX, CLIENT_UNBILLED_INDEX, UNBILLED_AGENCY_INDEX, UNBILLED_CLIENT_INDEX};

fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    internal("building a purchase's items", e)
}

/// The purchase record (only if its id is new), in both sparse billing indexes until billed, the agency's
/// view of its clients' purchases and the client's own unbilled list.
pub(super) fn purchase_put(table_name: &str, purchase: &PurchaseRecord) -> Result<Put, StoreError> {
    let mut record = to_item("purchase", purchase)?;
    record.extend(keys::key(keys::account(&purchase.account_id), &keys::purchase_sk(&purchase.purchase_id)));
    let shard = s(keys::unbilled(unbilled_shard(&purchase.purchase_id)));
    let index_sort = s(keys::unbilled_sk(&purchase.created_at, &purchase.purchase_id));
    for index in [UNBILLED_CLIENT_INDEX, UNBILLED_AGENCY_INDEX] {
        record.insert(index.partition_key.to_owned(), shard.clone());
        record.insert(index.sort_key.to_owned(), index_sort.clone());
    }
    // The agency's view of its clients' purchases, and the client's own unbilled list (what it owes so far).
    record.insert(AGENCY_INDEX.partition_key.to_owned(), s(keys::agency(&purchase.agency_id)));
    record.insert(
        AGENCY_INDEX.sort_key.to_owned(),
        s(keys::agency_purchase_sk(&purchase.created_at, &purchase.purchase_id)),
    );
    record.insert(CLIENT_UNBILLED_INDEX.partition_key.to_owned(), s(keys::account(&purchase.account_id)));
    record.insert(CLIENT_UNBILLED_INDEX.sort_key.to_owned(), index_sort.clone());
    Put::builder()
        .table_name(table_name)
        .set_item(Some(record))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(build)
}

/// The default and the agency pricing versions the quote was made at are still current (no agency pricing item
/// if there was none).
pub(super) fn pricing_checks(
    table_name: &str,
    pricing: &EffectivePricing,
) -> Result<[TransactWriteItem; 2], StoreError> {
    let default_check = ConditionCheck::builder()
        .table_name(table_name)
        .set_key(Some(keys::key(keys::DEFAULT_PRICING_PK.to_owned(), keys::PRICING_SK)))
        .condition_expression("version = :v")
        .expression_attribute_values(":v", n(pricing.default_version))
        .build()
        .map_err(build)?;
    let agency_check = ConditionCheck::builder()
        .table_name(table_name)
        .set_key(Some(keys::key(keys::agency(&pricing.agency_id), keys::PRICING_SK)));
    let agency_check = match pricing.agency_version {
        Some(version) => {
            agency_check.condition_expression("version = :v").expression_attribute_values(":v", n(version))
        }
        None => agency_check.condition_expression("attribute_not_exists(pk)"),
    }
    .build()
    .map_err(build)?;
    Ok([
        TransactWriteItem::builder().condition_check(default_check).build(),
        TransactWriteItem::builder().condition_check(agency_check).build(),
    ])
}
