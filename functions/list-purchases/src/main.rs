//! `list-purchases` Lambda: wiring only; the handler lives in `shared::api::list_purchases`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let app = shared::runtime::app_from_env().await;
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::list_purchases(app, request).await) }
    }))
    .await
}
