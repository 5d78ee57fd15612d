//! `echo-lambda`: answers every invocation with its own event. No SDK, no tracing setup: only what any Rust
//! Lambda pays (tokio and the runtime client), so the bench can tell our cold start apart from the floor.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
