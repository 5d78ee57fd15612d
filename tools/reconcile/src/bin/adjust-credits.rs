//! `adjust-credits --account ID --actor WHO --reason TEXT TYPE=SIGNED_QUANTITY...`: an operator's correction of
//! an account's balances, recorded as an `adjustment` ledger entry (with the reason and who made it) in the same
//! transaction. A negative quantity is refused if it would take the balance below zero. Same environment as
//! `reconcile` (TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION). Exit 0: adjusted; 1: refused; 2: usage or
//! storage error.

use std::process::ExitCode;
use std::time::SystemTime;

use shared::domain::CreditType;
use shared::domain::ledger::{Deltas, MAX_QUANTITY};
use shared::storage::AdjustOutcome;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((account, actor, reason, deltas)) = parse(&args) else {
        eprintln!(
            "usage: adjust-credits --account ID --actor WHO --reason TEXT TYPE=SIGNED_QUANTITY...   \
             (e.g. audience=-5 pixel=10; env: TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION)"
        );
        return ExitCode::from(2);
    };
    let table = match shared::runtime::table_name() {
        Ok(table) => table,
        Err(error) => {
            eprintln!("adjust-credits: {error}");
            return ExitCode::from(2);
        }
    };
    let store = shared::storage::Store::new(shared::runtime::dynamodb_client().await, table);
    let entry_id = uuid::Uuid::now_v7().to_string();
    let at = shared::domain::time::timestamp(SystemTime::now());
    match store.adjust(&account, &deltas, &reason, &actor, &entry_id, &at).await {
        Ok(AdjustOutcome::Adjusted(entry)) => {
            println!("adjusted {account}: entry {} at {}: {:?}", entry.entry_id, entry.created_at, entry.quantities);
            ExitCode::SUCCESS
        }
        Ok(AdjustOutcome::AccountMissing) => {
            eprintln!("adjust-credits: no account {account}");
            ExitCode::from(1)
        }
        Ok(AdjustOutcome::Insufficient(short)) => {
            for s in short {
                eprintln!(
                    "adjust-credits: {} would go below zero (balance {}, taking {})",
                    s.credit_type, s.balance, s.requested
                );
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("adjust-credits: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Option<(String, String, String, Deltas)> {
    let (mut account, mut actor, mut reason, mut deltas) = (None, None, None, Deltas::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--account" => account = Some(rest.next()?.clone()),
            "--actor" => actor = Some(rest.next()?.clone()),
            "--reason" => reason = Some(rest.next()?.clone()),
            pair => {
                let (name, quantity) = pair.split_once('=')?;
                let quantity: i64 =
                    quantity.parse().ok().filter(|q: &i64| *q != 0 && q.unsigned_abs() <= MAX_QUANTITY)?;
                deltas.insert(CreditType::parse(name)?, quantity);
            }
        }
    }
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    (!deltas.is_empty()).then_some((nonempty(account)?, nonempty(actor)?, nonempty(reason)?, deltas))
}
