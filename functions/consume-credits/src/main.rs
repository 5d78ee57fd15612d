//! `consume-credits` Lambda (invoked directly with IAM by the platform's own services, never an API route):
//! wiring only; the handler lives in `shared::consumption::consume_credits`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::consumption::ConsumptionSettings::from_vars)?;
    // Built once per container: the store, and the accounts' facts and prices it remembers between invocations.
    let consumer = shared::runtime::consumer_in_background(settings);
    // A refusal is an error result with its own `errorType` (`InsufficientCredits`, `ConsumptionIdReused`, ...).
    run(service_fn(|event: LambdaEvent<Value>| {
        let consumer = &consumer;
        async move { shared::consumption::consume_credits(consumer.get().await, event).await }
    }))
    .await
}
