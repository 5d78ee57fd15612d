//! `purchase-credits` Lambda (`POST .../credit-purchases`, `PUT .../alerts`, `PUT .../topups`): wiring only; the
//! purchase handler lives in `shared::api::purchase_credits`, wrapped by `shared::metrics::purchase_credits` (one
//! EMF line per purchase); `shared::metrics::purchase_credits_or_rules` routes the rules changes to `api::rules`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::None, var))?;
    let _metrics = shared::metrics::init(&settings.common.metrics_namespace);
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::metrics::purchase_credits_or_rules(app.get().await, request).await) }
    }))
    .await
}
