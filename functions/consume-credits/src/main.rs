//! `consume-credits` Lambda (invoked directly with IAM by the platform's own services, never an API route):
//! wiring only; the handler lives in `shared::consumption::consume_credits`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::storage::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let store = Store::new(shared::runtime::dynamodb_client().await, shared::runtime::table_name());
    // A refusal is an error result with its own `errorType` (`InsufficientCredits`, `ConsumptionIdReused`, ...).
    run(service_fn(|event: LambdaEvent<Value>| shared::consumption::consume_credits(&store, event))).await
}
