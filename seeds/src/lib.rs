//! Seed files: parse, validate, and upsert into the table.
//!
//! A seed file is a JSON object with any of three sections (see the README, "Seed files"):
//! `defaultPricing` (every credit type: price and cost), `agencies` (id, name, overrides),
//! `accounts` (id, agency id, name). Loading is an upsert: running it twice changes nothing,
//! pricing versions move only when rates change, and balances are never touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::domain::{self, CreditType, Rate, RateOverride};
use shared::storage::Store;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedFile {
    #[serde(default)]
    pub default_pricing: Option<BTreeMap<CreditType, Rate>>,
    #[serde(default)]
    pub agencies: Vec<SeedAgency>,
    #[serde(default)]
    pub accounts: Vec<SeedAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAgency {
    pub agency_id: String,
    /// For people reading the file; not stored.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rates: BTreeMap<CreditType, RateOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAccount {
    pub account_id: String,
    pub agency_id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// What a load did, for the loader's report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub default_pricing_changed: bool,
    pub agencies_changed: usize,
    pub agencies_unchanged: usize,
    pub accounts_upserted: usize,
}

/// The seed files shipped in `seeds/data`, in name order.
pub fn bundled_seed_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
}

/// Reads and validates seed files; every problem is reported with its file.
pub fn read_seed_files(paths: &[PathBuf]) -> Result<SeedFile, String> {
    let mut merged = SeedFile::default();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: SeedFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(rates) = file.default_pricing {
            if merged.default_pricing.is_some() {
                return Err(format!("{}: defaultPricing is given in more than one file", path.display()));
            }
            merged.default_pricing = Some(rates);
        }
        merged.agencies.extend(file.agencies);
        merged.accounts.extend(file.accounts);
    }
    validate(&merged)?;
    Ok(merged)
}

fn validate(seed: &SeedFile) -> Result<(), String> {
    if let Some(rates) = &seed.default_pricing {
        for t in CreditType::ALL {
            let rate = rates.get(&t).ok_or_else(|| format!("defaultPricing lacks {t}"))?;
            check(&format!("defaultPricing.{t}.price"), rate.price)?;
            check(&format!("defaultPricing.{t}.cost"), rate.cost)?;
        }
    }
    for agency in &seed.agencies {
        check_id("agencyId", &agency.agency_id)?;
        for (t, rate) in &agency.rates {
            if let Some(price) = rate.price {
                check(&format!("{}.{t}.price", agency.agency_id), price)?;
            }
            if let Some(cost) = rate.cost {
                check(&format!("{}.{t}.cost", agency.agency_id), cost)?;
            }
        }
    }
    for account in &seed.accounts {
        check_id("accountId", &account.account_id)?;
        check_id("agencyId", &account.agency_id)?;
    }
    Ok(())
}

fn check(what: &str, value: rust_decimal::Decimal) -> Result<(), String> {
    domain::check_rate_value(what, value).map_err(|e| e.to_string())
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if domain::is_valid_account_id(id) {
        Ok(())
    } else {
        Err(format!("{what} {id:?} must be 1-64 letters, digits, '-' or '_'"))
    }
}

/// Creates the table if it is missing, then upserts everything in `seed`.
pub async fn load(store: &Store, seed: &SeedFile) -> Result<LoadReport, String> {
    shared::table::create_table_if_missing(store.client(), store.table_name())
        .await
        .map_err(|e| format!("creating table {}: {e}", store.table_name()))?;
    let mut report = LoadReport::default();
    if let Some(rates) = &seed.default_pricing {
        report.default_pricing_changed = store.upsert_default_pricing(rates).await.map_err(|e| e.to_string())?;
    }
    for agency in &seed.agencies {
        if store.upsert_agency_pricing(&agency.agency_id, &agency.rates).await.map_err(|e| e.to_string())? {
            report.agencies_changed += 1;
        } else {
            report.agencies_unchanged += 1;
        }
    }
    for account in &seed.accounts {
        store
            .upsert_account(&account.account_id, &account.agency_id, account.name.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        report.accounts_upserted += 1;
    }
    Ok(report)
}
