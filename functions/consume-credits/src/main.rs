//! `consume-credits` Lambda (invoked directly with IAM by the platform's own services, never an API route):
//! wiring only; the handler lives in `shared::consumption::consume_credits`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::nothing_more)?;
    let store = shared::runtime::store_in_background(&settings.common);
    // A refusal is an error result with its own `errorType` (`InsufficientCredits`, `ConsumptionIdReused`, ...).
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move { shared::consumption::consume_credits(store.get().await, event).await }
    }))
    .await
}
