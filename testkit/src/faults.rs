//! Failure injection below the real SDK: a wrapped HTTP client that answers chosen DynamoDB calls with
//! the errors DynamoDB sends under contention (throttling, cancelled transactions) or loses a response
//! after the write happened; an injected per-call latency shaped like DynamoDB's (see [`Latency`]); and an
//! interceptor counting the SDK operations a handler performs.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `TransactionCanceledException` with a `TransactionConflict` reason, as under concurrent writers.
    TransactionConflict,
    /// `ThrottlingException`, as when a partition is over its throughput.
    Throttling,
    /// The request reaches the engine and is applied, but its response is lost on the way back.
    LoseResponse,
    /// The request is applied at once, but its response takes this long to come back (a slow network or a
    /// slow partition), so a caller's deadline can pass while the write has already happened.
    SlowResponse(std::time::Duration),
    /// A `ValidationException`: refused outright and never retried, as a process that dies at that point
    /// would stop.
    Refused,
}

/// (operation, text its request body must contain if any, fault)
type Queued = (String, Option<String>, Fault);

/// Which faults to inject next, per DynamoDB operation (`TransactWriteItems`, `GetItem`, ...).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    queue: Arc<Mutex<VecDeque<Queued>>>,
    /// (operation, calls still let through, fault for every call after them)
    after: Arc<Mutex<Option<(String, usize, Fault)>>>,
    injected: Arc<Mutex<Vec<(String, Fault)>>>,
    latency: Arc<Mutex<Option<Latency>>>,
}

/// A delay added before every call reaches the engine, as a network round trip and DynamoDB's own work would
/// add: `base` per call plus `per_item` for each item a `TransactWriteItems` or `BatchWriteItem` carries.
///
/// [`Latency::dynamodb`] is what the billing bench and tests use. The engine's own time comes on top (it is
/// small next to these figures for the calls billing makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// `Query` and `Scan`, per page.
    pub query_page: Duration,
    /// `TransactWriteItems`: a fixed part (two-phase commit, the coordinator) ...
    pub transaction_base: Duration,
    /// ... plus this much per item in the transaction.
    pub transaction_per_item: Duration,
    /// Every other call (`GetItem`, `UpdateItem`, `PutItem`, `BatchWriteItem` per call, ...).
    pub other: Duration,
}

impl Latency {
    /// In-region DynamoDB as the billing run meets it: 8 ms per `Query` page (a 1 MB page of ~1 KB items from
    /// a GSI: a few ms of network and TLS plus reading the page), 25 ms + 0.3 ms per item for
    /// `TransactWriteItems` (two-phase: prepare and commit on every item's partition, so a 100-item step takes
    /// ~55 ms, in line with the "tens of ms" observed for large transactions), 5 ms for any other call
    /// (single-item reads and writes are single-digit ms).
    pub fn dynamodb() -> Latency {
        Latency {
            query_page: Duration::from_millis(8),
            transaction_base: Duration::from_millis(25),
            transaction_per_item: Duration::from_micros(300),
            other: Duration::from_millis(5),
        }
    }

    /// The delay for one call of `operation` whose JSON body is `body`.
    pub fn for_call(&self, operation: &str, body: Option<&[u8]>) -> Duration {
        match operation {
            "Query" | "Scan" => self.query_page,
            "TransactWriteItems" => {
                let items = body
                    .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
                    .and_then(|v| v.get("TransactItems").and_then(|items| items.as_array()).map(Vec::len))
                    .unwrap_or(0);
                self.transaction_base + self.transaction_per_item * items as u32
            }
            _ => self.other,
        }
    }
}

impl FaultPlan {
    /// The next `times` calls of `operation` get `fault`, after any faults already queued.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        let mut queue = self.queue.lock().unwrap();
        for _ in 0..times {
            queue.push_back((operation.to_owned(), None, fault));
        }
    }

    /// As [`FaultPlan::inject`], but only for calls whose JSON request body contains `body_contains` (one index
    /// partition's Query, say, among the run's other Queries).
    pub fn inject_where(&self, operation: &str, body_contains: &str, fault: Fault, times: usize) {
        let mut queue = self.queue.lock().unwrap();
        for _ in 0..times {
            queue.push_back((operation.to_owned(), Some(body_contains.to_owned()), fault));
        }
    }

    /// Lets the next `passes` calls of `operation` through, then gives every later one `fault` until
    /// [`FaultPlan::clear`]: a process that stops half way.
    pub fn fail_after(&self, operation: &str, passes: usize, fault: Fault) {
        *self.after.lock().unwrap() = Some((operation.to_owned(), passes, fault));
    }

    /// Forgets every queued fault and any `fail_after`.
    pub fn clear(&self) {
        self.queue.lock().unwrap().clear();
        *self.after.lock().unwrap() = None;
    }

    /// Faults injected so far, in order.
    pub fn injected(&self) -> Vec<(String, Fault)> {
        self.injected.lock().unwrap().clone()
    }

    /// Adds `latency` to every later call (faults still apply: the delay comes first); `None` removes it.
    /// Not affected by [`FaultPlan::clear`].
    pub fn set_latency(&self, latency: Option<Latency>) {
        *self.latency.lock().unwrap() = latency;
    }

    pub fn latency(&self) -> Option<Latency> {
        *self.latency.lock().unwrap()
    }

    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    fn take(&self, operation: &str, body: Option<&[u8]>) -> Option<Fault> {
        let matches = |needle: &Option<String>| match needle {
            None => true,
            Some(needle) => body.is_some_and(|body| String::from_utf8_lossy(body).contains(needle.as_str())),
        };
        let queued = {
            let mut queue = self.queue.lock().unwrap();
            queue
                .iter()
                .position(|(op, needle, _)| op == operation && matches(needle))
                .and_then(|position| queue.remove(position))
        };
        let fault = match queued {
            Some((_, _, fault)) => fault,
            None => match self.after.lock().unwrap().as_mut() {
                Some((op, passes, fault)) if op == operation => {
                    if *passes > 0 {
                        *passes -= 1;
                        return None;
                    }
                    *fault
                }
                _ => return None,
            },
        };
        self.injected.lock().unwrap().push((operation.to_owned(), fault));
        Some(fault)
    }
}

/// Wraps a real HTTP client; calls the plan does not target pass through untouched.
#[derive(Debug, Clone)]
pub struct FaultInjectingHttpClient {
    pub inner: SharedHttpClient,
    pub plan: FaultPlan,
}

impl HttpClient for FaultInjectingHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultInjectingConnector {
            inner: self.inner.http_connector(settings, components),
            plan: self.plan.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultInjectingConnector {
    inner: SharedHttpConnector,
    plan: FaultPlan,
}

fn error_response(type_name: &str, extra: &str) -> HttpResponse {
    let body = format!(
        "{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{type_name}\",\"message\":\"injected by testkit\"{extra}}}"
    );
    let mut response = HttpResponse::new(StatusCode::try_from(400u16).expect("valid status"), SdkBody::from(body));
    response.headers_mut().insert("content-type", "application/x-amz-json-1.0");
    response
}

impl HttpConnector for FaultInjectingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let delay = self.plan.latency().map(|latency| latency.for_call(&operation, request.body().bytes()));
        match delay {
            Some(delay) if !delay.is_zero() => {
                let connector = FaultInjectingConnector { inner: self.inner.clone(), plan: self.plan.clone() };
                HttpConnectorFuture::new(async move {
                    tokio::time::sleep(delay).await;
                    connector.call_now(request, operation).await
                })
            }
            _ => self.call_now(request, operation),
        }
    }
}

impl FaultInjectingConnector {
    fn call_now(&self, request: HttpRequest, operation: String) -> HttpConnectorFuture {
        match self.plan.take(&operation, request.body().bytes()) {
            None => self.inner.call(request),
            Some(Fault::TransactionConflict) => HttpConnectorFuture::ready(Ok(error_response(
                "TransactionCanceledException",
                ",\"CancellationReasons\":[{\"Code\":\"TransactionConflict\",\"Message\":\"Transaction is ongoing for the item\"},{\"Code\":\"None\"},{\"Code\":\"None\"},{\"Code\":\"None\"},{\"Code\":\"None\"}]",
            ))),
            Some(Fault::Throttling) => HttpConnectorFuture::ready(Ok(error_response("ThrottlingException", ""))),
            Some(Fault::SlowResponse(delay)) => {
                let applied = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    let response = applied.await;
                    tokio::time::sleep(delay).await;
                    response
                })
            }
            Some(Fault::Refused) => HttpConnectorFuture::ready(Ok(error_response("ValidationException", ""))),
            Some(Fault::LoseResponse) => {
                let applied = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    let _ = applied.await;
                    Err(ConnectorError::io("connection reset after the request was applied (injected)".into()))
                })
            }
        }
    }
}

/// Counts the SDK operations started through a client (one per operation, whatever its retries), and the items
/// their Queries read (`ScannedCount`: evaluated before any filter, what a request pays for), and what each
/// request touched as IAM authorises it (see [`Access`]).
#[derive(Debug, Clone, Default)]
pub struct OperationCounter {
    operations: Arc<Mutex<Vec<String>>>,
    items_read: Arc<Mutex<u64>>,
    accesses: Arc<Mutex<BTreeSet<Access>>>,
}

/// One thing a request needs IAM to allow: `(action, "table" or "index/<name>", partition key pattern)`, the
/// key as a policy's `dynamodb:LeadingKeys` names it (`ACCOUNT#acct-x` is `ACCOUNT#*`; `PRICING#DEFAULT` and
/// `UNPAID` are themselves). A transaction is authorised item by item (`PutItem`, `UpdateItem`, ...).
pub type Access = (String, String, String);

/// The partition key pattern of a key value.
fn key_pattern(pk: &str) -> String {
    match pk.split_once('#') {
        Some((_, "DEFAULT")) | None => pk.to_owned(),
        Some((kind, _)) => format!("{kind}#*"),
    }
}

/// What one serialised DynamoDB request touches, from its JSON body.
fn accesses_of(operation: &str, body: &serde_json::Value) -> Vec<Access> {
    let pk_of = |item: &serde_json::Value| item["pk"]["S"].as_str().map(key_pattern);
    let table = |resource: &serde_json::Value| match resource["IndexName"].as_str() {
        Some(index) => format!("index/{index}"),
        None => "table".to_owned(),
    };
    let one = |action: &str, key: Option<String>, resource: String| {
        (format!("dynamodb:{action}"), resource, key.unwrap_or_else(|| "(no pk)".to_owned()))
    };
    let mut out = Vec::new();
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => out.push(one(operation, pk_of(&body["Key"]), table(body))),
        "PutItem" => out.push(one(operation, pk_of(&body["Item"]), table(body))),
        "Scan" => out.push(one(operation, Some("(whole table)".to_owned()), table(body))),
        "Query" => {
            // The partition key is the value bound in the key condition's first clause (`pk = :pk AND ...`).
            let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
            let placeholder = condition.split(" AND ").next().and_then(|c| c.split('=').nth(1)).map(str::trim);
            let value = placeholder.and_then(|p| body["ExpressionAttributeValues"][p]["S"].as_str());
            out.push(one(operation, value.map(key_pattern), table(body)));
        }
        "BatchGetItem" => {
            for request in body["RequestItems"].as_object().into_iter().flat_map(|m| m.values()) {
                for key in request["Keys"].as_array().into_iter().flatten() {
                    out.push(one(operation, pk_of(key), "table".to_owned()));
                }
            }
        }
        "BatchWriteItem" => {
            for requests in body["RequestItems"].as_object().into_iter().flat_map(|m| m.values()) {
                for request in requests.as_array().into_iter().flatten() {
                    let key = pk_of(&request["PutRequest"]["Item"]).or_else(|| pk_of(&request["DeleteRequest"]["Key"]));
                    out.push(one(operation, key, "table".to_owned()));
                }
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                for (kind, action, field) in [
                    ("Put", "PutItem", "Item"),
                    ("Update", "UpdateItem", "Key"),
                    ("Delete", "DeleteItem", "Key"),
                    ("ConditionCheck", "ConditionCheckItem", "Key"),
                    ("Get", "GetItem", "Key"),
                ] {
                    if item[kind].is_object() {
                        out.push(one(action, pk_of(&item[kind][field]), "table".to_owned()));
                    }
                }
            }
        }
        other => out.push(one(other, None, "table".to_owned())),
    }
    out
}

impl OperationCounter {
    pub fn operations(&self) -> Vec<String> {
        self.operations.lock().unwrap().clone()
    }

    /// What the requests since the last reset needed IAM to allow.
    pub fn accesses(&self) -> BTreeSet<Access> {
        self.accesses.lock().unwrap().clone()
    }

    /// Items read by the Queries since the last reset.
    pub fn items_read(&self) -> u64 {
        *self.items_read.lock().unwrap()
    }

    pub fn reset(&self) {
        self.operations.lock().unwrap().clear();
        *self.items_read.lock().unwrap() = 0;
        self.accesses.lock().unwrap().clear();
    }
}

impl Intercept for OperationCounter {
    fn name(&self) -> &'static str {
        "OperationCounter"
    }

    // Once per operation, after the operation's own configuration (which names it) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or("unknown", |m| m.name()).to_owned();
        self.operations.lock().unwrap().push(name);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation =
            request.headers().get("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or_default().to_owned();
        if let Some(body) = request.body().bytes()
            && let Ok(body) = serde_json::from_slice::<serde_json::Value>(body)
        {
            self.accesses.lock().unwrap().extend(accesses_of(&operation, &body));
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error()
            && let Some(query) = output.downcast_ref::<QueryOutput>()
        {
            *self.items_read.lock().unwrap() += u64::try_from(query.scanned_count).unwrap_or(0);
        }
        Ok(())
    }
}
