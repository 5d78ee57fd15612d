//! `list-purchases` Lambda (`GET .../credit-purchases` and `GET .../ledger`): wiring only; the handler lives in
//! `shared::api::list_purchases_or_ledger`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::Signed, var))?;
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::list_purchases_or_ledger(app.get().await, request).await) }
    }))
    .await
}
