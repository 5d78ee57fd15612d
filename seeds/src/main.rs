//! `seed-loader [FILE ...]`: creates the table named by `TABLE_NAME` if missing and upserts the seed files
//! (by default every `seeds/data/*.json`). Point it at a local engine with `AWS_ENDPOINT_URL_DYNAMODB`,
//! or at a deployed table with your usual AWS credentials and region.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: seed-loader [SEED_FILE.json ...]   (env: TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION)");
        return ExitCode::SUCCESS;
    }
    let files = if args.is_empty() { seed_loader::bundled_seed_files() } else { args };
    let seed = match seed_loader::read_seed_files(&files) {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("seed-loader: invalid seed data: {e}");
            return ExitCode::from(2);
        }
    };
    let table = match shared::runtime::table_name() {
        Ok(table) => table,
        Err(error) => {
            eprintln!("seed-loader: {error}");
            return ExitCode::FAILURE;
        }
    };
    let store = shared::storage::Store::new(shared::runtime::dynamodb_client().await, &table);
    match seed_loader::load(&store, &seed).await {
        Ok(report) => {
            println!(
                "seed-loader: table {table}: default pricing {}, agencies {} changed / {} unchanged, accounts {} upserted (from {} file(s))",
                if report.default_pricing_changed { "changed" } else { "unchanged" },
                report.agencies_changed,
                report.agencies_unchanged,
                report.accounts_upserted,
                files.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seed-loader: {e}");
            ExitCode::FAILURE
        }
    }
}
