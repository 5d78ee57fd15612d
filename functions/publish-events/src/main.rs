//! `publish-events` Lambda (triggered by the table's stream, outbox inserts only): wiring only; the handler lives
//! in `shared::events::handle_stream_batch`.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let publisher = shared::events::publisher_from_env().await;
    run(service_fn(|event: LambdaEvent<Event>| {
        let publisher = &publisher;
        async move { Ok::<_, Error>(shared::events::handle_stream_batch(publisher, event.payload).await) }
    }))
    .await
}
