//! Cold-start wiring shared by every function's `main.rs`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::api::{App, Settings};
use crate::storage::Store;

/// JSON logs; the Lambda runtime's span (`Lambda runtime invoke`) adds the request id (`requestId`) and, when
/// Lambda sends one, the X-Ray trace id (`xrayTraceId`) to every line written while handling an invocation.
///
/// The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls) or `RUST_LOG`
/// (a plain level such as `debug`), default `info`. A plain level filter instead of `EnvFilter` keeps the
/// regex engine out of the binary and off the cold start.
pub fn init_tracing() {
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok()?.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line already.
        .init();
}

/// The DynamoDB client, configured so an outage becomes an error quickly instead of a hang.
///
/// The endpoint comes from the SDK's own settings, so `AWS_ENDPOINT_URL_DYNAMODB` points it at a local engine.
/// Every call is counted into the current unit of work's metrics (`metrics::CountDynamoCalls`).
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .load()
        .await;
    let config = aws_sdk_dynamodb::config::Builder::from(&config).interceptor(crate::metrics::CountDynamoCalls).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Short timeouts: a DynamoDB call that hangs fails fast enough for the request budget to answer a 503.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_millis(1500))
        .operation_timeout(Duration::from_secs(3))
        .build()
}

/// The SDK's standard retries (throttling, 5xx, transient network errors), three attempts in all.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(25))
}

/// The table name every function reads from `TABLE_NAME`.
pub fn table_name() -> String {
    std::env::var("TABLE_NAME").unwrap_or_else(|_| "overage-credits".to_owned())
}

/// Builds the handlers' shared state once per Lambda instance.
pub async fn app_from_env() -> App {
    App::new(Store::new(dynamodb_client().await, table_name()), Settings::from_env())
}
