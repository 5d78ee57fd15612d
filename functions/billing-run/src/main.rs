//! `billing-run` Lambda (scheduled, not HTTP): wiring only; the run lives in `shared::billing`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let _metrics = shared::metrics::init();
    let store = shared::runtime::store_in_background();
    // A bad event or an unfinished run is an error result with its own `errorType`, never a panic; the run's
    // figures (or its failure) go out as one EMF line.
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move {
            shared::metrics::run_billing_from_event(
                store.get().await,
                &event.payload,
                Some(event.context.deadline()),
                std::time::SystemTime::now(),
            )
            .await
        }
    }))
    .await
}
