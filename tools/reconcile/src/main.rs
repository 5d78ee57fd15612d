//! `reconcile [--segments N]`: checks the table named by `TABLE_NAME` (locally with
//! `AWS_ENDPOINT_URL_DYNAMODB`, or a deployed table with your AWS credentials). Exit 0: no drift;
//! 1: drift, every drifting account listed; 2: the check could not run.

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
    let table = shared::runtime::table_name();
    let store = shared::storage::Store::new(shared::runtime::dynamodb_client().await, &table);
    match reconcile::check(&store, segments).await {
        Ok((drift, accounts, purchases)) => {
            for d in &drift {
                println!("{}", reconcile::describe(d));
            }
            println!("reconcile: table {table}: {accounts} accounts, {purchases} purchases, {} drifting", drift.len());
            if drift.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
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
