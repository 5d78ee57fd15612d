//! The outbox: a domain event written as one more item of the change's own `TransactWriteItems`, so the event
//! exists if and only if the change committed (no dual write, and no extra DynamoDB call). The table's stream
//! carries the new item to `publish-events`, which reads it back with [`event_from_stream_record`]
//! (docs/events.md).
//!
//! Key: the partition the change already writes (`ACCOUNT#{accountId}` or `AGENCY#{agencyId}`, by the event's
//! [`Owner`]), sort key `OUTBOX#{occurredAt}#{eventId}`. A per-hour `OUTBOX#{hour}` partition would put every
//! purchase of the platform on one key (about 1,000 write units a second per partition); the owner's partition
//! spreads the outbox exactly as the data is spread. No Query of this code lists `OUTBOX#` (they all read by
//! their own sort key prefix). The item expires by TTL ([`OUTBOX_RETENTION_SECONDS`]): delivery needs it only
//! until the stream has carried it (24 h), the rest is for an operator's redrive Query.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::items::{Item, n, s};
use super::keys::OUTBOX_SK_PREFIX;
use super::{StoreError, internal, keys};
use crate::domain::events::{OutboxEvent, Owner};
use crate::table::TTL_ATTRIBUTE;

/// Seven days: a week for an operator to redrive what the stream delivered but a consumer lost.
pub const OUTBOX_RETENTION_SECONDS: u64 = 7 * 24 * 3600;

/// Attribute names of an outbox item.
const EVENT_ID: &str = "eventId";
const EVENT_TYPE: &str = "eventType";
const EVENT_JSON: &str = "event";

/// The partition key an event's outbox item goes to.
pub fn outbox_pk(owner: &Owner) -> String {
    match owner {
        Owner::Account(account_id) => keys::account(account_id),
        Owner::Agency(agency_id) => keys::agency(agency_id),
    }
}

pub fn outbox_sk(event: &OutboxEvent) -> String {
    keys::outbox_sk(&event.occurred_at, &event.id)
}

/// The outbox item as attribute values: keys, id, type, the event's JSON (as a string, so the stream hands the
/// publisher the exact bytes serialised by the domain) and its expiry.
pub fn outbox_item(event: &OutboxEvent, now_epoch_seconds: u64) -> Item {
    let mut item = keys::key(outbox_pk(&event.owner), &outbox_sk(event));
    item.insert(EVENT_ID.to_owned(), s(&event.id));
    item.insert(EVENT_TYPE.to_owned(), s(event.event_type));
    item.insert(EVENT_JSON.to_owned(), s(&event.json));
    item.insert(TTL_ATTRIBUTE.to_owned(), n(now_epoch_seconds + OUTBOX_RETENTION_SECONDS));
    item
}

/// The one call a transaction adds to carry its event: a Put of the outbox item, on condition that the key is
/// new (an event id is written once; a resend of the same transaction with the same token is DynamoDB's no-op).
pub fn outbox_put(table_name: &str, event: &OutboxEvent) -> Result<TransactWriteItem, StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| internal("the clock", e))?;
    let put = Put::builder()
        .table_name(table_name)
        .set_item(Some(outbox_item(event, now)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| internal("building an outbox put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An outbox event as the stream delivered it: its id and the JSON to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedEvent {
    pub id: String,
    pub event_type: String,
    pub occurred_at: String,
    pub json: String,
}

/// The event an insert of an outbox item carries; `Ok(None)` for any other record (another item, a modify, a
/// TTL removal), which the event source mapping's filter should already have kept away.
pub fn event_from_stream_record(record: &EventRecord) -> Result<Option<StreamedEvent>, StoreError> {
    if record.event_name != "INSERT" {
        return Ok(None);
    }
    let image = &record.change.new_image;
    let text = |name: &str| match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let Some(sk) = text("sk").filter(|sk| sk.starts_with(OUTBOX_SK_PREFIX)) else {
        return Ok(None);
    };
    let bad = |what: &str| StoreError::Internal(format!("outbox item {sk}: {what}"));
    let id = text(EVENT_ID).ok_or_else(|| bad("no eventId"))?;
    let event_type = text(EVENT_TYPE).ok_or_else(|| bad("no eventType"))?;
    let json = text(EVENT_JSON).ok_or_else(|| bad("no event"))?;
    // `OUTBOX#{occurredAt}#{id}`: the timestamp has no `#`, so the part before the id is it.
    let occurred_at = sk[OUTBOX_SK_PREFIX.len()..]
        .strip_suffix(&format!("#{id}"))
        .ok_or_else(|| bad("sort key does not end with its id"))?
        .to_owned();
    Ok(Some(StreamedEvent { id, event_type, occurred_at, json }))
}
