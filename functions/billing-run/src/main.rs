//! `billing-run` Lambda (scheduled, not HTTP): wiring only; the run lives in `shared::billing`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::storage::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let store = Store::new(shared::runtime::dynamodb_client().await, shared::runtime::table_name());
    // A bad event or an unfinished run is an error result with its own `errorType`, never a panic.
    run(service_fn(|event: LambdaEvent<Value>| shared::billing::handle(&store, event))).await
}
