//! `statement-sweep` Lambda (daily schedule): wiring only; the sweep lives in `shared::payments::sweep`.

use std::time::SystemTime;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::nothing_more)?;
    let store = shared::runtime::store_in_background(&settings.common);
    run(service_fn(|_: LambdaEvent<Value>| {
        let store = &store;
        async move { shared::payments::sweep(store.get().await, SystemTime::now()).await }
    }))
    .await
}
