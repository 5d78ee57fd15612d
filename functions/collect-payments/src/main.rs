//! `collect-payments` Lambda (run by the billing state machine after a cycle is payable, and daily for retries;
//! never an API route): wiring only; the run lives in `shared::collection::collect_payments`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::runtime::collector_settings)?;
    // The table client and the Stripe key (Secrets Manager) are read while the runtime polls for the event.
    let collector = shared::runtime::Deferred::spawn(shared::runtime::collector(settings));
    run(service_fn(|event: LambdaEvent<Value>| {
        let collector = &collector;
        async move { shared::collection::collect_payments(collector.get().await, event).await }
    }))
    .await
}
