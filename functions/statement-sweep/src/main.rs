//! `statement-sweep` Lambda (daily schedule): wiring only; the sweep lives in `shared::payments::sweep`.

use std::time::SystemTime;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::storage::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let store = Store::new(shared::runtime::dynamodb_client().await, shared::runtime::table_name());
    run(service_fn(|_: LambdaEvent<Value>| {
        let store = &store;
        async move { shared::payments::sweep(store, SystemTime::now()).await }
    }))
    .await
}
