//! Settled statements for the dashboard: for each seeded account one client statement of the cycle that ended
//! at midnight UTC two days ago, paid by card (`paidAt`, collection `succeeded`), and for the declining account
//! one that its card declined (`payment_failed`, collection `failed` with `card_declined` and a retry
//! scheduled), which holds it.
//!
//! Written the way real ones are: a purchase through the purchase transaction, the billing run of that cycle,
//! then the collection attempt's claim, the payment or the failure mark, and the attempt's end, each through the
//! storage function collection itself uses. Only the Stripe call is left out (no charge is made).
//!
//! Idempotent within a UTC day: an account that already has a statement of that cycle gets none (loading twice
//! adds nothing).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::billing::{BillingRun, run_billing};
use shared::domain::billing::{CycleEnd, StatementKind, StatementRef};
use shared::domain::{self, CreditType, PurchaseRecord, Quantities, time};
use shared::storage::collection::{AttemptEnd, PayableStatement};
use shared::storage::statements::{Payment, UnpaidMark};
use shared::storage::{RecordOutcome, Store};

/// What the seeded statements are for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettledReport {
    pub paid: Vec<String>,
    pub declined: Vec<String>,
}

const DAY: Duration = Duration::from_secs(86_400);

/// Seeds the statements for `accounts` (`declining` among them gets the declined one) as of `now`.
pub async fn seed_settled_statements(
    store: &Store,
    accounts: &[String],
    declining: &str,
    now: SystemTime,
) -> Result<SettledReport, String> {
    // The cycle that ended at midnight UTC two days ago: the same all day, so loading twice adds nothing, and
    // one no other local run bills (they bill cycles ending now), so the test stack can seed it after its other
    // stages have billed theirs.
    let since_epoch = now.duration_since(UNIX_EPOCH).map_err(|_| "a clock before 1970")?;
    let midnight = UNIX_EPOCH + Duration::from_secs((since_epoch.as_secs() / DAY.as_secs() - 2) * DAY.as_secs());
    let cycle_end = CycleEnd::at(midnight);
    let mut fresh = Vec::new();
    for account_id in accounts {
        let statement_id = StatementKind::Client.statement_id(account_id, &cycle_end);
        if store.statement(&statement_id).await.map_err(err("statement"))?.is_none() {
            fresh.push(account_id.clone());
        }
    }
    if fresh.is_empty() {
        return Ok(SettledReport::default());
    }
    // One purchase each, a day before that cycle's end, billed by its run: only purchases made before it are
    // billed, so none made since (a developer's, a test's) is touched.
    for account_id in &fresh {
        purchase(store, account_id, midnight - DAY).await?;
    }
    run_billing(store, &BillingRun::new(cycle_end.clone())).await.map_err(|e| format!("billing run: {e}"))?;

    let now_text = time::timestamp(now);
    let mut report = SettledReport::default();
    for account_id in &fresh {
        let statement_id = StatementKind::Client.statement_id(account_id, &cycle_end);
        let statement = store
            .statement(&statement_id)
            .await
            .map_err(err("statement"))?
            .ok_or_else(|| format!("the seeded cycle left no statement for {account_id}"))?;
        let reference = StatementRef::parse(&statement_id).ok_or("a statement id")?;
        let customer = store.stripe_customer(&reference).await.map_err(err("customer"))?;
        let payable = PayableStatement {
            statement_id: statement_id.clone(),
            reference: reference.clone(),
            status: statement.status.clone(),
            amount_due: statement.amount_due,
            currency: statement.currency.clone(),
            attempt: None,
        };
        let customer = customer.as_deref().unwrap_or("cus_seeded");
        if !store.claim_new_attempt(&payable, 1, customer, &now_text).await.map_err(err("claim"))? {
            return Err(format!("{statement_id}: its collection attempt could not be claimed"));
        }
        if account_id == declining {
            let failed = UnpaidMark::Failed { attempt: 1, reason: "card_declined" };
            store.mark_unpaid(&statement_id, failed).await.map_err(err("mark"))?;
            let next_at = time::timestamp(now + 3 * DAY);
            let end = AttemptEnd::Failed { reason: "card_declined", next_at: Some(&next_at), failed_at: &now_text };
            store.finish_attempt(&reference, 1, end).await.map_err(err("attempt"))?;
            report.declined.push(statement_id);
        } else {
            let payment = Payment {
                statement_id: statement_id.clone(),
                amount: statement.amount_due,
                payment_reference: format!("seed-{statement_id}"),
                paid_at: now_text.clone(),
            };
            store.record_payment(&payment).await.map_err(err("payment"))?;
            store.finish_attempt(&reference, 1, AttemptEnd::Succeeded).await.map_err(err("attempt"))?;
            report.paid.push(statement_id);
        }
    }
    Ok(report)
}

/// One small purchase at the account's agency's prices, through the purchase transaction.
pub(crate) async fn purchase(store: &Store, account_id: &str, at: SystemTime) -> Result<(), String> {
    let account = store.account(account_id).await.map_err(|e| e.to_string())?.ok_or("a seeded account")?;
    let (default, agency) = store.pricing(&account.agency_id).await.map_err(|e| e.to_string())?;
    let pricing = domain::resolve_pricing(&account.agency_id, &default, agency.as_ref()).map_err(|e| e.to_string())?;
    // The smallest line of the first type that can be bought.
    let (credit_type, quantity) = CreditType::ALL
        .into_iter()
        .find_map(|t| domain::minimum_quantity(pricing.rate(t)).map(|q| (t, q.max(1))))
        .ok_or("no type can be bought")?;
    let quote =
        domain::quote(&pricing, &Quantities::from_pairs([(credit_type, quantity)])).map_err(|e| format!("{e:?}"))?;
    let total = quote.total;
    let record =
        PurchaseRecord::unbilled(uuid::Uuid::now_v7().to_string(), account_id, &account.agency_id, at, quote, None);
    let mut line_raised = false;
    loop {
        match store.record_purchase(&record, &pricing, None).await.map_err(|e| e.to_string())? {
            RecordOutcome::Recorded => return Ok(()),
            // A line the stack spent before seeding (the contract test buys until its account's line is used up):
            // raised by what this purchase lacks, once, so the seeded statement can be made.
            RecordOutcome::CreditLimitExceeded { available } if !line_raised => {
                let limit = store
                    .account(account_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|a| a.credit_line)
                    .ok_or_else(|| format!("{account_id}: no line to raise"))?
                    .limit;
                store.set_credit_limit(account_id, limit + (total - available)).await.map_err(|e| e.to_string())?;
                line_raised = true;
            }
            other => return Err(format!("{account_id}: the seeded purchase of {total} was refused: {other:?}")),
        }
    }
}

fn err(what: &'static str) -> impl Fn(shared::storage::StoreError) -> String {
    move |e| format!("{what}: {e}")
}
