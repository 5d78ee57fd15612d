//! The one retry loop of every `TransactWriteItems` (purchases and billing steps).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem};

use super::{Store, StoreError, classify};

/// Bounded retries of cancelled transactions: enough to ride out a burst, well inside the function timeout.
#[derive(Debug, Clone, Copy)]
pub struct ConflictRetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time has gone by since the first.
    pub budget: Duration,
}

impl Default for ConflictRetryPolicy {
    fn default() -> Self {
        ConflictRetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(400),
            budget: Duration::from_secs(3),
        }
    }
}

impl ConflictRetryPolicy {
    /// Full jitter over an exponential ceiling: spreads retrying writers apart.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1 << attempt.min(16)).min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// True if the cancellation reason at `position` is a failed condition.
pub(crate) fn condition_failed(reasons: &[CancellationReason], position: usize) -> bool {
    reasons.get(position).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

impl Store {
    /// Sends one `TransactWriteItems`, resending it with the same token on transient cancellations
    /// (conflicts, throttling) and, if `resend_unanswered`, when the outcome is unknown, with full-jitter
    /// backoff bounded by the retry policy. `on_conditions` turns condition failures into an outcome
    /// (`Some`), or `None` when none failed. `Ok(None)` means the transaction committed.
    pub(crate) async fn transact_with_retries<T>(
        &self,
        what: &str,
        items: &[TransactWriteItem],
        token: &str,
        resend_unanswered: bool,
        on_conditions: impl Fn(&[CancellationReason]) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.to_vec()))
                .client_request_token(token)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let retryable = match &err {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                        let reasons = cancelled.cancellation_reasons();
                        if let Some(outcome) = on_conditions(reasons)? {
                            return Ok(Some(outcome));
                        }
                        reasons.iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
                            )
                        })
                    }
                    TransactWriteItemsError::TransactionInProgressException(_) => true,
                    _ => false,
                },
                // The outcome is unknown (the SDK's own retries are spent): resending the same items with the
                // same token is safe, and DynamoDB answers with the first outcome if they were applied.
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                    resend_unanswered
                }
                _ => false,
            };
            if !retryable {
                return Err(classify(what, err));
            }
            let delay = self.retry.backoff(attempt);
            if attempt >= self.retry.max_attempts || started.elapsed() + delay > self.retry.budget {
                tracing::warn!(attempt, "{what}: still cancelled or unanswered; giving up");
                return Err(StoreError::Unavailable(format!(
                    "{what}: cancelled or unanswered {attempt} times: {}",
                    classify(what, err)
                )));
            }
            tracing::info!(attempt, delay_ms = delay.as_millis() as u64, "{what}: cancelled or unanswered; resending");
            tokio::time::sleep(delay).await;
        }
    }
}
