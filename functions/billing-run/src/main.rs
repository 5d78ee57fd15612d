//! `billing-run` Lambda (scheduled, not HTTP): wiring only; the run lives in `shared::billing`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::billing::BillingSettings::from_vars)?;
    let _metrics = shared::metrics::init(&settings.common.metrics_namespace);
    let store = shared::runtime::store_in_background(&settings.common);
    // A bad event or an unfinished run is an error result with its own `errorType`, never a panic; the run's
    // figures (or its failure) go out as one EMF line.
    run(service_fn(|event: LambdaEvent<Value>| {
        let (store, billing) = (&store, &settings.function);
        async move {
            shared::metrics::run_billing_from_event(
                store.get().await,
                billing,
                &event.payload,
                Some(event.context.deadline()),
                std::time::SystemTime::now(),
            )
            .await
        }
    }))
    .await
}
