//! Something for the agency console's overview to show on a dev or test stack (with `SEED_SETTLED_STATEMENTS=1`):
//! one client owing about 90% of its line, through a purchase made now (today's bar in the cycle's chart) and its
//! limit set by the agency's own limit change (with its audit entry). The declined statement of
//! [`crate::seed_settled_statements`] gives the hold and the failed collection.
//!
//! Idempotent: a client already above 80% of its line is left as it is.

use std::time::SystemTime;

use rust_decimal::{Decimal, RoundingStrategy};
use shared::domain::overview::near_limit;
use shared::domain::time;
use shared::storage::{ClientLimitOutcome, LimitChangeBy, Store};

/// Leaves `account_id` owing more than 80% of its line; answers the share now in use, `None` if it already was.
pub async fn seed_near_limit(store: &Store, account_id: &str, now: SystemTime) -> Result<Option<Decimal>, String> {
    let read = || async {
        store.account(account_id).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("no account {account_id}"))
    };
    let account = read().await?;
    if !account.held_statement_ids.is_empty() {
        return Err(format!("{account_id} is on hold: it cannot buy, pick another account to bring near its limit"));
    }
    if account.credit_line.as_ref().and_then(near_limit).is_some() {
        return Ok(None);
    }
    crate::statements::purchase(store, account_id, now).await?;
    let account = read().await?;
    let owed = account.credit_line.map(|line| line.outstanding()).unwrap_or_default();
    // owed / 0.9, rounded up to cents: about 90% used, always above 80%.
    let limit = (owed * Decimal::TEN / Decimal::from(9)).round_dp_with_strategy(2, RoundingStrategy::AwayFromZero);
    let changed_at = time::timestamp(now);
    let by = LimitChangeBy { agency_id: &account.agency_id, changed_by: "seed-loader", changed_at: &changed_at };
    match store.set_client_credit_limit(account_id, limit, by).await.map_err(|e| e.to_string())? {
        ClientLimitOutcome::Set { line, .. } | ClientLimitOutcome::Unchanged(line) => {
            Ok(near_limit(&line).flatten().or(Some(Decimal::ZERO)))
        }
        ClientLimitOutcome::NotAClient => Err(format!("{account_id} is not a client of {}", account.agency_id)),
    }
}
