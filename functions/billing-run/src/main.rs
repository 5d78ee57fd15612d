//! `billing-run` Lambda (scheduled, not HTTP): wiring only; the run lives in `shared::billing`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::storage::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let _metrics = shared::metrics::init();
    let store = Store::new(shared::runtime::dynamodb_client().await, shared::runtime::table_name());
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move {
            // A bad event or an unfinished run is an error result (logged with its partial summary), never a panic.
            let summary =
                shared::metrics::run_billing_from_event(store, &event.payload, Some(event.context.deadline())).await?;
            Ok::<_, Error>(serde_json::to_value(summary)?)
        }
    }))
    .await
}
