//! The one definition of the DynamoDB table: keys, indexes and TTL.
//!
//! Tests, the seed loader and local dev create the table from here; a test checks that
//! `infra/template.yaml` declares the same keys and indexes.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// Items with this attribute (epoch seconds) are deleted by DynamoDB some time after it passes.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// A sparse global secondary index: only items carrying its key attributes are in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseIndex {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: &'static str,
}

/// Purchases not yet billed to their client; the attributes are removed when the client is billed.
pub const UNBILLED_CLIENT_INDEX: SparseIndex =
    SparseIndex { name: "unbilled-client", partition_key: "unbilledClientPk", sort_key: "unbilledClientSk" };

/// Purchases not yet billed to their agency; independent of client billing.
pub const UNBILLED_AGENCY_INDEX: SparseIndex =
    SparseIndex { name: "unbilled-agency", partition_key: "unbilledAgencyPk", sort_key: "unbilledAgencySk" };

/// Statements with work pending on them: `BUILDING#{cycleEnd}` while their cycle's billing run has not finished
/// (so the run can make them payable at its end), then `UNPAID` by due date for client statements awaiting
/// payment (so the daily sweep finds the overdue ones without a Scan). Removed once nothing is pending.
pub const STATEMENT_STATE_INDEX: SparseIndex =
    SparseIndex { name: "statement-state", partition_key: "statePk", sort_key: "stateSk" };

/// An agency's clients and its clients' purchases, one partition per agency (`AGENCY#{agencyId}`): account
/// items carry `CLIENT#{accountId}`, purchases `PURCHASE#{createdAt}#{purchaseId}` (never removed, so billed and
/// voided ones show too). The agency console lists either with one Query (`begins_with`), without a Scan; one
/// index for both, because CloudFormation adds a single index per table update.
pub const AGENCY_INDEX: SparseIndex =
    SparseIndex { name: "agency-items", partition_key: "agencyPk", sort_key: "agencySk" };

/// One client's purchases not yet billed to it: `ACCOUNT#{accountId}` / `{createdAt}#{purchaseId}`. Removed
/// with the unbilled-client keys (billing) or on a void, so what a client owes this cycle is one Query.
pub const CLIENT_UNBILLED_INDEX: SparseIndex =
    SparseIndex { name: "client-unbilled", partition_key: "clientUnbilledPk", sort_key: "clientUnbilledSk" };

pub const INDEXES: [SparseIndex; 5] =
    [UNBILLED_CLIENT_INDEX, UNBILLED_AGENCY_INDEX, STATEMENT_STATE_INDEX, AGENCY_INDEX, CLIENT_UNBILLED_INDEX];

/// Unbilled purchases are spread over this many index partitions so a busy month never makes one hot key.
pub const UNBILLED_SHARDS: u32 = 4;

/// Every key attribute of the table and its indexes; all are strings.
pub fn key_attributes() -> Vec<&'static str> {
    let mut names = vec![PARTITION_KEY, SORT_KEY];
    for index in INDEXES {
        names.push(index.partition_key);
        names.push(index.sort_key);
    }
    names
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().expect("name and key type are set")
}

/// Creates the table (on-demand) with its indexes and TTL, unless it already exists.
/// Returns whether it was created.
pub async fn create_table_if_missing(client: &Client, table_name: &str) -> Result<bool, aws_sdk_dynamodb::Error> {
    match client.describe_table().table_name(table_name).send().await {
        Ok(_) => return Ok(false),
        Err(err) => {
            let err = aws_sdk_dynamodb::Error::from(err);
            if !matches!(err, aws_sdk_dynamodb::Error::ResourceNotFoundException(_)) {
                return Err(err);
            }
        }
    }
    let mut request = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PARTITION_KEY, KeyType::Hash))
        .key_schema(key(SORT_KEY, KeyType::Range));
    for name in key_attributes() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
        );
    }
    for index in INDEXES {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.partition_key, KeyType::Hash))
                .key_schema(key(index.sort_key, KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .expect("name, keys and projection are set"),
        );
    }
    request.send().await?;
    client
        .update_time_to_live()
        .table_name(table_name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .expect("name and flag are set"),
        )
        .send()
        .await?;
    Ok(true)
}
