//! CloudWatch metrics in Embedded Metric Format (EMF), written with awslabs' `metrique` and its EMF formatter.
//!
//! Each unit of work writes one EMF line to stdout when it ends, synchronously (`write_directly_to`: no
//! background thread that a frozen Lambda instance could strand), and CloudWatch Logs turns the line into
//! metrics in the namespace `METRICS_NAMESPACE` (the template sets `OverageCredits/<stack>`).
//!
//! - a purchase: [`purchase_credits`] (in [`purchase_credits_or_rules`], the function's router) wraps the handler
//!   and records its typed outcome ([`crate::api::Purchased`]: `created`, `replayed` or the problem `code`), the
//!   credits per type and the amount at price of the purchase record itself (never re-read from the response JSON,
//!   where a renamed field would silently record zero), the DynamoDB calls it made and its latency;
//! - a billing run: [`run_billing_from_event`] wraps the run and records its [`RunSummary`] or its failure;
//! - a reconcile check: [`record_reconcile`].
//!
//! **Dimensions are [`DIMENSIONS`] only** (today just `Outcome`, a closed set of codes): never an account,
//! agency, purchase or run id, which would make one CloudWatch metric per client. Ids go in the log line
//! written next to the metric (`tracing`), which also carries the request id and X-Ray trace id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use lambda_http::{Body, Request, Response};
use metrique::emf::Emf;
use metrique::unit::Millisecond;
use metrique::unit_of_work::metrics;
use metrique::writer::sink::{AttachHandle, global_entry_sink};
use metrique::writer::{AttachGlobalEntrySinkExt, FormatExt};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;

use crate::api::{App, Purchased};
use crate::billing::{BillingError, RunSummary};
use crate::domain::CreditType;
use crate::storage::Store;

/// The namespace when `METRICS_NAMESPACE` is unset (local runs); [`crate::settings::Common`] reads it.
pub const DEFAULT_NAMESPACE: &str = crate::settings::DEFAULT_METRICS_NAMESPACE;
/// Every dimension any metric of ours may carry. A test parses the EMF lines and refuses any other.
pub const DIMENSIONS: &[&str] = &["Outcome"];

global_entry_sink! {
    /// Where every metric of ours goes: stdout in a function (see [`init`]), a buffer in tests, nowhere if
    /// nothing is attached (benchmarks, other tests).
    OpsMetrics
}

/// The EMF format: no default dimensions; each entry names its own dimension sets. Validations (unique
/// names, dimensions present) are on in debug builds and tests, off in release.
pub fn emf(namespace: String) -> Emf {
    Emf::builder(namespace, vec![vec![]]).build()
}

/// Attaches stdout as the metrics destination, once per process (cold start), writing into `namespace`
/// (the function's `METRICS_NAMESPACE`, [`crate::settings::Common::metrics_namespace`]); keep the handle alive.
pub fn init(namespace: &str) -> AttachHandle {
    attach(namespace, std::io::stdout())
}

/// Attaches any writer as the destination (a test's buffer); each entry is one line, written at once.
pub fn attach(namespace: &str, output: impl std::io::Write + Send + Sync + 'static) -> AttachHandle {
    OpsMetrics::write_directly_to(emf(namespace.to_owned()).output_to(output))
}

// ---------------------------------------------------------------------------------------------------------
// DynamoDB calls per unit of work

/// Operations and attempts (retries included) of one unit of work.
#[derive(Debug, Default)]
pub struct DynamoCalls {
    operations: AtomicU64,
    attempts: AtomicU64,
}

impl DynamoCalls {
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static CALLS: Arc<DynamoCalls>;
}

/// Runs `work` with a fresh DynamoDB call counter and returns it with the result. Calls made in tasks that
/// `work` spawns are not counted (the request paths spawn none).
pub async fn counting_dynamo_calls<T>(work: impl Future<Output = T>) -> (T, Arc<DynamoCalls>) {
    let calls = Arc::new(DynamoCalls::default());
    let output = CALLS.scope(calls.clone(), work).await;
    (output, calls)
}

/// SDK interceptor: counts each operation and each attempt into the current unit of work's counter, if any.
/// [`crate::runtime::dynamodb_client`] installs it; outside [`counting_dynamo_calls`] it does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountDynamoCalls;

impl Intercept for CountDynamoCalls {
    fn name(&self) -> &'static str {
        "CountDynamoCalls"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let _ = CALLS.try_with(|calls| calls.operations.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let _ = CALLS.try_with(|calls| calls.attempts.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Purchases

/// One `POST /credit-purchases`, whatever its outcome.
#[metrics(rename_all = "PascalCase", emf::dimension_sets = [[], ["Outcome"]])]
struct PurchaseMetrics {
    /// `created`, `replayed`, or the problem `code` of a refusal or failure (a closed set).
    outcome: String,
    /// Requests (1 per entry): summed per hour, per outcome, this is purchases and refusals per hour.
    requests: u64,
    /// 1 when a new purchase was written (`created`), else 0.
    purchases: u64,
    credits_audience: u64,
    credits_enrichment: u64,
    credits_pixel: u64,
    credits_custom_model: u64,
    /// What a new purchase charges the client (its total at price, in the account's currency).
    amount_at_price: f64,
    dynamo_db_calls: u64,
    dynamo_db_attempts: u64,
    #[metrics(unit = Millisecond)]
    latency: Duration,
    /// 1 when the answer is a 5xx (503 or 500), else 0.
    server_errors: u64,
}

/// The `purchase-credits` function: the purchase with its metrics ([`purchase_credits`]), or a change of the
/// client's rules (`PUT .../alerts`, `PUT .../topups`: `api::rules`, whose reads `get-balances` serves).
pub async fn purchase_credits_or_rules(app: &App, request: Request) -> Response<Body> {
    use crate::api::rules::{self, RulesRoute};
    match RulesRoute::of(&request) {
        None => purchase_credits(app, request).await,
        Some(route) if route.writes() => rules::serve(app, route, request).await,
        Some(route) => rules::misrouted(app, route).await,
    }
}

/// `POST /accounts/{accountId}/credit-purchases` with its metrics: the handler, unchanged, then one EMF line
/// and one log line (with the account and purchase ids) describing what it did.
pub async fn purchase_credits(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let ((response, purchased), calls) =
        counting_dynamo_calls(crate::api::purchase_credits_with_outcome(app, request)).await;
    record_purchase(&PurchaseOutcome::of(&purchased), started.elapsed(), &calls);
    response
}

/// What a purchase did, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseOutcome {
    pub outcome: String,
    pub status: u16,
    pub credits: Vec<(CreditType, u64)>,
    pub amount_at_price: Decimal,
    pub account_id: Option<String>,
    pub purchase_id: Option<String>,
}

impl PurchaseOutcome {
    /// From the handler's typed outcome: a new purchase is `created` with its record's lines and total, a retry
    /// under a used key `replayed` (nothing written), anything else the problem's code.
    pub fn of(purchased: &Purchased) -> PurchaseOutcome {
        match purchased {
            Purchased::Created(record) => PurchaseOutcome {
                outcome: "created".to_owned(),
                status: 201,
                credits: record.lines.iter().map(|line| (line.credit_type, line.quantity)).collect(),
                amount_at_price: record.total,
                account_id: Some(record.account_id.clone()),
                purchase_id: Some(record.purchase_id.clone()),
            },
            Purchased::Replayed { account_id, purchase_id } => PurchaseOutcome {
                outcome: "replayed".to_owned(),
                status: 201,
                credits: Vec::new(),
                amount_at_price: Decimal::ZERO,
                account_id: Some(account_id.clone()),
                purchase_id: Some(purchase_id.clone()),
            },
            Purchased::Refused { code, status } => PurchaseOutcome {
                outcome: bounded_outcome(*status, code),
                status: *status,
                credits: Vec::new(),
                amount_at_price: Decimal::ZERO,
                account_id: None,
                purchase_id: None,
            },
        }
    }
}

/// The `Outcome` dimension of a refusal: its problem code. Codes are a closed set (`api::error`); anything else
/// would be a bug, and stays one value per status rather than one metric per odd string.
pub fn bounded_outcome(status: u16, code: &str) -> String {
    if !code.is_empty() && code.len() <= 40 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        code.to_owned()
    } else {
        format!("http_{status}")
    }
}

fn record_purchase(outcome: &PurchaseOutcome, latency: Duration, calls: &DynamoCalls) {
    let mut metrics = PurchaseMetrics {
        outcome: outcome.outcome.clone(),
        requests: 1,
        purchases: u64::from(outcome.outcome == "created"),
        credits_audience: 0,
        credits_enrichment: 0,
        credits_pixel: 0,
        credits_custom_model: 0,
        amount_at_price: outcome.amount_at_price.to_f64().unwrap_or_default(),
        dynamo_db_calls: calls.operations(),
        dynamo_db_attempts: calls.attempts(),
        latency,
        server_errors: u64::from(outcome.status >= 500),
    };
    for (credit_type, quantity) in &outcome.credits {
        // Exhaustive: a new credit type does not compile until it has its metric.
        let field = match credit_type {
            CreditType::Audience => &mut metrics.credits_audience,
            CreditType::Enrichment => &mut metrics.credits_enrichment,
            CreditType::Pixel => &mut metrics.credits_pixel,
            CreditType::CustomModel => &mut metrics.credits_custom_model,
        };
        *field += quantity;
    }
    tracing::info!(
        metric = "purchase",
        outcome = %outcome.outcome,
        status = outcome.status,
        account_id = outcome.account_id.as_deref().unwrap_or(""),
        purchase_id = outcome.purchase_id.as_deref().unwrap_or(""),
        amount_at_price = %outcome.amount_at_price,
        dynamodb_calls = calls.operations(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "purchase finished"
    );
    drop(metrics.append_on_drop(OpsMetrics::sink_or_discard()));
}

// ---------------------------------------------------------------------------------------------------------
// Billing runs

/// One billing run, finished or not.
#[metrics(rename_all = "PascalCase", emf::dimension_sets = [[]])]
struct BillingRunMetrics {
    billing_run_succeeded: u64,
    billing_run_failed: u64,
    purchases_billed_to_client: u64,
    purchases_billed_to_agency: u64,
    client_statements_written: u64,
    agency_statements_written: u64,
    total_at_price: f64,
    total_at_cost: f64,
    items_read: u64,
    items_scanned: u64,
    transactions: u64,
    dynamo_db_calls: u64,
    #[metrics(unit = Millisecond)]
    duration: Duration,
}

/// The billing run from its event ([`crate::billing::run_from_event`], unchanged), then one EMF line
/// describing it: its summary, or a failure (the run logs the error itself).
pub async fn run_billing_from_event(
    store: &Store,
    settings: &crate::billing::BillingSettings,
    event: &Value,
    deadline: Option<SystemTime>,
    now: SystemTime,
) -> Result<RunSummary, BillingError> {
    let started = Instant::now();
    // Boxed: unboxed, the run's future nests deep enough to overflow rustc's layout query limit in the function's `main`.
    let (result, calls) =
        counting_dynamo_calls(Box::pin(crate::billing::run_from_event(store, settings, event, deadline, now))).await;
    record_billing_run(&result, started.elapsed(), &calls);
    result
}

fn record_billing_run(result: &Result<RunSummary, BillingError>, elapsed: Duration, calls: &DynamoCalls) {
    let dec = |d: Decimal| d.to_f64().unwrap_or_default();
    let metrics = match result {
        Ok(s) => BillingRunMetrics {
            billing_run_succeeded: 1,
            billing_run_failed: 0,
            purchases_billed_to_client: s.purchases_billed_to_client,
            purchases_billed_to_agency: s.purchases_billed_to_agency,
            client_statements_written: s.client_statements_written,
            agency_statements_written: s.agency_statements_written,
            total_at_price: dec(s.total_at_price),
            total_at_cost: dec(s.total_at_cost),
            items_read: s.items_read,
            items_scanned: s.items_scanned,
            transactions: s.transactions,
            dynamo_db_calls: calls.operations(),
            duration: Duration::from_millis(s.duration_ms),
        },
        Err(e) => {
            tracing::error!(metric = "billing_run", error = %e, "billing run failed");
            BillingRunMetrics {
                billing_run_succeeded: 0,
                billing_run_failed: 1,
                purchases_billed_to_client: 0,
                purchases_billed_to_agency: 0,
                client_statements_written: 0,
                agency_statements_written: 0,
                total_at_price: 0.0,
                total_at_cost: 0.0,
                items_read: 0,
                items_scanned: 0,
                transactions: 0,
                dynamo_db_calls: calls.operations(),
                duration: elapsed,
            }
        }
    };
    drop(metrics.append_on_drop(OpsMetrics::sink_or_discard()));
}

// ---------------------------------------------------------------------------------------------------------
// Reconcile

/// What one reconcile check found (`tools/reconcile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileFigures {
    pub accounts_checked: u64,
    pub purchases_read: u64,
    pub drifting_accounts: u64,
    /// Purchases of a past cycle still unbilled a day after its end (0 before that day): the billing run of
    /// the month did not finish.
    pub overdue_unbilled_purchases: u64,
    /// Accounts and agency lines that looked drifting and could not be read as of one moment on any re-check.
    pub unsettled: u64,
    /// Statements of that cycle still `building` a day after its end: its final run did not make them
    /// payable, so they cannot be paid and the lines they hold are never released.
    pub statements_still_building: u64,
    pub duration: Duration,
}

#[metrics(rename_all = "PascalCase", emf::dimension_sets = [[]])]
struct ReconcileMetrics {
    reconcile_runs: u64,
    accounts_checked: u64,
    purchases_read: u64,
    drifting_accounts: u64,
    overdue_unbilled_purchases: u64,
    unsettled_accounts: u64,
    statements_still_building: u64,
    #[metrics(unit = Millisecond)]
    duration: Duration,
}

/// One EMF line for a reconcile check that ran (a check that could not run is an error, not a metric).
pub fn record_reconcile(figures: &ReconcileFigures) {
    let metrics = ReconcileMetrics {
        reconcile_runs: 1,
        accounts_checked: figures.accounts_checked,
        purchases_read: figures.purchases_read,
        drifting_accounts: figures.drifting_accounts,
        overdue_unbilled_purchases: figures.overdue_unbilled_purchases,
        unsettled_accounts: figures.unsettled,
        statements_still_building: figures.statements_still_building,
        duration: figures.duration,
    };
    drop(metrics.append_on_drop(OpsMetrics::sink_or_discard()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PurchaseLine;

    fn line(credit_type: CreditType, quantity: u64, subtotal: i64) -> PurchaseLine {
        PurchaseLine {
            credit_type,
            quantity,
            unit_price: Decimal::ONE,
            unit_cost: Decimal::ONE,
            subtotal: Decimal::new(subtotal, 0),
            subtotal_at_cost: Decimal::new(subtotal, 0),
        }
    }

    #[test]
    fn a_created_purchase_is_recorded_from_its_record_not_from_response_fields() {
        // Every type, so a credit type whose figure silently stayed zero fails here; the response body plays no
        // part (a renamed view field cannot zero a metric).
        let record = crate::domain::billing::tests::purchase(
            "p",
            "acct-a",
            vec![
                line(CreditType::Audience, 1, 1),
                line(CreditType::Enrichment, 2, 2),
                line(CreditType::Pixel, 3, 3),
                line(CreditType::CustomModel, 4, 4),
            ],
        );
        let outcome = PurchaseOutcome::of(&Purchased::Created(Box::new(record)));
        assert_eq!(outcome.outcome, "created");
        assert_eq!(
            outcome.credits,
            vec![
                (CreditType::Audience, 1),
                (CreditType::Enrichment, 2),
                (CreditType::Pixel, 3),
                (CreditType::CustomModel, 4)
            ]
        );
        assert_eq!(outcome.amount_at_price, Decimal::new(1000, 2));
        let replayed =
            PurchaseOutcome::of(&Purchased::Replayed { account_id: "acct-a".into(), purchase_id: "p".into() });
        assert_eq!((replayed.outcome.as_str(), replayed.credits.len()), ("replayed", 0));
        assert_eq!(replayed.amount_at_price, Decimal::ZERO);
    }
}
