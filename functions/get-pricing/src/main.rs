//! `get-pricing` Lambda: wiring only; the handler lives in `shared::api::get_pricing`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::None, var))?;
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::get_pricing(app.get().await, request).await) }
    }))
    .await
}
