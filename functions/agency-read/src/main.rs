//! `agency-read` Lambda (the agency's GET routes: pricing, price history, clients, purchases, statements): wiring only; the handlers live in
//! `shared::api::agency`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(|var| shared::api::Settings::from_vars(shared::api::Cursors::Signed, var))?;
    let app = shared::runtime::app_in_background(settings);
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::api::agency_read(app.get().await, request).await) }
    }))
    .await
}
