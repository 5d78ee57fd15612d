//! `record-payment` Lambda (invoked with IAM by the payment side, never an API route): wiring only; the
//! handler lives in `shared::payments::record_payment`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::nothing_more)?;
    let store = shared::runtime::store_in_background(&settings.common);
    // A refusal is an error result with its own `errorType` (`Overpayment`, `StatementNotPayable`, ...).
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move { shared::payments::record_payment(store.get().await, event).await }
    }))
    .await
}
