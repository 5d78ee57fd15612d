//! Cold-start wiring shared by every function's `main.rs`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::api::{App, Settings};
use crate::storage::Store;

/// JSON logs; the Lambda runtime's span adds the request id to every line.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line already.
        .init();
}

/// The DynamoDB client, configured so an outage becomes an error quickly instead of a hang.
///
/// The endpoint comes from the SDK's own settings, so `AWS_ENDPOINT_URL_DYNAMODB` points it at a local engine.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_attempt_timeout(Duration::from_millis(1500))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(25)))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// The table name every function reads from `TABLE_NAME`.
pub fn table_name() -> String {
    std::env::var("TABLE_NAME").unwrap_or_else(|_| "overage-credits".to_owned())
}

/// Builds the handlers' shared state once per Lambda instance.
pub async fn app_from_env() -> App {
    App::new(Store::new(dynamodb_client().await, table_name()), Settings::from_env())
}
