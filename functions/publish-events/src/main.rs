//! `publish-events` Lambda (triggered by the table's stream, outbox inserts only): wiring only; the handler lives
//! in `shared::events::handle_stream_batch`.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::events::PublishSettings::from_vars)?;
    let publisher = shared::events::publisher(&settings.function).await;
    run(service_fn(|event: LambdaEvent<Event>| {
        let publisher = &publisher;
        async move { Ok::<_, Error>(shared::events::handle_stream_batch(publisher, event.payload).await) }
    }))
    .await
}
