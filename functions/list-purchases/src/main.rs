//! `list-purchases` Lambda (`GET .../credit-purchases` and `GET .../ledger`): wiring only; the handler lives in
//! `shared::api::list_purchases_or_ledger`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let app = shared::runtime::app_in_background(shared::api::Cursors::Signed)?;
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::list_purchases_or_ledger(app.get().await, request).await) }
    }))
    .await
}
