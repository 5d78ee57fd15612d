//! `provision-account` Lambda (invoked with IAM by the parent platform at sign-up, never an API route): wiring
//! only; the handler lives in `shared::provisioning::provision_account`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::nothing_more)?;
    let store = shared::runtime::store_in_background(&settings.common);
    // A refusal is an error result with its own `errorType` (`InvalidProvisionRequest`, `AgencyNotFound`, ...).
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = &store;
        async move { shared::provisioning::provision_account(store.get().await, event).await }
    }))
    .await
}
