//! `get-balances` Lambda (`GET .../balances`, `GET .../alerts`, `GET .../topups`): wiring only; the handlers live
//! in `shared::api` (`balances_or_rules` picks one by route).

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::None, var))?;
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::balances_or_rules(app.get().await, request).await) }
    }))
    .await
}
