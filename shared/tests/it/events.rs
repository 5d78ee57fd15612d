//! Domain events end to end (docs/events.md): the outbox item written inside the change's own transaction, read
//! back from dynoxide's real stream (DynamoDB Streams API), handed to the real `publish-events` handler, put on a
//! local stand-in for EventBridge (no local EventBridge exists; the SDK is pointed at it as
//! `AWS_ENDPOINT_URL_EVENTBRIDGE` would). What the code serialises is validated against `events/schemas/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType, TransactWriteItem};
use serde_json::{Value, json};
use shared::api;
use shared::consumption::{Consumer, ConsumptionSettings, consumption_event};
use shared::domain::CreditType;
use shared::domain::billing::StatementKind;
use shared::domain::events::{self, EVENT_TYPES, OutboxEvent};
use shared::domain::rules::{AlertThresholds, ConsumptionRules, TopupRule, TopupRules};
use shared::events::{Publisher, handle_stream_batch};
use shared::payments;
use shared::storage::outbox::{event_from_stream_record, outbox_put};
use testkit::{ApiEvent, BIKES, COFFEE, TestEnv, answer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(super) const NORTHWIND: &str = "agency-northwind";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `events/schemas/validate.py` (Python's jsonschema, draft 2020-12) over these events.
pub(crate) fn validate(events: &[String]) -> Result<(), String> {
    let mut child = Command::new("python3")
        .arg(workspace().join("events/schemas/validate.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-tools.sh installs jsonschema with schemathesis)");
    let mut stdin = child.stdin.take().unwrap();
    for event in events {
        writeln!(stdin, "{event}").unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(()) } else { Err(text) }
}

#[test]
fn every_event_type_has_a_schema_and_what_the_code_serialises_matches_it() {
    let dir = workspace().join("events/schemas");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".schema.json")).map(str::to_owned))
        .collect();
    assert_eq!(files, EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect::<BTreeSet<_>>(), "schema files vs types");
    let examples: Vec<String> = events::examples().into_iter().map(|e| e.json).collect();
    validate(&examples).unwrap();
    // The check can fail: an event with a field its schema does not have, or a price as a JSON number.
    let mut bad: Value = serde_json::from_str(&examples[12]).unwrap();
    bad["detail"]["changes"][0]["oldPrice"] = json!(27.5);
    let mut with_cost: Value = serde_json::from_str(&examples[0]).unwrap();
    with_cost["detail"]["lines"][0]["unitCost"] = json!("16.00");
    let err = validate(&[bad.to_string(), with_cost.to_string()]).unwrap_err();
    assert!(err.contains("oldPrice") && err.contains("unitCost"), "{err}");
}

#[test]
fn no_schema_has_a_field_for_cost_margin_or_a_secret() {
    fn names(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(properties)) = map.get("properties") {
                    out.extend(properties.keys().cloned());
                }
                map.values().for_each(|v| names(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| names(v, out)),
            _ => {}
        }
    }
    for event_type in EVENT_TYPES {
        let path = workspace().join(format!("events/schemas/{event_type}.schema.json"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(schema["additionalProperties"], false, "{event_type}");
        let mut fields = Vec::new();
        names(&schema, &mut fields);
        for field in fields {
            let lower = field.to_lowercase();
            for forbidden in ["cost", "margin", "token", "secret", "password", "card", "changedby"] {
                assert!(!lower.contains(forbidden), "{event_type}: field {field} may not be published");
            }
        }
    }
}

// ---- dynoxide's stream, read as Lambda's event source mapping reads it ----

/// One call of the DynamoDB Streams API (JSON 1.0) on dynoxide, over plain HTTP: no SDK crate for a test.
async fn streams_call(endpoint: &str, action: &str, body: Value) -> Value {
    let host = endpoint.trim_start_matches("http://");
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDBStreams_20120810.{action}\r\nX-Amz-Date: 20261207T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=local/20261207/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(host).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{action}: {head}\n{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{action}: {e}: {body}"))
}

pub(super) async fn enable_stream(env: &TestEnv) {
    env.client
        .update_table()
        .table_name(&env.table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every record on the table's stream from its start, as the batch Lambda would hand `publish-events`, filtered
/// to outbox inserts as the template's event source mapping filters them.
pub(super) async fn stream_batch(env: &TestEnv) -> Event {
    let endpoint = env.dynamo.endpoint();
    let streams = streams_call(&endpoint, "ListStreams", json!({ "TableName": env.table })).await;
    let arn = streams["Streams"][0]["StreamArn"].as_str().expect("the table has a stream").to_owned();
    let description = streams_call(&endpoint, "DescribeStream", json!({ "StreamArn": arn })).await;
    let mut records = Vec::new();
    for shard in description["StreamDescription"]["Shards"].as_array().unwrap() {
        let iterator = streams_call(
            &endpoint,
            "GetShardIterator",
            json!({ "StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON" }),
        )
        .await;
        let mut next = iterator["ShardIterator"].clone();
        while next.is_string() {
            let page = streams_call(&endpoint, "GetRecords", json!({ "ShardIterator": next })).await;
            let page_records = page["Records"].as_array().cloned().unwrap_or_default();
            if page_records.is_empty() {
                break;
            }
            records.extend(page_records);
            next = page["NextShardIterator"].clone();
        }
    }
    let outbox: Vec<Value> = records
        .into_iter()
        .filter(|r| {
            r["eventName"] == "INSERT"
                && r["dynamodb"]["Keys"]["sk"]["S"].as_str().is_some_and(|sk| sk.starts_with("OUTBOX#"))
        })
        .collect();
    serde_json::from_value(json!({ "Records": outbox })).expect("stream records read as Lambda's event")
}

// ---- a local stand-in for EventBridge's PutEvents ----

#[derive(Default)]
struct Bus {
    /// Every entry put, in order (the same event may come twice: at least once).
    received: Vec<Value>,
    calls: usize,
    /// The next calls refuse the entry at these positions (ThrottlingException), one set per call.
    refuse: Vec<Vec<usize>>,
    /// Calls after this many never answer: the publisher is then killed mid-batch.
    hang_after: Option<usize>,
}

#[derive(Clone, Default)]
pub(super) struct StandIn(Arc<Mutex<Bus>>);

impl StandIn {
    pub(super) async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bus = self.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let bus = bus.clone();
                tokio::spawn(async move { bus.serve(socket).await });
            }
        });
        format!("http://{addr}")
    }

    async fn serve(&self, mut socket: TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let Ok(read) = socket.read(&mut chunk).await else { return };
            if read == 0 {
                return;
            }
            buffer.extend_from_slice(&chunk[..read]);
            let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buffer.len() < end + 4 + length {
                continue;
            }
            assert!(head.contains("x-amz-target: awsevents.putevents"), "{head}");
            let request: Value = serde_json::from_slice(&buffer[end + 4..end + 4 + length]).unwrap();
            let answer = {
                let mut bus = self.0.lock().unwrap();
                bus.calls += 1;
                if bus.hang_after.is_some_and(|n| bus.calls > n) {
                    None
                } else {
                    let refuse = if bus.refuse.is_empty() { Vec::new() } else { bus.refuse.remove(0) };
                    let mut results = Vec::new();
                    for (i, entry) in request["Entries"].as_array().unwrap().iter().enumerate() {
                        if refuse.contains(&i) {
                            results.push(json!({ "ErrorCode": "ThrottlingException", "ErrorMessage": "slow down" }));
                        } else {
                            bus.received.push(entry.clone());
                            results.push(json!({ "EventId": format!("eb-{}-{i}", bus.calls) }));
                        }
                    }
                    Some(json!({ "FailedEntryCount": refuse.len(), "Entries": results }))
                }
            };
            let Some(answer) = answer else {
                // Never answers: the caller is killed while waiting.
                std::future::pending::<()>().await;
                return;
            };
            let body = answer.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            return;
        }
    }

    pub(super) fn received(&self) -> Vec<Value> {
        self.0.lock().unwrap().received.clone()
    }

    /// What an idempotent consumer keeps: each event once, by its `id`.
    pub(super) fn deduped(&self) -> BTreeMap<String, Value> {
        self.received()
            .into_iter()
            .map(|entry| {
                let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
                (detail["id"].as_str().unwrap().to_owned(), detail)
            })
            .collect()
    }
}

pub(super) fn publisher_to(endpoint: &str) -> Publisher {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new("local", "local", None, None, "test"))
        .build();
    let mut publisher = Publisher::new(aws_sdk_eventbridge::Client::from_conf(config), "overage-credits-test");
    publisher.base_delay = Duration::from_millis(5);
    publisher
}

pub(super) fn failures(response: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    response.batch_item_failures.iter().filter_map(|f| f.item_identifier.clone()).collect()
}

#[tokio::test]
async fn a_price_change_emits_exactly_one_event_delivered_once_and_deduped_on_redelivery() {
    let env = TestEnv::seeded().await;
    enable_stream(&env).await;
    let read = ApiEvent::agency("GET", "/agencies/{agencyId}/pricing", NORTHWIND).as_agency_admin(NORTHWIND);
    let read = answer(api::agency_read(&env.app, read.request()).await);
    let etag = read.header("etag").expect("the pricing version").to_owned();
    let event = ApiEvent::agency("PUT", "/agencies/{agencyId}/pricing", NORTHWIND)
        .as_agency_admin(NORTHWIND)
        .raw_body(&json!({ "prices": { "audience": "26.00" } }).to_string())
        .header("content-type", "application/json")
        .header("if-match", &etag);
    let a = answer(api::agency_write(&env.app, event.request()).await);
    assert_eq!(a.status, 200, "{}", a.body);

    let batch = stream_batch(&env).await;
    assert_eq!(batch.records.len(), 1, "one outbox item for one change");
    let bus = StandIn::default();
    let publisher = publisher_to(&bus.start().await);
    let response = handle_stream_batch(&publisher, batch.clone()).await;
    assert!(failures(&response).is_empty());
    let received = bus.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["Source"], "overage-credits");
    assert_eq!(received[0]["DetailType"], "pricing.changed");
    assert_eq!(received[0]["EventBusName"], "overage-credits-test");
    let detail: Value = serde_json::from_str(received[0]["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["detail"]["agencyId"], NORTHWIND);
    assert_eq!(detail["detail"]["changes"][0]["newPrice"], "26.00");
    assert_eq!(detail["detail"]["versionAfter"], detail["detail"]["versionBefore"].as_u64().unwrap() + 1);
    validate(&[detail.to_string()]).unwrap();

    // Lambda delivers at least once: the same batch again puts the same event again, with the same id.
    handle_stream_batch(&publisher, batch).await;
    assert_eq!(bus.received().len(), 2);
    assert_eq!(bus.deduped().len(), 1);

    // A price change refused (the version it names has moved) commits nothing, so it emits nothing.
    let stale = ApiEvent::agency("PUT", "/agencies/{agencyId}/pricing", NORTHWIND)
        .as_agency_admin(NORTHWIND)
        .raw_body(&json!({ "prices": { "audience": "25.00" } }).to_string())
        .header("content-type", "application/json")
        .header("if-match", &etag);
    let a = answer(api::agency_write(&env.app, stale.request()).await);
    assert_eq!(a.status, 412, "{}", a.body);
    assert_eq!(stream_batch(&env).await.records.len(), 1);
}

/// The envelope of every outbox item the table's stream carried so far, in write order, each checked against
/// its schema.
pub(super) async fn outbox_events(env: &TestEnv) -> Vec<Value> {
    let batch = stream_batch(env).await;
    let events: Vec<Value> = batch
        .records
        .iter()
        .map(|record| {
            let streamed = event_from_stream_record(record).unwrap().expect("an outbox insert");
            serde_json::from_str(&streamed.json).unwrap()
        })
        .collect();
    validate(&events.iter().map(Value::to_string).collect::<Vec<_>>()).unwrap();
    events
}

pub(super) fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_purchase_emits_one_credits_purchased_at_price_and_its_replay_or_refusal_none() {
    let env = TestEnv::seeded().await;
    enable_stream(&env).await;
    let body = json!({"quantities": {"audience": 2, "pixel": 1}});
    let bought = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "ev-1").request())
            .await,
    );
    assert_eq!(bought.status, 201, "{}", bought.body);
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["credits.purchased"]);
    let detail = &events[0]["detail"];
    assert_eq!(detail["accountId"], COFFEE);
    assert_eq!(detail["agencyId"], NORTHWIND);
    assert_eq!(detail["purchaseId"], bought.body["purchase"]["purchaseId"]);
    assert_eq!(detail["total"], bought.body["purchase"]["total"]);
    assert_eq!(detail["trigger"], "client");
    let lines = detail["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let audience = lines.iter().find(|l| l["creditType"] == "audience").unwrap();
    assert_eq!((audience["quantity"].as_u64(), audience["unitPrice"].as_str()), (Some(2), Some("25.00")));
    assert!(!events[0].to_string().to_lowercase().contains("cost"), "no cost is published: {}", events[0]);

    // The idempotent replay answers the first purchase and writes nothing, so no second event.
    let replay = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &body).header("Idempotency-Key", "ev-1").request())
            .await,
    );
    assert_eq!(replay.status, 201, "{}", replay.body);
    assert_eq!(replay.body["purchase"]["purchaseId"], bought.body["purchase"]["purchaseId"]);
    // A purchase over the client's line is refused inside the transaction: nothing committed, nothing emitted.
    let refused = answer(
        api::purchase_credits(
            &env.app,
            ApiEvent::purchase(COFFEE, &json!({"quantities": {"audience": 90000}})).request(),
        )
        .await,
    );
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert_eq!(outbox_events(&env).await.len(), 1);
}

#[tokio::test]
async fn a_void_emits_one_purchase_voided_and_its_replay_or_refusal_none() {
    let env = TestEnv::seeded().await;
    let bought = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(COFFEE, &json!({"quantities": {"pixel": 3}})).request())
            .await,
    );
    assert_eq!(bought.status, 201, "{}", bought.body);
    let purchase_id = bought.body["purchase"]["purchaseId"].as_str().unwrap().to_owned();
    enable_stream(&env).await;
    let void = || {
        ApiEvent::agency("POST", "/agencies/{agencyId}/purchases/{purchaseId}/void", NORTHWIND)
            .path_parameter("purchaseId", &purchase_id)
            .as_agency_admin(NORTHWIND)
            .json(&json!({"accountId": COFFEE, "reason": "typo"}))
    };
    let first = answer(api::agency_write(&env.app, void().header("Idempotency-Key", "v-1").request()).await);
    assert_eq!(first.status, 200, "{}", first.body);
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["purchase.voided"]);
    let detail = &events[0]["detail"];
    assert_eq!((detail["accountId"].as_str(), detail["agencyId"].as_str()), (Some(COFFEE), Some(NORTHWIND)));
    assert_eq!(detail["purchaseId"], purchase_id.as_str());
    assert_eq!(detail["quantities"], json!({"pixel": 3}));
    assert_eq!(detail["total"], bought.body["purchase"]["total"]);
    assert!(!events[0].to_string().to_lowercase().contains("cost"), "no cost is published: {}", events[0]);

    // The replay (same key) and a second void (already voided) write nothing, so emit nothing.
    let replay = answer(api::agency_write(&env.app, void().header("Idempotency-Key", "v-1").request()).await);
    assert_eq!(replay.status, 200, "{}", replay.body);
    let again = answer(api::agency_write(&env.app, void().request()).await);
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(outbox_events(&env).await.len(), 1);
}

#[tokio::test]
async fn an_agencys_limit_change_emits_one_credit_limit_changed_and_a_refused_or_unchanged_one_none() {
    let env = TestEnv::seeded().await;
    enable_stream(&env).await;
    let put_limit = |agency: &'static str, limit: &'static str| {
        ApiEvent::agency("PUT", "/agencies/{agencyId}/clients/{accountId}/credit-limit", agency)
            .path_parameter("accountId", COFFEE)
            .as_agency_admin(agency)
            .json(&json!({ "creditLimit": limit }))
    };
    let a = answer(api::agency_write(&env.app, put_limit(NORTHWIND, "20000").request()).await);
    assert_eq!(a.status, 200, "{}", a.body);
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["credit_limit.changed"]);
    let detail = &events[0]["detail"];
    assert_eq!((detail["accountId"].as_str(), detail["agencyId"].as_str()), (Some(COFFEE), Some(NORTHWIND)));
    assert_eq!(detail["currency"], "USD");
    assert_eq!(testkit::d(detail["oldLimit"].as_str().unwrap()), testkit::d("25000"));
    assert_eq!(testkit::d(detail["newLimit"].as_str().unwrap()), testkit::d("20000"));
    assert!(!events[0].to_string().contains("admin-of"), "who changed it stays in the audit: {}", events[0]);

    // The same limit again writes nothing; another agency's administrator is refused: no event either way.
    let same = answer(api::agency_write(&env.app, put_limit(NORTHWIND, "20000.00").request()).await);
    assert_eq!(same.status, 200, "{}", same.body);
    let other = answer(api::agency_write(&env.app, put_limit("agency-brightside", "1").request()).await);
    assert_eq!(other.status, 404, "{}", other.body);
    assert_eq!(outbox_events(&env).await.len(), 1);
}

#[tokio::test]
async fn a_payoff_emits_statement_paid_and_the_last_held_statements_hold_lifted_and_a_replay_none() {
    let env = TestEnv::seeded().await;
    for account in [COFFEE, BIKES] {
        assert_eq!(super::credit_lines::buy(&env.app, account, json!({"pixel": 2})).await.status, 201);
    }
    let cycle = super::credit_lines::bill_now(&env).await;
    let coffee = StatementKind::Client.statement_id(COFFEE, &cycle);
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let failed = json!({"statementId": bikes, "failed": true, "reason": "card declined"});
    payments::payment_event(&env.app.store, &failed).await.unwrap();
    enable_stream(&env).await;
    let pay = |statement: &str, amount: &str, reference: &str| json!({"statementId": statement, "amount": amount, "paymentReference": reference, "paidAt": "2026-12-03T10:00:00Z"});

    // Paying a statement that held nothing: `statement.paid` only.
    payments::payment_event(&env.app.store, &pay(&coffee, "20.00", "pi_coffee")).await.unwrap();
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["statement.paid"]);
    let detail = &events[0]["detail"];
    assert_eq!((detail["accountId"].as_str(), detail["agencyId"].as_str()), (Some(COFFEE), Some(NORTHWIND)));
    assert_eq!((detail["statementId"].as_str(), detail["amount"].as_str()), (Some(coffee.as_str()), Some("20.00")));
    assert_eq!(detail["paymentReference"], "pi_coffee");

    // A part payment pays nothing off; paying the rest of the held one lifts the account's hold with it.
    payments::payment_event(&env.app.store, &pay(&bikes, "5.00", "pi_bikes_1")).await.unwrap();
    assert_eq!(outbox_events(&env).await.len(), 1);
    payments::payment_event(&env.app.store, &pay(&bikes, "15.00", "pi_bikes_2")).await.unwrap();
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["statement.paid", "statement.paid", "account.hold_lifted"]);
    assert_eq!(events[1]["detail"]["statementId"], bikes.as_str());
    assert_eq!(events[2]["detail"], json!({"accountId": BIKES, "agencyId": NORTHWIND}));

    // The same payment again is a replay, and a payment of a paid statement is refused: no event.
    payments::payment_event(&env.app.store, &pay(&bikes, "15.00", "pi_bikes_2")).await.unwrap();
    assert!(payments::payment_event(&env.app.store, &pay(&bikes, "1.00", "pi_bikes_3")).await.is_err());
    assert_eq!(outbox_events(&env).await.len(), 3);
}

/// A failure also emits `statement.payment_failed` (its own tests: `statement_events::`); here, the hold.
#[tokio::test]
async fn the_first_unpaid_statement_emits_hold_started_and_a_second_or_a_repeat_none() {
    let env = TestEnv::seeded().await;
    assert_eq!(super::credit_lines::buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    let first = StatementKind::Client.statement_id(BIKES, &super::credit_lines::bill_now(&env).await);
    assert_eq!(super::credit_lines::buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
    let second = StatementKind::Client.statement_id(BIKES, &super::credit_lines::bill_now(&env).await);
    enable_stream(&env).await;
    let fail = |statement: &str| json!({"statementId": statement, "failed": true, "reason": "card declined"});

    payments::payment_event(&env.app.store, &fail(&first)).await.unwrap();
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["account.hold_started", "statement.payment_failed"]);
    assert_eq!(
        events[0]["detail"],
        json!({"accountId": BIKES, "agencyId": NORTHWIND, "statementIds": [first.as_str()]})
    );
    // Already on hold: a second failed statement starts no hold (its own failure only), the same failure again
    // writes nothing.
    payments::payment_event(&env.app.store, &fail(&second)).await.unwrap();
    payments::payment_event(&env.app.store, &fail(&first)).await.unwrap();
    let events = outbox_events(&env).await;
    assert_eq!(types(&events), ["account.hold_started", "statement.payment_failed", "statement.payment_failed"]);
    assert_eq!(events[2]["detail"]["statementId"], second.as_str());
}

/// `count` events written through the outbox Put, each in a transaction of its own, as producers will.
async fn write_outbox_events(env: &TestEnv, count: usize) -> Vec<OutboxEvent> {
    let mut written = Vec::new();
    for (i, mut example) in events::examples().into_iter().cycle().take(count).enumerate() {
        let id = events::new_event_id();
        example.json = example.json.replace(&example.id, &id);
        example.id = id;
        example.occurred_at = format!("2026-12-07T02:00:{:02}.{:03}Z", i / 1000, i % 1000);
        let items: Vec<TransactWriteItem> = vec![outbox_put(&env.table, &example).unwrap()];
        env.client.transact_write_items().set_transact_items(Some(items)).send().await.unwrap();
        written.push(example);
    }
    written
}

#[tokio::test]
async fn a_publisher_killed_mid_batch_loses_no_event_and_duplicates_dedupe_by_id() {
    let env = TestEnv::empty().await;
    enable_stream(&env).await;
    let written = write_outbox_events(&env, 35).await;
    let batch = stream_batch(&env).await;
    assert_eq!(batch.records.len(), 35);

    // The first PutEvents (10 events) is answered, the second never is: the function is killed there, as a
    // timeout or a crash would kill it, and reports nothing.
    let bus = StandIn::default();
    bus.0.lock().unwrap().hang_after = Some(1);
    let publisher = publisher_to(&bus.start().await);
    let running = tokio::spawn({
        let (publisher, batch) = (publisher.clone(), batch.clone());
        async move { handle_stream_batch(&publisher, batch).await }
    });
    while bus.0.lock().unwrap().calls < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(bus.received().len(), 10, "killed after one answered call");

    // Lambda retries the failed invocation with the same batch (the shard's checkpoint did not move).
    bus.0.lock().unwrap().hang_after = None;
    let response = handle_stream_batch(&publisher, batch).await;
    assert!(failures(&response).is_empty());
    assert_eq!(bus.received().len(), 45, "the first ten twice: at least once");
    let delivered = bus.deduped();
    let wanted: BTreeSet<&str> = written.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(delivered.keys().map(String::as_str).collect::<BTreeSet<_>>(), wanted, "none lost");
    let all: Vec<String> = delivered.values().map(Value::to_string).collect();
    validate(&all).unwrap();
}

#[tokio::test]
async fn refused_entries_are_resent_and_what_stays_unsent_is_handed_back_at_its_record() {
    let env = TestEnv::empty().await;
    enable_stream(&env).await;
    let written = write_outbox_events(&env, 14).await;
    let batch = stream_batch(&env).await;

    // EventBridge refuses two entries of the first call; the resend puts them.
    let bus = StandIn::default();
    bus.0.lock().unwrap().refuse = vec![vec![3, 7]];
    let publisher = publisher_to(&bus.start().await);
    let response = handle_stream_batch(&publisher, batch.clone()).await;
    assert!(failures(&response).is_empty());
    assert_eq!(bus.deduped().len(), 14);
    assert_eq!(bus.received().len(), 14, "only the refused entries were sent again");

    // An entry refused on every attempt: the batch item failure names its record, the first not put, so Lambda
    // redelivers from there and nothing after it is skipped.
    let bus = StandIn::default();
    // The second chunk (events 10..14): its entry 1 (event 11) is refused on all four attempts.
    bus.0.lock().unwrap().refuse = vec![vec![], vec![1], vec![0], vec![0], vec![0]];
    let publisher = publisher_to(&bus.start().await);
    let response = handle_stream_batch(&publisher, batch.clone()).await;
    let eleventh = batch.records[11].change.sequence_number.clone().unwrap();
    assert_eq!(failures(&response), vec![eleventh]);
    let mut redelivered = batch.clone();
    redelivered.records = batch.records[11..].to_vec();
    let response = handle_stream_batch(&publisher, redelivered).await;
    assert!(failures(&response).is_empty());
    assert_eq!(bus.deduped().len(), written.len());
}

/// The sample events developers invoke `publish-events` with (`events/publish-events*.json`): the valid one puts
/// its one event on the bus, schema-valid; the bad one (an outbox item without its event) puts nothing and hands
/// its record back, so Lambda retries it and finally sends it to the failure queue instead of dropping it.
#[tokio::test]
async fn the_sample_stream_events_publish_one_event_or_hand_the_bad_record_back() {
    let read = |name: &str| -> Event {
        let text = std::fs::read_to_string(workspace().join("events").join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let bus = StandIn::default();
    let publisher = publisher_to(&bus.start().await);

    let response = handle_stream_batch(&publisher, read("publish-events.json")).await;
    assert!(failures(&response).is_empty());
    let received = bus.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["DetailType"], "pricing.changed");
    validate(&[received[0]["Detail"].as_str().unwrap().to_owned()]).unwrap();

    let bad = read("publish-events-bad-input.json");
    let sequence = bad.records[0].change.sequence_number.clone();
    let response = handle_stream_batch(&publisher, bad).await;
    assert_eq!(failures(&response), vec![sequence.unwrap()]);
    assert_eq!(bus.received().len(), 1, "nothing more was put");
}

/// Two held statements paid off at the same moment (8 rounds): each emits `statement.paid`, and exactly one of
/// the two payments, whichever commits last, emits `account.hold_lifted`; the account ends with no hold.
#[tokio::test]
async fn two_held_statements_paid_off_at_once_lift_the_hold_exactly_once() {
    for round in 0..8 {
        let env = TestEnv::seeded().await;
        assert_eq!(super::credit_lines::buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
        let first = StatementKind::Client.statement_id(BIKES, &super::credit_lines::bill_now(&env).await);
        assert_eq!(super::credit_lines::buy(&env.app, BIKES, json!({"pixel": 1})).await.status, 201);
        let second = StatementKind::Client.statement_id(BIKES, &super::credit_lines::bill_now(&env).await);
        for statement in [&first, &second] {
            let fail = json!({"statementId": statement, "failed": true, "reason": "card declined"});
            payments::payment_event(&env.app.store, &fail).await.unwrap();
        }
        enable_stream(&env).await;
        let pay = |statement: &str, reference: String| json!({"statementId": statement, "amount": "10.00", "paymentReference": reference, "paidAt": "2026-12-03T10:00:00Z"});
        let (pay_first, pay_second) =
            (pay(&first, format!("pi_first_{round}")), pay(&second, format!("pi_second_{round}")));
        let (a, b) = tokio::join!(
            payments::payment_event(&env.app.store, &pay_first),
            payments::payment_event(&env.app.store, &pay_second),
        );
        a.unwrap();
        b.unwrap();
        let events = outbox_events(&env).await;
        let count = |t: &str| types(&events).iter().filter(|x| **x == t).count();
        assert_eq!((count("statement.paid"), count("account.hold_lifted")), (2, 1), "round {round}: {events:?}");
        let account = env.app.store.account(BIKES).await.unwrap().unwrap();
        assert!(account.held_statement_ids.is_empty(), "round {round}");
    }
}

/// Issue #25's list, change by change on one account's life: every change emits exactly the events its type
/// says, once (no change emits another's, a refused or replayed one none), through the stream and the real
/// publisher delivering the batch twice, deduped by `id` and valid against its schema; every type is
/// covered here.
#[tokio::test]
async fn every_change_emits_exactly_one_event_of_each_of_its_types() {
    let env = TestEnv::seeded().await;
    enable_stream(&env).await;
    let mut seen = 0;
    let mut expect = async |change: &str, wanted: &[&str]| {
        // One change's events in any order (they share its instant); each type once.
        let events = outbox_events(&env).await;
        let mut got = types(&events[seen..]);
        let mut wanted = wanted.to_vec();
        got.sort_unstable();
        wanted.sort_unstable();
        assert_eq!(got, wanted, "{change}");
        seen = events.len();
    };

    // The agency's price and its client's limit.
    let read = ApiEvent::agency("GET", "/agencies/{agencyId}/pricing", NORTHWIND).as_agency_admin(NORTHWIND);
    let etag = answer(api::agency_read(&env.app, read.request()).await).header("etag").unwrap().to_owned();
    let price = ApiEvent::agency("PUT", "/agencies/{agencyId}/pricing", NORTHWIND)
        .as_agency_admin(NORTHWIND)
        .json(&json!({ "prices": { "audience": "26.00" } }))
        .header("if-match", &etag);
    assert_eq!(answer(api::agency_write(&env.app, price.request()).await).status, 200);
    expect("price change", &["pricing.changed"]).await;
    let limit = ApiEvent::agency("PUT", "/agencies/{agencyId}/clients/{accountId}/credit-limit", NORTHWIND)
        .path_parameter("accountId", BIKES)
        .as_agency_admin(NORTHWIND)
        .json(&json!({ "creditLimit": "20000" }));
    assert_eq!(answer(api::agency_write(&env.app, limit.request()).await).status, 200);
    expect("limit change", &["credit_limit.changed"]).await;

    // Purchases, one voided; the replay of a purchase emits nothing.
    let purchase =
        || ApiEvent::purchase(BIKES, &json!({"quantities": {"pixel": 2}})).header("Idempotency-Key", "all-1");
    assert_eq!(answer(api::purchase_credits(&env.app, purchase().request()).await).status, 201);
    expect("purchase", &["credits.purchased"]).await;
    assert_eq!(answer(api::purchase_credits(&env.app, purchase().request()).await).status, 201);
    expect("purchase replayed", &[]).await;
    let voided = answer(
        api::purchase_credits(&env.app, ApiEvent::purchase(BIKES, &json!({"quantities": {"pixel": 1}})).request())
            .await,
    );
    expect("second purchase", &["credits.purchased"]).await;
    let void = ApiEvent::agency("POST", "/agencies/{agencyId}/purchases/{purchaseId}/void", NORTHWIND)
        .path_parameter("purchaseId", voided.body["purchase"]["purchaseId"].as_str().unwrap())
        .as_agency_admin(NORTHWIND)
        .json(&json!({"accountId": BIKES}));
    assert_eq!(answer(api::agency_write(&env.app, void.request()).await).status, 200);
    expect("void", &["purchase.voided"]).await;

    // The cycle: BIKES's client statement becomes payable (its agency's statement, at cost, emits nothing); a
    // second run of the cycle nothing more.
    let cycle = super::credit_lines::bill_now(&env).await;
    expect("cycle finish", &["statement.payable"]).await;
    shared::billing::run_billing(&env.app.store, &shared::billing::BillingRun::new(cycle.clone())).await.unwrap();
    expect("cycle finished again", &[]).await;

    // Collection fails (the hold starts with it), fails again on attempt 2, then the statement is paid off.
    let bikes = StatementKind::Client.statement_id(BIKES, &cycle);
    let fail =
        |attempt: u32| json!({"statementId": bikes, "failed": true, "reason": "card_declined", "attempt": attempt});
    payments::payment_event(&env.app.store, &fail(1)).await.unwrap();
    expect("failure", &["account.hold_started", "statement.payment_failed"]).await;
    payments::payment_event(&env.app.store, &fail(1)).await.unwrap();
    expect("failure replayed", &[]).await;
    payments::payment_event(&env.app.store, &fail(2)).await.unwrap();
    expect("second attempt's failure", &["statement.payment_failed"]).await;
    let paid = json!({"statementId": bikes, "amount": "20.00", "paymentReference": "pi_all", "paidAt": "2026-12-03T10:00:00Z"});
    payments::payment_event(&env.app.store, &paid).await.unwrap();
    expect("payoff", &["statement.paid", "account.hold_lifted"]).await;
    payments::payment_event(&env.app.store, &paid).await.unwrap();
    expect("payment replayed", &[]).await;

    // Consumptions under rules (an alert at 2 pixel credits, a top-up of 5 below 1, one top-up a day): the
    // crossing alerts, the next one tops up, the one after is refused by the cap; a release; replays nothing.
    let rules = ConsumptionRules {
        alert_thresholds: AlertThresholds::from([(CreditType::Pixel, 2)]),
        topups: TopupRules::from([(CreditType::Pixel, TopupRule { below: 1, buy: 5 })]),
        version: 0,
    };
    env.app.store.set_consumption_rules_for_test(BIKES, &rules).await.unwrap();
    let consumer = Consumer::new(env.app.store.clone(), ConsumptionSettings { auto_topup_daily_cap: 1 });
    let consume = |id: &str, pixel: u64| json!({"accountId": BIKES, "consumptionId": id, "quantities": {"pixel": pixel}, "reason": "build"});
    consumption_event(&consumer, &consume("all-c1", 1)).await.unwrap();
    expect("consumption crossing 2 (2 -> 1)", &["credits.consumed", "credits.low"]).await;
    consumption_event(&consumer, &consume("all-c2", 1)).await.unwrap();
    expect("consumption below 1 (1 -> 0, +5)", &["credits.consumed", "credits.purchased", "auto_topup.succeeded"])
        .await;
    consumption_event(&consumer, &consume("all-c3", 5)).await.unwrap();
    // 5 -> 0 crosses the alert again (re-armed by the top-up); the top-up it wants is refused by the cap.
    expect("consumption with the cap reached (5 -> 0)", &["credits.consumed", "credits.low", "auto_topup.refused"])
        .await;
    consumption_event(&consumer, &consume("all-c3", 5)).await.unwrap();
    expect("consumption replayed", &[]).await;
    let release = json!({"accountId": BIKES, "release": "all-c3", "reason": "job failed"});
    consumption_event(&consumer, &release).await.unwrap();
    expect("release", &["credits.released"]).await;
    consumption_event(&consumer, &release).await.unwrap();
    expect("release replayed", &[]).await;

    // Delivered twice, kept once each by id; every type covered.
    let batch = stream_batch(&env).await;
    let bus = StandIn::default();
    let publisher = publisher_to(&bus.start().await);
    for _ in 0..2 {
        assert!(failures(&handle_stream_batch(&publisher, batch.clone()).await).is_empty());
    }
    let delivered = bus.deduped();
    assert_eq!((bus.received().len(), delivered.len()), (2 * seen, seen));
    validate(&delivered.values().map(Value::to_string).collect::<Vec<_>>()).unwrap();
    let covered: BTreeSet<&str> = delivered.values().map(|e| e["type"].as_str().unwrap()).collect();
    let wanted: BTreeSet<&str> = EVENT_TYPES.into_iter().collect();
    assert_eq!(covered, wanted);
}
