//! Test support: a real dynoxide server on an ephemeral port, a seeded table, and API Gateway events.
//!
//! Everything here is real: the handlers under test talk to dynoxide over HTTP through the real SDK.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::Request;
use serde_json::{Value, json};
use shared::api::{App, Settings};
use shared::storage::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod emf;
pub mod faults;
pub mod stripe;

/// The seed loader, for tests that load seed documents of their own.
pub use seed_loader;

/// Seeded accounts (`seeds/data`): two of Northwind's, one of Brightside's, one of Plainsail's.
pub const COFFEE: &str = "acct-northwind-coffee";
pub const BIKES: &str = "acct-northwind-bikes";
pub const DENTAL: &str = "acct-brightside-dental";
pub const BAKERY: &str = "acct-plainsail-bakery";

/// The HTTP API's routes, as `ApiEvent::new` takes them.
pub const PRICING_ROUTE: &str = "/accounts/{accountId}/pricing";
pub const BALANCES_ROUTE: &str = "/accounts/{accountId}/balances";
pub const PURCHASES_ROUTE: &str = "/accounts/{accountId}/credit-purchases";
pub const STATEMENTS_ROUTE: &str = "/accounts/{accountId}/statements";

/// A decimal from its text, for expected amounts.
pub fn d(text: &str) -> rust_decimal::Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
}

/// A problem+json answer with this status and code, and the RFC 9457 members.
pub fn assert_problem(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(a.body["code"], code, "{}", a.body);
    assert_eq!(a.body["status"], status);
    assert!(a.body["title"].is_string() && a.body["detail"].is_string() && a.body["type"].is_string());
}

use faults::{FaultInjectingHttpClient, FaultPlan, OperationCounter};

/// A dynoxide server on `127.0.0.1:<ephemeral>`, in memory, that can be stopped and restarted on the same port.
pub struct LocalDynamo {
    addr: SocketAddr,
    db: dynoxide::Database,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LocalDynamo {
    pub async fn start() -> LocalDynamo {
        let db = dynoxide::Database::memory().expect("in-memory dynoxide database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("bound address");
        let mut dynamo = LocalDynamo { addr, db, shutdown: None, task: None };
        dynamo.serve(listener);
        dynamo
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let db = self.db.clone();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = dynoxide::server::serve_with_shutdown(listener, db, async {
                let _ = rx.await;
            })
            .await;
        }));
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: new connections are refused, as in an outage. The data is kept.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // A request already running is allowed to finish; don't wait forever on a stuck client.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Serves the same data on the same port again.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last_error = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.serve(listener);
                    return;
                }
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        panic!("could not rebind {}: {last_error:?}", self.addr);
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An SDK client for a local engine, with the functions' timeouts and retries.
pub fn client_for(endpoint: &str) -> Client {
    instrumented_client(endpoint, None, None)
}

/// A client whose HTTP calls go through `faults` and whose operations are counted by `counter`.
pub fn instrumented_client(endpoint: &str, faults: Option<FaultPlan>, counter: Option<OperationCounter>) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "testkit"))
        // The functions' own timeouts and retries, so outages behave in tests as they do deployed.
        .timeout_config(shared::runtime::timeout_config())
        .retry_config(shared::runtime::retry_config());
    // The SDK shares its retry token bucket per partition across the whole process; each test client gets
    // its own, so one test's injected outage cannot drain another's retries.
    config = config.retry_partition(aws_smithy_runtime::client::retries::RetryPartition::new(format!(
        "testkit-{}",
        CLIENT_COUNTER.fetch_add(1, Ordering::Relaxed)
    )));
    if let Some(plan) = faults {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        config = config.http_client(FaultInjectingHttpClient { inner, plan });
    }
    if let Some(counter) = counter {
        config = config.interceptor(counter);
    }
    Client::from_conf(config.build())
}

static TABLE_COUNTER: AtomicU32 = AtomicU32::new(0);
static CLIENT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running engine, a table loaded with the bundled seeds, and the app the handlers run with.
pub struct TestEnv {
    pub dynamo: LocalDynamo,
    /// A plain client, for setup and assertions.
    pub client: Client,
    pub table: String,
    /// The handlers' app; its client goes through `faults` and is counted by `operations`.
    pub app: App,
    /// `consume-credits`' state over the app's store (one warm container: it remembers accounts between calls).
    pub consumer: shared::consumption::Consumer,
    pub faults: FaultPlan,
    pub operations: OperationCounter,
}

impl TestEnv {
    /// A fresh engine with the bundled seeds loaded.
    pub async fn seeded() -> TestEnv {
        let env = TestEnv::empty().await;
        let seed = seed_loader::read_seed_files(&seed_loader::bundled_seed_files()).expect("bundled seeds are valid");
        seed_loader::load(&env.app.store, &seed).await.expect("seeds load");
        env
    }

    /// A fresh engine with an empty table.
    pub async fn empty() -> TestEnv {
        let dynamo = LocalDynamo::start().await;
        let client = client_for(&dynamo.endpoint());
        let table = format!("overage-credits-test-{}", TABLE_COUNTER.fetch_add(1, Ordering::Relaxed));
        shared::table::create_table_if_missing(&client, &table).await.expect("create table");
        let faults = FaultPlan::default();
        let operations = OperationCounter::default();
        let app_client = instrumented_client(&dynamo.endpoint(), Some(faults.clone()), Some(operations.clone()));
        let app = App::new(Store::new(app_client, &table), Settings::default());
        let consumer = shared::consumption::Consumer::new(app.store.clone(), Default::default());
        TestEnv { dynamo, client, table, app, consumer, faults, operations }
    }

    /// Sets one price of a seeded agency, keeping the rest of its seeded rates; returns whether the pricing
    /// version moved (it does whenever the price differs from the stored one).
    pub async fn set_seeded_agency_price(
        &self,
        agency_id: &str,
        credit_type: shared::domain::CreditType,
        price: &str,
    ) -> bool {
        let seed = seed_loader::read_seed_files(&seed_loader::bundled_seed_files()).expect("bundled seeds are valid");
        let agency = seed.agencies.iter().find(|a| a.agency_id == agency_id).expect("a seeded agency");
        let mut rates = agency.rates.clone();
        rates.entry(credit_type).or_default().price = Some(price.parse().expect("a decimal price"));
        self.app.store.upsert_agency_pricing(agency_id, &rates).await.expect("pricing upsert")
    }

    /// Parses, validates and loads one seed document into the table, as `seed-loader FILE` does (margins are
    /// checked against the stored default pricing when the document has none).
    pub async fn load_seed_json(&self, seed: &Value) -> Result<seed_loader::LoadReport, String> {
        let seed = seed_loader::parse_seed("test seed", &seed.to_string())?;
        seed_loader::load(&self.app.store, &seed).await
    }

    /// Loads the bundled seeds again (`seed-loader` with no arguments).
    pub async fn reload_bundled_seeds(&self) -> Result<seed_loader::LoadReport, String> {
        let seed = seed_loader::read_seed_files(&seed_loader::bundled_seed_files())?;
        seed_loader::load(&self.app.store, &seed).await
    }

    /// Sets one attribute of a pricing item's rate as raw text, bypassing every check (data written by an
    /// older loader or by hand); bumps the item's version. `pk` is `PRICING#DEFAULT` or `AGENCY#<id>`.
    pub async fn set_stored_rate_text(&self, pk: &str, credit_type: &str, field: &str, text: &str) {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S("PRICING".to_owned()))
            .update_expression("SET #rates.#type.#field = :text, version = version + :one")
            .condition_expression("attribute_exists(#rates.#type)")
            .expression_attribute_names("#rates", "rates")
            .expression_attribute_names("#type", credit_type)
            .expression_attribute_names("#field", field)
            .expression_attribute_values(":text", AttributeValue::S(text.to_owned()))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .send()
            .await
            .expect("update a stored rate");
    }

    /// How the account's balances differ from its ledger (entries, and purchases older than the ledger), and any
    /// negative balance, one line per credit type (empty: none).
    pub async fn drift(&self, account_id: &str) -> Vec<String> {
        let ledger = self.app.store.account_ledger(account_id).await.expect("the account's ledger");
        let mut lines = Vec::new();
        for drift in ledger.drift() {
            for (t, balance, sum) in &drift.differences {
                lines.push(format!("{t}: balance {balance:?} != ledger {sum}"));
            }
            for (t, balance) in &drift.negative {
                lines.push(format!("{t}: negative balance {balance}"));
            }
            if let Some((available, expected)) = drift.line {
                lines.push(format!("credit line: available {available} != {expected}"));
            }
        }
        lines
    }

    /// Every item of the table, sorted by key, as comparable JSON: a test-only full read.
    pub async fn snapshot(&self) -> Vec<Value> {
        table_snapshot(&self.client, &self.table).await
    }
}

pub async fn table_snapshot(client: &Client, table: &str) -> Vec<Value> {
    let items: Vec<HashMap<String, AttributeValue>> = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("scan");
    let mut items: Vec<Value> = items.iter().map(item_to_json).collect();
    items.sort_by_key(|v| format!("{}|{}", v["pk"], v["sk"]));
    items
}

fn item_to_json(item: &HashMap<String, AttributeValue>) -> Value {
    let map: serde_json::Map<String, Value> = item.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect();
    Value::Object(map)
}

fn value_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::L(l) => json!({"L": l.iter().map(value_to_json).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": item_to_json(m)}),
        AttributeValue::Ss(s) => json!({"SS": s}),
        AttributeValue::Ns(s) => json!({"NS": s}),
        other => json!({"OTHER": format!("{other:?}")}),
    }
}

/// The repository root, for reading `events/` and `infra/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit sits in the repo root").to_path_buf()
}

/// Reads a sample event from `events/` as the raw JSON value.
pub fn event_json(name: &str) -> Value {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Turns an API Gateway v2 event (JSON) into the `Request` lambda_http hands a handler.
pub fn request_from_event(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 event")
}

/// Builds an API Gateway HTTP API (payload 2.0) event as the deployed API would send it.
pub struct ApiEvent {
    method: String,
    route_key: String,
    raw_path: String,
    path_parameters: serde_json::Map<String, Value>,
    claims: Option<Value>,
    headers: serde_json::Map<String, Value>,
    query: Option<String>,
    body: Option<String>,
}

impl ApiEvent {
    /// `route` is the template route with `{accountId}`, e.g. `/accounts/{accountId}/pricing`.
    pub fn new(method: &str, route: &str, path_account: &str) -> ApiEvent {
        ApiEvent {
            method: method.to_owned(),
            route_key: format!("{method} {route}"),
            raw_path: route.replace("{accountId}", path_account),
            path_parameters: serde_json::Map::from_iter([("accountId".to_owned(), json!(path_account))]),
            claims: None,
            headers: serde_json::Map::new(),
            query: None,
            body: None,
        }
    }

    /// `POST /accounts/{account}/credit-purchases` with a JSON body, signed in as `account`.
    pub fn purchase(account: &str, body: &Value) -> ApiEvent {
        ApiEvent::new("POST", PURCHASES_ROUTE, account).as_account(account).json(body)
    }

    /// An agency route, e.g. `/agencies/{agencyId}/pricing`, for `agency_id`; other path parameters with
    /// [`ApiEvent::path_parameter`]. Sign in with [`ApiEvent::as_agency_admin`].
    pub fn agency(method: &str, route: &str, agency_id: &str) -> ApiEvent {
        let mut event = ApiEvent::new(method, route, "");
        event.path_parameters = serde_json::Map::new();
        event.raw_path = route.to_owned();
        event.path_parameter("agencyId", agency_id)
    }

    /// Sets `{name}` in the path to `value`.
    pub fn path_parameter(mut self, name: &str, value: &str) -> ApiEvent {
        self.raw_path = self.raw_path.replace(&format!("{{{name}}}"), value);
        self.path_parameters.insert(name.to_owned(), json!(value));
        self
    }

    /// Signed in as an administrator of `agency_id`: the agency claim and the `agency-admin` group, as API
    /// Gateway hands array claims over (`[a b]`).
    pub fn as_agency_admin(self, agency_id: &str) -> ApiEvent {
        self.claims(json!({
            "sub": format!("admin-of-{agency_id}"),
            "custom:agency_id": agency_id,
            "cognito:groups": "[agency-admin]",
        }))
    }

    /// Signed in as a member of `agency_id` without the admin role (a client's token may carry its agency).
    pub fn as_agency_member(self, agency_id: &str) -> ApiEvent {
        self.claims(json!({"sub": format!("member-of-{agency_id}"), "custom:agency_id": agency_id}))
    }

    /// Signed in as `account_id` (claim `custom:account_id`).
    pub fn as_account(self, account_id: &str) -> ApiEvent {
        self.claims(json!({"sub": format!("user-of-{account_id}"), "custom:account_id": account_id}))
    }

    pub fn claims(mut self, claims: Value) -> ApiEvent {
        self.claims = Some(claims);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> ApiEvent {
        self.headers.insert(name.to_ascii_lowercase(), json!(value));
        self
    }

    pub fn query(mut self, raw: &str) -> ApiEvent {
        self.query = Some(raw.to_owned());
        self
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, body: &Value) -> ApiEvent {
        self.header("content-type", "application/json").raw_body(&body.to_string())
    }

    pub fn raw_body(mut self, body: &str) -> ApiEvent {
        self.body = Some(body.to_owned());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut context = json!({
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "local",
            "http": {"method": self.method, "path": self.raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "testkit"},
            "requestId": "testkit-request",
            "routeKey": self.route_key,
            "stage": "$default",
            "time": "25/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795000000000u64
        });
        if let Some(claims) = &self.claims {
            context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
        }
        let mut query_parameters = serde_json::Map::new();
        if let Some(raw) = &self.query {
            for pair in raw.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                // API Gateway joins a repeated parameter's values with commas.
                match query_parameters.get_mut(k) {
                    Some(Value::String(joined)) => {
                        joined.push(',');
                        joined.push_str(v);
                    }
                    _ => {
                        query_parameters.insert(k.to_owned(), json!(v));
                    }
                }
            }
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": self.route_key,
            "rawPath": self.raw_path,
            "rawQueryString": self.query.clone().unwrap_or_default(),
            "headers": self.headers,
            "pathParameters": self.path_parameters,
            "requestContext": context,
            "isBase64Encoded": false
        });
        if !query_parameters.is_empty() {
            event["queryStringParameters"] = Value::Object(query_parameters);
        }
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        event
    }

    pub fn request(&self) -> Request {
        request_from_event(&self.to_json())
    }
}

/// A handler response, read back for assertions.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn answer(response: lambda_http::Response<lambda_http::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Answer { status, headers, body }
}
