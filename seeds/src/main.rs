//! `seed-loader [FILE ...]`: creates the table named by `TABLE_NAME` if missing and upserts the seed files
//! (by default every `seeds/data/*.json`). Point it at a local engine with `AWS_ENDPOINT_URL_DYNAMODB`,
//! or at a deployed table with your usual AWS credentials and region.
//!
//! With `SEED_SETTLED_STATEMENTS=1` (the dev stack), each seeded account also gets a settled statement for the
//! dashboard: paid by card, or declined for `STACK_DECLINING_ACCOUNT` (default `acct-brightside-dental`), which
//! then holds it ([`seed_loader::seed_settled_statements`]); and `acct-northwind-bikes` (or
//! `STACK_NEAR_LIMIT_ACCOUNT`) is left owing about 90% of its line ([`seed_loader::seed_near_limit`]), so the
//! agency console's overview has a hold, a failed collection and a line near its limit to show. Never against a
//! deployed table: it bills a cycle.

use std::path::PathBuf;
use std::process::ExitCode;

/// The client the dev stack leaves above 80% of its line for the agency console's overview (not the panel's
/// account, whose line the browser tests spend; `STACK_NEAR_LIMIT_ACCOUNT` names another).
const NEAR_LIMIT_ACCOUNT: &str = "acct-northwind-bikes";

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
        Ok(report) if std::env::var("SEED_SETTLED_STATEMENTS").is_ok_and(|v| v == "1") => {
            let accounts: Vec<String> = seed.accounts.iter().map(|a| a.account_id.clone()).collect();
            let declining =
                std::env::var("STACK_DECLINING_ACCOUNT").unwrap_or_else(|_| "acct-brightside-dental".to_owned());
            let now = std::time::SystemTime::now();
            let near_limit =
                std::env::var("STACK_NEAR_LIMIT_ACCOUNT").unwrap_or_else(|_| NEAR_LIMIT_ACCOUNT.to_owned());
            let settled = match seed_loader::seed_settled_statements(&store, &accounts, &declining, now).await {
                Ok(settled) => seed_loader::seed_near_limit(&store, &near_limit, now).await.map(|used| (settled, used)),
                Err(e) => Err(e),
            };
            match settled {
                Ok((settled, used)) => {
                    println!(
                        "seed-loader: {} (from {} file(s)); settled statements: {} paid, {} declined; {near_limit} {}",
                        summary(&report),
                        files.len(),
                        settled.paid.len(),
                        settled.declined.len(),
                        used.map_or("already above 80% of its line".to_owned(), |p| format!("at {p}% of its line")),
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("seed-loader: settled statements: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

fn summary(report: &seed_loader::LoadReport) -> String {
    format!(
        "default pricing {}, agencies {} changed / {} unchanged, accounts {} upserted",
        if report.default_pricing_changed { "changed" } else { "unchanged" },
        report.agencies_changed,
        report.agencies_unchanged,
        report.accounts_upserted
    )
}
