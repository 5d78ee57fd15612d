//! A mock Lambda Runtime API on 127.0.0.1:0: the four routes a function's runtime client calls. It hands out
//! queued events one at a time (as Lambda does: one invocation per instance at a time) and timestamps the
//! first poll and every answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// What the function sent back for one invocation (or for its init).
#[derive(Debug)]
pub struct Outcome {
    pub at: Instant,
    pub request_id: String,
    pub body: Bytes,
    /// Posted to `/error` or `/init/error`.
    pub error: bool,
}

struct Shared {
    function_arn: String,
    first_poll: OnceLock<Instant>,
    events: Mutex<mpsc::UnboundedReceiver<Bytes>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    next_id: AtomicU64,
}

pub struct MockRuntime {
    addr: SocketAddr,
    shared: Arc<Shared>,
    events: Option<mpsc::UnboundedSender<Bytes>>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockRuntime {
    pub async fn start(function_name: &str) -> Result<MockRuntime, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            first_poll: OnceLock::new(),
            events: Mutex::new(event_rx),
            outcomes: outcome_tx,
            next_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .route(NEXT, get(next_invocation))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        Ok(MockRuntime {
            addr,
            shared,
            events: Some(event_tx),
            outcomes: outcome_rx,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation; a waiting `/next` gets it at once.
    pub fn queue(&self, event: Bytes) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    pub async fn next_outcome(&mut self, timeout: Duration) -> Result<Outcome, String> {
        match tokio::time::timeout(timeout, self.outcomes.recv()).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err("the mock Runtime API stopped".into()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Answers a pending `/next` (the function is gone by then) and stops serving.
    pub async fn stop(mut self) {
        self.events.take();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), task).await.is_err()
        {
            eprintln!("bench: warning: the mock Runtime API did not stop within 2 s");
        }
    }
}

async fn next_invocation(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let _ = shared.first_poll.set(Instant::now());
    let event = shared.events.lock().await.recv().await;
    let Some(event) = event else {
        // Shutting down: the function process has been killed already.
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    let request_id = format!("bench-{:08}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let deadline_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() + 10_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", shared.function_arn.clone());
    set("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".into());
    (StatusCode::OK, headers, event)
}

fn record(shared: &Shared, request_id: String, body: Bytes, error: bool) -> StatusCode {
    let _ = shared.outcomes.send(Outcome { at: Instant::now(), request_id, body, error });
    StatusCode::ACCEPTED
}

async fn invocation_response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&shared, id, body, false)
}

async fn invocation_error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&shared, id, body, true)
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    record(&shared, "init".into(), body, true)
}
