//! `get-balances` Lambda: wiring only; the handler lives in `shared::api::get_balances`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let app = shared::runtime::app_in_background(shared::api::Cursors::None)?;
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::get_balances(app.get().await, request).await) }
    }))
    .await
}
