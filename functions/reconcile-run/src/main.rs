//! `reconcile-run` Lambda (scheduled daily, not HTTP): wiring only; the check lives in `reconcile::scheduled_check`.
//!
//! A check that ran is a success whatever it found: drift and overdue purchases are metrics with alarms
//! (`DriftingAccounts`, `OverdueUnbilledPurchases`, `StatementsStillBuilding`) and one log line per drifting account. A check that could
//! not run is an error result, which the function's Errors alarm reports.

use std::time::SystemTime;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = shared::runtime::start(shared::settings::ReconcileSettings::from_vars)?;
    let _metrics = shared::metrics::init(&settings.common.metrics_namespace);
    let store = shared::runtime::store_in_background(&settings.common);
    let segments = settings.function.segments;
    run(service_fn(|_event: LambdaEvent<Value>| {
        let store = &store;
        async move {
            let report = reconcile::scheduled_check(store.get().await, segments, SystemTime::now()).await?;
            Ok::<_, Error>(json!({
                "accountsChecked": report.figures.accounts_checked,
                "purchasesRead": report.figures.purchases_read,
                "driftingAccounts": report.figures.drifting_accounts,
                "unsettled": report.figures.unsettled,
                "overdueUnbilledPurchases": report.figures.overdue_unbilled_purchases,
                "statementsStillBuilding": report.figures.statements_still_building,
                "overdueCycle": report.overdue_cycle,
            }))
        }
    }))
    .await
}
