//! `reconcile [--segments N]`: checks the table named by `TABLE_NAME` (locally with
//! `AWS_ENDPOINT_URL_DYNAMODB`, or a deployed table with your AWS credentials). Exit 0: no drift;
//! 1: drift, every drifting account listed; 2: the check could not run, or some account could not be re-checked
//! as of one moment (listed as UNSETTLED) and nothing drifts.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let segments = match args.as_slice() {
        [] => 4,
        [flag, n] if flag == "--segments" => match n.parse::<i32>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => return usage(),
        },
        _ => return usage(),
    };
    let table = match shared::runtime::table_name() {
        Ok(table) => table,
        Err(error) => {
            eprintln!("reconcile: {error}");
            return ExitCode::FAILURE;
        }
    };
    let store = shared::storage::Store::new(shared::runtime::dynamodb_client().await, &table);
    match reconcile::check(&store, segments).await {
        Ok(report) => {
            for d in &report.drift {
                println!("{}", reconcile::describe(d));
            }
            for agency in &report.agency_drift {
                println!("{}", reconcile::describe_agency(agency));
            }
            for account in &report.unsettled {
                println!("UNSETTLED {account}: its purchases kept changing while it was re-checked; run again");
            }
            for agency in &report.unsettled_agencies {
                println!("UNSETTLED agency {agency}: its line kept moving while it was re-checked; run again");
            }
            println!(
                "reconcile: table {table}: {} accounts, {} purchases, {} re-checked as of one moment, {} drifting, \
                 {} unsettled, {} agency lines drifting",
                report.accounts,
                report.purchases,
                report.rechecked,
                report.drift.len(),
                report.unsettled.len(),
                report.agency_drift.len()
            );
            if !report.drift.is_empty() || !report.agency_drift.is_empty() {
                ExitCode::from(1)
            } else if !report.unsettled.is_empty() || !report.unsettled_agencies.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: reconcile [--segments 1..64]   (env: TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION)");
    ExitCode::from(2)
}
