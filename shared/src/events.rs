//! `publish-events`: the table's stream → the EventBridge bus (docs/events.md).
//!
//! Lambda's DynamoDB event source mapping hands [`handle_stream_batch`] the outbox inserts of one shard in order
//! (its filter keeps every other record away). Each is put on the bus, up to 10 per `PutEvents`; entries
//! EventBridge refuses are resent a few times. Whatever is still unsent is reported as a batch item failure at
//! the first unsent record: Lambda checkpoints before it and delivers it and everything after it again, so
//! nothing is lost, and an event put twice keeps its `id` for consumers to dedupe. A crash mid-batch is the
//! same case with nothing reported: the whole batch comes again.
//!
//! This is the code the deployed function runs and the local tests run, against dynoxide's stream and a local
//! stand-in for EventBridge (no local EventBridge exists).

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use crate::domain::events::SOURCE;
use crate::settings::{Lookup, SettingsError, Vars};
use crate::storage::outbox::{StreamedEvent, event_from_stream_record};

/// EventBridge takes at most this many entries per `PutEvents`.
pub const PUT_EVENTS_MAX_ENTRIES: usize = 10;

/// The bus and how hard to try before handing a record back to Lambda.
#[derive(Clone)]
pub struct Publisher {
    pub client: aws_sdk_eventbridge::Client,
    pub bus_name: String,
    /// `PutEvents` calls per chunk while some of its entries keep failing.
    pub attempts: u32,
    pub base_delay: Duration,
}

/// Why some events were not put; `first_unsent` indexes the slice given to [`Publisher::publish`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{unsent} event(s) not put on the bus, the first at position {first_unsent}: {reason}")]
pub struct Unsent {
    pub first_unsent: usize,
    pub unsent: usize,
    pub reason: String,
}

impl Publisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> Publisher {
        Publisher { client, bus_name: bus_name.into(), attempts: 4, base_delay: Duration::from_millis(100) }
    }

    /// Puts `events` on the bus in order, in chunks of [`PUT_EVENTS_MAX_ENTRIES`], resending the entries a
    /// call refused. Stops at the first chunk that still has unsent entries: what follows is left for Lambda's
    /// redelivery rather than sent out of order past a gap.
    pub async fn publish(&self, events: &[StreamedEvent]) -> Result<(), Unsent> {
        for (chunk_index, chunk) in events.chunks(PUT_EVENTS_MAX_ENTRIES).enumerate() {
            let offset = chunk_index * PUT_EVENTS_MAX_ENTRIES;
            if let Err(mut unsent) = self.publish_chunk(chunk).await {
                unsent.first_unsent += offset;
                unsent.unsent = events.len() - unsent.first_unsent;
                return Err(unsent);
            }
        }
        Ok(())
    }

    async fn publish_chunk(&self, chunk: &[StreamedEvent]) -> Result<(), Unsent> {
        // Positions in `chunk` still to send.
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut reason = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                let ceiling = self.base_delay.saturating_mul(1 << attempt.min(6));
                tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
            }
            let entries = pending.iter().map(|&i| self.entry(&chunk[i])).collect::<Vec<_>>();
            match self.client.put_events().set_entries(Some(entries)).send().await {
                Ok(output) => {
                    let results = output.entries();
                    // EventBridge answers one result per entry, in order; an entry with an error code was not put.
                    let failed: Vec<usize> = pending
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| results.get(*k).is_none_or(|r| r.error_code().is_some()))
                        .map(|(_, &i)| i)
                        .collect();
                    if let Some(first) = results.iter().find(|r| r.error_code().is_some()) {
                        reason = format!(
                            "{}: {}",
                            first.error_code().unwrap_or_default(),
                            first.error_message().unwrap_or_default()
                        );
                    }
                    pending = failed;
                }
                Err(e) => {
                    reason = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
                    tracing::warn!(attempt, error = %reason, "PutEvents failed");
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(Unsent { first_unsent: pending[0], unsent: pending.len(), reason })
    }

    fn entry(&self, event: &StreamedEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(SOURCE)
            .detail_type(&event.event_type)
            .detail(&event.json)
            .set_time(DateTime::from_str(&event.occurred_at, Format::DateTime).ok())
            .build()
    }
}

/// One stream batch: the outbox events it carries put on the bus; a batch item failure at the first record not
/// put (the event source mapping has `ReportBatchItemFailures`), none when all were.
pub async fn handle_stream_batch(publisher: &Publisher, batch: Event) -> DynamoDbEventResponse {
    let mut events = Vec::with_capacity(batch.records.len());
    // The sequence number of each event's record, to report the first unsent one.
    let mut sequence_numbers = Vec::with_capacity(batch.records.len());
    let mut failure_at = None;
    for record in &batch.records {
        match event_from_stream_record(record) {
            Ok(Some(event)) => {
                events.push(event);
                sequence_numbers.push(record.change.sequence_number.clone());
            }
            Ok(None) => {}
            // A record we cannot read stops the batch there: Lambda retries it, bisects, and after the mapping's
            // retries sends it to the failure destination instead of dropping it silently.
            Err(e) => {
                tracing::error!(error = %e, "unreadable outbox record");
                failure_at = Some(record.change.sequence_number.clone());
                break;
            }
        }
    }
    if let Err(unsent) = publisher.publish(&events).await {
        tracing::warn!(error = %unsent, "events left for redelivery");
        failure_at = Some(sequence_numbers[unsent.first_unsent].clone());
    } else {
        tracing::info!(published = events.len(), "events put on the bus");
    }
    let mut response = DynamoDbEventResponse::default();
    if let Some(sequence_number) = failure_at {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = sequence_number;
        response.batch_item_failures.push(failure);
    }
    response
}

pub const EVENT_BUS_NAME_VARIABLE: &str = "EVENT_BUS_NAME";

/// `publish-events`' settings (read with the others by `runtime::start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// `EVENT_BUS_NAME`: required (the template sets it to its bus); no default, so a function that would put
    /// events nowhere does not start.
    pub bus_name: String,
}

impl PublishSettings {
    pub fn from_vars(var: Lookup) -> Result<PublishSettings, SettingsError> {
        let vars = Vars(var);
        let accepts = "an EventBridge bus name: 1 to 256 of a-z, A-Z, 0-9, '.', '-', '_', '/'";
        let Some(bus_name) = vars.text(EVENT_BUS_NAME_VARIABLE) else {
            return Err(SettingsError {
                variable: EVENT_BUS_NAME_VARIABLE,
                problem: format!("is not set; expected {accepts}"),
            });
        };
        if bus_name.len() > 256 || !bus_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) {
            return Err(vars.bad(EVENT_BUS_NAME_VARIABLE, &bus_name, accepts));
        }
        Ok(PublishSettings { bus_name })
    }
}

/// The publisher for these settings, built from the one SDK configuration every client here uses
/// (`runtime::sdk_config`); `AWS_ENDPOINT_URL_EVENTBRIDGE` points it at a local stand-in.
pub async fn publisher(settings: &PublishSettings) -> Publisher {
    let config = crate::runtime::sdk_config().await;
    Publisher::new(aws_sdk_eventbridge::Client::new(&config), &settings.bus_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_name_is_required_and_checked() {
        let with = |value: Option<&'static str>| {
            PublishSettings::from_vars(&move |name: &str| {
                (name == EVENT_BUS_NAME_VARIABLE).then_some(value).flatten().map(str::to_owned)
            })
        };
        assert_eq!(with(Some("stack-events")).unwrap().bus_name, "stack-events");
        assert_eq!(with(None).unwrap_err().variable, EVENT_BUS_NAME_VARIABLE);
        assert_eq!(with(Some("")).unwrap_err().variable, EVENT_BUS_NAME_VARIABLE);
        assert!(with(Some("a bus")).unwrap_err().problem.contains("\"a bus\""));
    }
}
