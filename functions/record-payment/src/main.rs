//! `record-payment` Lambda (invoked with IAM by the payment side, never an API route): wiring only; the
//! handler lives in `shared::payments::record_payment`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::storage::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::runtime::init_tracing();
    let store = Store::new(shared::runtime::dynamodb_client().await, shared::runtime::table_name());
    // A refusal is an error result with its own `errorType` (`Overpayment`, `StatementNotPayable`, ...).
    run(service_fn(|event: LambdaEvent<Value>| shared::payments::record_payment(&store, event))).await
}
