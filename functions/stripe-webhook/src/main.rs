//! `stripe-webhook` Lambda (`POST /webhooks/stripe`, no JWT authorizer: Stripe signs its deliveries instead):
//! wiring only; the handler lives in `shared::webhook::stripe_webhook`.

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::SecretSource::stripe_webhook_secret)?;
    // The table client and the signing secret (Secrets Manager) are read while the runtime polls.
    let app = shared::runtime::Deferred::spawn(shared::runtime::webhook(settings));
    run(service_fn(|request: Request| {
        let app = &app;
        async move { Ok::<_, Error>(shared::webhook::stripe_webhook(app.get().await, request).await) }
    }))
    .await
}
