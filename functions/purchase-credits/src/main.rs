//! `purchase-credits` Lambda: wiring only; the handler lives in `shared::api::purchase_credits`, wrapped by
//! `shared::metrics::purchase_credits` (one EMF line per request).

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let _metrics = shared::metrics::init();
    let app = shared::runtime::app_in_background(shared::api::Cursors::None)?;
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::metrics::purchase_credits(app.get().await, request).await) }
    }))
    .await
}
