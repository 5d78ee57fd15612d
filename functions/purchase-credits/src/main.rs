//! `purchase-credits` Lambda: wiring only; the handler lives in `shared::api::purchase_credits`, wrapped by
//! `shared::metrics::purchase_credits` (one EMF line per request).

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::None, var))?;
    let _metrics = shared::metrics::init(&settings.common.metrics_namespace);
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::metrics::purchase_credits(app.get().await, request).await) }
    }))
    .await
}
