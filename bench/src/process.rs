//! Release bootstraps run as Lambda runs them: one fresh process per cold start, configured only through the
//! environment Lambda sets, polling the mock Runtime API and talking to the bench's embedded dynoxide.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::runtime_api::{MockRuntime, Outcome};

/// Where the functions find their table.
pub struct Engine {
    pub endpoint: String,
    pub table: String,
}

/// What a function's good answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An API Gateway response with this `statusCode`.
    Status(u64),
    /// The event itself (the echo binary).
    Echo,
    /// Any JSON object (a direct-invoke function's summary, e.g. collect-payments').
    Object,
}

/// A function binary under test and what a good answer looks like.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: &'static str,
    pub binary: std::path::PathBuf,
    /// What a good answer is.
    pub expect: Expect,
    /// Set on top of Lambda's environment (only for the diagnostic cold-start variant).
    pub extra_env: Vec<(&'static str, String)>,
}

const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

struct Running {
    child: tokio::process::Child,
    pid: u32,
    spawned: Instant,
    runtime: MockRuntime,
}

/// VmHWM (peak resident set) and VmRSS of a live process, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub hwm: u64,
    pub rss: u64,
}

fn memory_of(pid: u32) -> Result<Memory, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("/proc/{pid}/status has no {field}"))
    };
    Ok(Memory { hwm: kib("VmHWM:")?, rss: kib("VmRSS:")? })
}

async fn spawn(function: &Function, engine: &Engine, first_event: Option<Bytes>) -> Result<Running, String> {
    let runtime = MockRuntime::start(function.name).await?;
    if let Some(event) = first_event {
        runtime.queue(event); // waiting already: the first poll is answered at once
    }
    let mut command = tokio::process::Command::new(&function.binary);
    // Only what Lambda (and our template) would set: nothing leaks in from the developer's shell.
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.host_port())
        .env("AWS_LAMBDA_FUNCTION_NAME", function.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/bench/{}", function.name))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("TABLE_NAME", &engine.table)
        .env("ACCOUNT_ID_CLAIM", "custom:account_id")
        .env("AWS_ENDPOINT_URL_DYNAMODB", &engine.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .envs(function.extra_env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null()) // the JSON logs; Lambda ships them, we don't need them
        .stderr(Stdio::piped()) // kept for the error message if the process fails
        .kill_on_drop(true);
    let spawned = Instant::now();
    let child = command.spawn().map_err(|e| format!("{}: {e}", function.binary.display()))?;
    let pid = child.id().ok_or("the process exited at once")?;
    Ok(Running { child, pid, spawned, runtime })
}

impl Running {
    /// Kills the process and stops its Runtime API; returns what it wrote to stderr.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        self.runtime.stop().await;
        stderr
    }

    async fn answer(&mut self, function: &Function, sent: &Bytes) -> Result<Outcome, String> {
        let outcome = self.runtime.next_outcome(ANSWER_TIMEOUT).await?;
        check(function, sent, &outcome)?;
        Ok(outcome)
    }
}

fn check(function: &Function, sent: &Bytes, outcome: &Outcome) -> Result<(), String> {
    let body = String::from_utf8_lossy(&outcome.body);
    if outcome.error {
        return Err(format!("{} reported an error for {}: {body}", function.name, outcome.request_id));
    }
    let answer: Value = serde_json::from_slice(&outcome.body)
        .map_err(|e| format!("{}: answer is not JSON ({e}): {body}", function.name))?;
    let ok = match function.expect {
        Expect::Status(status) => answer["statusCode"].as_u64() == Some(status),
        Expect::Echo => serde_json::from_slice::<Value>(sent).is_ok_and(|event| event == answer),
        Expect::Object => answer.is_object(),
    };
    if ok { Ok(()) } else { Err(format!("{}: unexpected answer: {body}", function.name)) }
}

/// One cold start: exec → first poll → first answer to a real event.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    pub to_first_poll: Duration,
    pub to_first_answer: Duration,
    /// Peak RSS once the first invocation is answered.
    pub memory: Memory,
}

pub async fn cold_start(function: &Function, engine: &Engine, event: Bytes) -> Result<ColdStart, String> {
    let mut running = spawn(function, engine, Some(event.clone())).await?;
    let result = async {
        let outcome = running.answer(function, &event).await?;
        let first_poll = running.runtime.first_poll().ok_or("answered without polling")?;
        Ok::<_, String>(ColdStart {
            to_first_poll: first_poll.duration_since(running.spawned),
            to_first_answer: outcome.at.duration_since(running.spawned),
            memory: memory_of(running.pid)?,
        })
    }
    .await;
    let stderr = running.stop().await;
    result.map_err(|e| if stderr.trim().is_empty() { e } else { format!("{e}\nstderr: {stderr}") })
}

/// A warm instance fed `count` invocations back to back, one at a time (Lambda never gives one instance two).
#[derive(Debug, Clone, Copy)]
pub struct Sustained {
    pub invocations: usize,
    pub after_first: Memory,
    pub at_end: Memory,
    pub wall: Duration,
}

pub async fn sustained(
    function: &Function,
    engine: &Engine,
    count: usize,
    event: impl Fn(usize) -> Bytes,
) -> Result<Sustained, String> {
    let mut running = spawn(function, engine, None).await?;
    let result = async {
        let started = Instant::now();
        let mut after_first = Memory::default();
        for i in 0..count {
            let sent = event(i);
            running.runtime.queue(sent.clone());
            running.answer(function, &sent).await?;
            if i == 0 {
                after_first = memory_of(running.pid)?;
            }
        }
        Ok::<_, String>(Sustained {
            invocations: count,
            after_first,
            at_end: memory_of(running.pid)?,
            wall: started.elapsed(),
        })
    }
    .await;
    let stderr = running.stop().await;
    result.map_err(|e| if stderr.trim().is_empty() { e } else { format!("{e}\nstderr: {stderr}") })
}

/// An API Gateway event from `events/`, as bytes.
pub fn event_bytes(event: &Value) -> Bytes {
    Bytes::from(event.to_string())
}
