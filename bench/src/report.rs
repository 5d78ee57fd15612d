//! The markdown report: machine, the figures, and each target with PASS/MISS and its margin.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::artifacts::Arm64;
use crate::inproc::{Comparison, Scenario};
use crate::process::{ColdStart, Sustained};
use crate::stats::{Samples, fmt_duration, fmt_mib, ratio};

/// 8 MiB and 40 MiB: the limits are read as binary megabytes (MB in AWS's own console figures).
const SIZE_LIMIT: u64 = 8 * 1024 * 1024;
const RSS_LIMIT: u64 = 40 * 1024 * 1024;

pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub rustc: String,
    pub kernel: String,
    pub commit: String,
    pub load_before: String,
}

fn command_line(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(dir).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

impl Machine {
    pub fn describe(root: &Path) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines().find_map(|l| {
                    l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let commit = match command_line("git", &["rev-parse", "--short", "HEAD"], root) {
            Some(head) => {
                let dirty = command_line("git", &["status", "--porcelain"], root).is_some_and(|s| !s.is_empty());
                if dirty { format!("{head} + uncommitted changes") } else { head }
            }
            None => "unknown".into(),
        };
        Machine {
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            rustc: command_line("rustc", &["--version"], root).unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            commit,
            load_before: load_average(),
        }
    }
}

pub struct ColdRow {
    pub name: String,
    /// An explanatory variant, not a deployed configuration: shown, never held to a target.
    pub diagnostic: bool,
    pub samples: Vec<ColdStart>,
}

pub struct SizeRow {
    pub name: &'static str,
    pub arm64: Option<Arm64>,
    pub host_bytes: Option<u64>,
    /// A function deployed from this repo (the size target applies), as opposed to the echo floor.
    pub is_function: bool,
}

pub struct Results {
    pub machine: Machine,
    pub load_after: String,
    pub comparisons: Vec<Comparison>,
    pub cold: Vec<ColdRow>,
    /// How the cold starts were scheduled (`priority::Realtime::describe`).
    pub cold_scheduling: String,
    pub sustained: Vec<(&'static str, Sustained)>,
    pub sizes: Vec<SizeRow>,
    pub billing: Vec<crate::billing::BillingRow>,
    pub collection: Vec<crate::collection::CollectionRow>,
    /// How the run was set up, one line each, for the notes.
    pub notes: Vec<String>,
}

pub struct Target {
    pub what: String,
    pub measured: String,
    pub limit: String,
    pub pass: bool,
    pub margin: String,
}

fn at_most(what: String, value: f64, limit: f64, measured: String, limit_text: String) -> Target {
    let pass = value <= limit;
    let pct = (value - limit).abs() / limit * 100.0;
    let margin = if pass { format!("{pct:.0}% under the limit") } else { format!("{pct:.0}% over the limit") };
    Target { what, measured, limit: limit_text, pass, margin }
}

fn at_least(what: String, value: f64, limit: f64, measured: String, limit_text: String) -> Target {
    let pass = value >= limit;
    let pct = (value - limit).abs() / limit * 100.0;
    let margin = if pass { format!("{pct:.0}% above the floor") } else { format!("{pct:.0}% below the floor") };
    Target { what, measured, limit: limit_text, pass, margin }
}

impl Results {
    fn comparison(&self, scenario: Scenario, concurrency: usize) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.scenario == scenario && c.concurrency == concurrency)
    }

    fn cold_poll_p50(&self, name: &str) -> Option<std::time::Duration> {
        let row = self.cold.iter().find(|r| r.name == name)?;
        Some(Samples::new(row.samples.iter().map(|s| s.to_first_poll).collect()).p50())
    }

    fn cold_answer_p50(&self, name: &str) -> Option<std::time::Duration> {
        let row = self.cold.iter().find(|r| r.name == name)?;
        Some(Samples::new(row.samples.iter().map(|s| s.to_first_answer).collect()).p50())
    }

    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for c in [1, 32] {
            if let Some(cmp) = self.comparison(Scenario::PurchaseMinimal, c) {
                let r = ratio(cmp.handler.p50(), cmp.bare.p50());
                targets.push(at_most(
                    format!("warm purchase p50 (`return=minimal`, c={c}) vs bare TransactWriteItems"),
                    r,
                    1.15,
                    format!("{r:.2}× ({} vs {})", fmt_duration(cmp.handler.p50()), fmt_duration(cmp.bare.p50())),
                    "≤ 1.15×".into(),
                ));
            }
        }
        if let Some(cmp) = self.comparison(Scenario::PurchaseMinimal, 32) {
            let r = cmp.handler_rps / cmp.bare_rps;
            targets.push(at_least(
                "purchase throughput at c=32 (`return=minimal`) vs bare TransactWriteItems".into(),
                r,
                0.9,
                format!("{r:.2}× ({:.0} vs {:.0} req/s)", cmp.handler_rps, cmp.bare_rps),
                "≥ 0.90×".into(),
            ));
        }
        for scenario in [Scenario::Consumption, Scenario::ConsumptionRulesFar, Scenario::ConsumptionTopup] {
            for c in [1, 32] {
                if let Some(cmp) = self.comparison(scenario, c) {
                    targets.push(consumption_target(cmp));
                }
            }
        }
        if let Some(cmp) = self.comparison(Scenario::PricingWarm, 1) {
            let r = ratio(cmp.handler.p50(), cmp.bare.p50());
            // "Well under one GetItem": at most half of one, i.e. clearly no round trip.
            targets.push(at_most(
                "get-pricing warm p50 (c=1) vs one bare GetItem".into(),
                r,
                0.5,
                format!("{r:.3}× ({} vs {})", fmt_duration(cmp.handler.p50()), fmt_duration(cmp.bare.p50())),
                "≤ 0.5× (well under)".into(),
            ));
        }
        if let Some(echo) = self.cold_poll_p50("echo-lambda") {
            for row in self.cold.iter().filter(|r| r.name != "echo-lambda" && !r.diagnostic) {
                if let Some(p50) = self.cold_poll_p50(&row.name) {
                    let r = ratio(p50, echo);
                    targets.push(at_most(
                        format!("cold start to first poll, {} vs echo (p50)", row.name),
                        r,
                        1.5,
                        format!("{r:.2}× ({} vs {})", fmt_duration(p50), fmt_duration(echo)),
                        "≤ 1.5×".into(),
                    ));
                }
            }
        }
        // Exec to first answer: the echo's, plus the DynamoDB work that request needs as a bare SDK call takes it
        // warm (get-pricing: one GetItem; purchase: TransactWriteItems + GetItem), plus 1 ms.
        if let Some(echo) = self.cold_answer_p50("echo-lambda") {
            for row in self.cold.iter().filter(|r| r.name != "echo-lambda" && !r.diagnostic) {
                let bare = match row.name.as_str() {
                    "get-pricing" => self.comparison(Scenario::PricingWarm, 1),
                    "purchase-credits" => self.comparison(Scenario::PurchaseDefault, 1),
                    _ => None,
                };
                if let (Some(p50), Some(bare)) = (self.cold_answer_p50(&row.name), bare) {
                    let limit = echo + bare.bare.p50() + std::time::Duration::from_millis(1);
                    targets.push(at_most(
                        format!("cold start to first answer, {} (p50)", row.name),
                        p50.as_secs_f64(),
                        limit.as_secs_f64(),
                        fmt_duration(p50),
                        format!(
                            "≤ echo {} + bare {} {} + 1 ms = {}",
                            fmt_duration(echo),
                            bare.scenario.bare_name(),
                            fmt_duration(bare.bare.p50()),
                            fmt_duration(limit)
                        ),
                    ));
                }
            }
        }
        for row in self.sizes.iter().filter(|r| r.is_function) {
            match &row.arm64 {
                Some(a) if a.is_aarch64_elf => {
                    // Others edit the tree while the bench runs: a build a few minutes older than the newest
                    // source is still measured, and said to be.
                    let stale = if a.fresh { "" } else { ", built before the latest source edit" };
                    targets.push(at_most(
                        format!("arm64 release binary, {}", row.name),
                        a.bytes as f64,
                        SIZE_LIMIT as f64,
                        format!("{} ({} bytes{stale})", fmt_mib(a.bytes), a.bytes),
                        "≤ 8 MiB".into(),
                    ))
                }
                _ => targets.push(Target {
                    what: format!("arm64 release binary, {}", row.name),
                    measured: "no arm64 build".into(),
                    limit: "≤ 8 MiB".into(),
                    pass: false,
                    margin: "not measured".into(),
                }),
            }
        }
        if let Some((_, s)) = self.sustained.iter().find(|(name, _)| *name == "purchase-credits") {
            targets.push(at_most(
                format!("peak RSS (VmHWM) of purchase-credits after {} invocations", s.invocations),
                s.at_end.hwm as f64,
                RSS_LIMIT as f64,
                fmt_mib(s.at_end.hwm),
                "≤ 40 MiB".into(),
            ));
        }
        if let Some(row) = self.billing.iter().max_by_key(|r| r.concurrency) {
            targets.push(at_most(
                format!("billing, 1,000,000 purchases in one invocation (projected from c={})", row.concurrency),
                row.million().as_secs_f64(),
                600.0,
                format!(
                    "{:.0} s ({:.0} purchases/s over {})",
                    row.million().as_secs_f64(),
                    row.billing_per_second(),
                    row.purchases
                ),
                "≤ 10 min".into(),
            ));
        }
        targets
    }

    /// The cold-start section (also printed alone by `--cold-start`).
    pub fn cold_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n## Cold start: release x86_64 bootstrap under a mock Lambda Runtime API\n");
        let _ = writeln!(
            out,
            "| binary | runs | exec → first poll p50 | p90 | exec → first answer p50 | p90 | first poll vs echo (p50) | VmHWM after first answer (p50) |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
        let echo = self.cold_poll_p50("echo-lambda");
        for row in &self.cold {
            let poll = Samples::new(row.samples.iter().map(|s| s.to_first_poll).collect());
            let answer = Samples::new(row.samples.iter().map(|s| s.to_first_answer).collect());
            let mut hwm: Vec<u64> = row.samples.iter().map(|s| s.memory.hwm).collect();
            hwm.sort_unstable();
            let vs_echo = echo.map_or("–".into(), |e| format!("{:.2}×", ratio(poll.p50(), e)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.name,
                poll.len(),
                fmt_duration(poll.p50()),
                fmt_duration(poll.p90()),
                fmt_duration(answer.p50()),
                fmt_duration(answer.p90()),
                vs_echo,
                hwm.get(hwm.len().saturating_sub(1) / 2).map_or("–".into(), |b| fmt_mib(*b)),
            );
        }
        if !self.cold_scheduling.is_empty() {
            let _ = writeln!(out, "\n{}", self.cold_scheduling);
        }
        out
    }

    /// The targets section: its heading, the table and its count.
    pub fn targets_markdown(&self) -> String {
        format!("\n## Targets\n\n{}", targets_table(&self.targets()))
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark results\n");
        let _ = writeln!(
            out,
            "Written by `make bench` (scripts/bench.sh → `cargo run --release -p bench`); figures, not a test.\n"
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", m.date);
        let _ = writeln!(out, "| machine | {} × {} (nproc {}), Linux {} |", m.nproc, m.cpu, m.nproc, m.kernel);
        let _ = writeln!(out, "| load average (1/5/15 min) | {} before, {} after |", m.load_before, self.load_after);
        let _ = writeln!(out, "| toolchain | {} · release profile: lto, codegen-units=1, strip |", m.rustc);
        let _ = writeln!(out, "| commit | {} |", m.commit);

        let _ = writeln!(out, "\n## Warm requests: handler vs bare SDK call (in process, embedded dynoxide)\n");
        out.push_str(&comparison_table(&self.comparisons));

        out.push_str(&self.cold_markdown());

        let _ = writeln!(out, "\n## Memory: one warm instance, invocations fed one at a time\n");
        let _ = writeln!(
            out,
            "| binary | invocations | VmHWM after the first | VmHWM after all | VmRSS at the end | invocations/s |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
        for (name, s) in &self.sustained {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} |",
                name,
                s.invocations,
                fmt_mib(s.after_first.hwm),
                fmt_mib(s.at_end.hwm),
                fmt_mib(s.at_end.rss),
                s.invocations as f64 / s.wall.as_secs_f64(),
            );
        }

        out.push_str(&billing_markdown(&self.billing));
        out.push_str(&collection_markdown(&self.collection));

        let _ = writeln!(out, "\n## Binary sizes\n");
        let _ =
            writeln!(out, "| binary | arm64 bootstrap (deployed) | arm64 size | x86_64 release size (benchmarked) |");
        let _ = writeln!(out, "|---|---|--:|--:|");
        for row in &self.sizes {
            let (path, size) = match &row.arm64 {
                Some(a) => {
                    let mut flags = Vec::new();
                    if !a.fresh {
                        flags.push("built before the latest source edit");
                    }
                    if !a.is_aarch64_elf {
                        flags.push("not an aarch64 ELF");
                    }
                    let note = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
                    (format!("`{}`{note}", a.path.display()), format!("{} ({} B)", fmt_mib(a.bytes), a.bytes))
                }
                None => ("not built".into(), "–".into()),
            };
            let host = row.host_bytes.map_or("–".into(), fmt_mib);
            let _ = writeln!(out, "| {} | {} | {} | {} |", row.name, path, size, host);
        }

        out.push_str(&self.targets_markdown());

        let _ = writeln!(out, "\n## How it was measured\n");
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

/// The warm comparisons: one row per scenario and concurrency.
pub fn comparison_table(comparisons: &[Comparison]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| handler | bare call | c | requests/side | handler p50 | handler p95 | handler p99 | bare p50 | bare p95 | bare p99 | p50 ratio | p99 ratio | handler req/s | bare req/s | req/s ratio |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for c in comparisons {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.0} | {:.0} | {:.2}× |",
            c.scenario.handler_name(),
            c.scenario.bare_name(),
            c.concurrency,
            c.handler.len(),
            fmt_duration(c.handler.p50()),
            fmt_duration(c.handler.percentile(95.0)),
            fmt_duration(c.handler.p99()),
            fmt_duration(c.bare.p50()),
            fmt_duration(c.bare.percentile(95.0)),
            fmt_duration(c.bare.p99()),
            ratio(c.handler.p50(), c.bare.p50()),
            ratio(c.handler.p99(), c.bare.p99()),
            c.handler_rps,
            c.bare_rps,
            c.handler_rps / c.bare_rps,
        );
    }
    out
}

/// Issue 13: a warm consumption is one DynamoDB call, so it costs about what that call costs; issue 25: with
/// rules too, far from them or topping up (the purchase rides in the same call), against the call it sends.
pub fn consumption_target(cmp: &Comparison) -> Target {
    let r = ratio(cmp.handler.p50(), cmp.bare.p50());
    let what = match cmp.scenario {
        Scenario::ConsumptionRulesFar => "warm consumption with rules far off",
        Scenario::ConsumptionTopup => "warm consumption with an auto top-up",
        _ => "warm consumption",
    };
    at_most(
        format!("{what} p50 (c={}) vs the bare TransactWriteItems it sends", cmp.concurrency),
        r,
        1.15,
        format!("{r:.2}× ({} vs {})", fmt_duration(cmp.handler.p50()), fmt_duration(cmp.bare.p50())),
        "≤ 1.15×".into(),
    )
}

/// The targets with PASS/MISS and how many were met.
pub fn targets_table(targets: &[Target]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| target | measured | limit | result |");
    let _ = writeln!(out, "|---|---|---|---|");
    for t in targets {
        let verdict = if t.pass { "PASS" } else { "MISS" };
        let _ = writeln!(out, "| {} | {} | {} | **{verdict}** ({}) |", t.what, t.measured, t.limit, t.margin);
    }
    let passed = targets.iter().filter(|t| t.pass).count();
    let _ = writeln!(out, "\n{passed} of {} targets met.", targets.len());
    out
}

/// The billing section: one row per concurrency.
pub fn billing_markdown(rows: &[crate::billing::BillingRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Billing run: DynamoDB-like latency injected below the SDK\n");
    let _ = writeln!(
        out,
        "| concurrency | purchases | accounts / agencies | run time | of which making statements payable | purchases/s (billing) | transactions | queries | statements made payable | 1,000,000 projected |"
    );
    let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} | {} | {:.0} | {} | {} | {} | {:.0} s ({:.1} min) |",
            row.concurrency,
            row.purchases,
            row.accounts,
            row.agencies,
            fmt_duration(row.elapsed),
            fmt_duration(row.finish),
            row.billing_per_second(),
            row.transactions,
            row.queries,
            row.statements_made_payable,
            row.million().as_secs_f64(),
            row.million().as_secs_f64() / 60.0,
        );
    }
    let _ = writeln!(
        out,
        "\nInjected latency (`testkit::faults::Latency::dynamodb`): 8 ms per Query page, 25 ms + 0.3 ms per item per \
         TransactWriteItems (~55 ms for a 98-purchase step), 5 ms per other call; the engine's own time comes on top. \
         A purchase counts once billed to its client and to its agency. Billing time includes reading the unbilled \
         indexes; making the statements payable (`finish_cycle`, one UpdateItem per statement, as many in flight as steps) \
         is shown apart and added once to the projection: it grows with the statements, not the purchases."
    );
    out
}

/// The collection section: one row per concurrency.
pub fn collection_markdown(rows: &[crate::collection::CollectionRow]) -> String {
    use crate::collection::{CREATE_LATENCY, ENDPOINT_LIMIT_PER_SECOND, LIVE_LIMIT_PER_SECOND, READ_LATENCY};
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ =
        writeln!(out, "\n## Collection run: DynamoDB-like latency, a Stripe-like server answering in 100 / 300 ms\n");
    let _ = writeln!(
        out,
        "| COLLECT_CONCURRENCY | statements | run time | paid / declined | PaymentIntents/s mean | busiest second | customer reads/s mean | busiest second | all calls, busiest second | {ENDPOINT_LIMIT_PER_SECOND}/s per endpoint (and test mode) fits | {LIVE_LIMIT_PER_SECOND}/s global (live) fits |"
    );
    let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} s | {} / {} | {:.1} | {} | {:.1} | {} | {} | c ≤ {} | c ≤ {} |",
            row.concurrency,
            row.statements,
            row.elapsed.as_secs_f64(),
            row.succeeded,
            row.failed,
            row.creates.mean_per_second,
            row.creates.peak_per_second,
            row.reads.mean_per_second,
            row.reads.peak_per_second,
            row.all.peak_per_second,
            row.concurrency_for(ENDPOINT_LIMIT_PER_SECOND, false),
            row.concurrency_for(LIVE_LIMIT_PER_SECOND, true),
        );
    }
    let _ = writeln!(
        out,
        "\nThe real `shared::collection::collect` over payable client statements (copies of one statement the real \
         billing run made, each on its own account with a Stripe customer; one in 50 declines), DynamoDB latency as \
         in the billing run, and a Stripe-like server inside the bench answering `GET /v1/customers/{{id}}` after \
         {} ms and `POST /v1/payment_intents` after {} ms (`succeeded`, or 402 `card_declined`). Checked after each \
         run: one PaymentIntent per statement at the fake, no idempotency key sent twice, every statement `paid` \
         or `payment_failed` as its card decides. Stripe's limits (docs.stripe.com/rate-limits): 100 operations/s \
         in live mode, 25 in test mode, and 25 requests/s per endpoint by default in either mode. \"Fits\" scales \
         the busiest second (per endpoint: the busier of the two; global: both) to the limit: the collector has no client-side rate limiter, so the limit is kept only by \
         `COLLECT_CONCURRENCY` (1-32) and Stripe's own latency.",
        READ_LATENCY.as_millis(),
        CREATE_LATENCY.as_millis()
    );
    out
}
