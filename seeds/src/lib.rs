//! Seed files: parse, validate, and upsert into the table.
//!
//! A seed file is a JSON object with any of three sections (see the README, "Seed files"):
//! `defaultPricing` (every credit type: price and cost), `agencies` (id, name, overrides),
//! `accounts` (id, agency id, name). Loading is an upsert: running it twice changes nothing,
//! pricing versions move only when rates change, and balances are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;
use shared::domain::credit::{DEFAULT_AGENCY_CEILING_AT_COST, DEFAULT_CLIENT_CREDIT_LIMIT, check_credit_limit};
use shared::domain::{self, CreditType, Rate, RateOverride};
use shared::storage::Store;

pub mod overview;
pub mod statements;
pub use overview::seed_near_limit;
pub use statements::{SettledReport, seed_settled_statements};

/// Seed data, validated, every rate in its canonical form ([`domain::canonical_rate`]).
#[derive(Debug, Default)]
pub struct SeedFile {
    pub default_pricing: Option<BTreeMap<CreditType, Rate>>,
    pub agencies: Vec<SeedAgency>,
    pub accounts: Vec<SeedAccount>,
}

#[derive(Debug)]
pub struct SeedAgency {
    pub agency_id: String,
    /// For people reading the file; not stored.
    pub name: Option<String>,
    pub rates: BTreeMap<CreditType, RateOverride>,
    /// Types this agency may sell below cost (`"allowBelowCost": ["enrichment"]`); not stored.
    pub allow_below_cost: BTreeSet<CreditType>,
    /// The limit of each of its clients that sets none (at price); default [`DEFAULT_CLIENT_CREDIT_LIMIT`].
    pub default_client_credit_limit: Option<Decimal>,
    /// The Stripe customer its statements at cost are charged to.
    pub stripe_customer_id: Option<String>,
    /// What all its clients together may owe the platform at cost; default [`DEFAULT_AGENCY_CEILING_AT_COST`].
    pub credit_ceiling_at_cost: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAccount {
    pub account_id: String,
    pub agency_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The account's pay-later limit at price; default: its agency's `defaultClientCreditLimit`.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub credit_limit: Option<Decimal>,
    /// The Stripe customer its statements are charged to (`cus_...`).
    #[serde(default)]
    pub stripe_customer_id: Option<String>,
}

/// A seed file as written: rates are decimal strings, every object refuses unknown fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSeedFile {
    #[serde(default)]
    default_pricing: Option<BTreeMap<CreditType, RawRate>>,
    #[serde(default)]
    agencies: Vec<RawAgency>,
    #[serde(default)]
    accounts: Vec<SeedAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAgency {
    agency_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rates: BTreeMap<CreditType, RawRateOverride>,
    #[serde(default)]
    allow_below_cost: BTreeSet<CreditType>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    default_client_credit_limit: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    credit_ceiling_at_cost: Option<Decimal>,
    #[serde(default)]
    stripe_customer_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    price: String,
    cost: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateOverride {
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    cost: Option<String>,
}

/// Reads one rate of a seed file: plain digits, no sign (`-0` included), at most four places, at most
/// [`domain::MAX_RATE`]; kept in canonical form.
fn rate(what: &str, text: &str) -> Result<Decimal, String> {
    domain::parse_rate(what, text).map(domain::canonical_rate).map_err(|e| e.to_string())
}

/// Parses and validates one seed file's text; `label` names it in errors.
pub fn parse_seed(label: &str, text: &str) -> Result<SeedFile, String> {
    let raw: RawSeedFile = serde_json::from_str(text).map_err(|e| format!("{label}: {e}"))?;
    let seed = convert(raw).map_err(|e| format!("{label}: {e}"))?;
    validate(&seed).map_err(|e| format!("{label}: {e}"))?;
    Ok(seed)
}

fn convert(raw: RawSeedFile) -> Result<SeedFile, String> {
    let default_pricing = match raw.default_pricing {
        None => None,
        Some(rates) => {
            let mut converted = BTreeMap::new();
            for (t, r) in rates {
                let price = rate(&format!("defaultPricing.{t}.price"), &r.price)?;
                let cost = rate(&format!("defaultPricing.{t}.cost"), &r.cost)?;
                converted.insert(t, Rate { price, cost });
            }
            Some(converted)
        }
    };
    let mut agencies = Vec::with_capacity(raw.agencies.len());
    for agency in raw.agencies {
        let mut rates = BTreeMap::new();
        for (t, r) in agency.rates {
            let field = |name: &str| format!("{}.{t}.{name}", agency.agency_id);
            let price = r.price.map(|p| rate(&field("price"), &p)).transpose()?;
            let cost = r.cost.map(|c| rate(&field("cost"), &c)).transpose()?;
            rates.insert(t, RateOverride { price, cost });
        }
        agencies.push(SeedAgency {
            agency_id: agency.agency_id,
            name: agency.name,
            rates,
            allow_below_cost: agency.allow_below_cost,
            default_client_credit_limit: agency.default_client_credit_limit,
            credit_ceiling_at_cost: agency.credit_ceiling_at_cost,
            stripe_customer_id: agency.stripe_customer_id,
        });
    }
    Ok(SeedFile { default_pricing, agencies, accounts: raw.accounts })
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
        let file = parse_seed(&path.display().to_string(), &text)?;
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
    check_margins(&merged, None)?;
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
        check_customer(&agency.agency_id, agency.stripe_customer_id.as_deref())?;
        for (t, rate) in &agency.rates {
            if let Some(price) = rate.price {
                check(&format!("{}.{t}.price", agency.agency_id), price)?;
            }
            if let Some(cost) = rate.cost {
                check(&format!("{}.{t}.cost", agency.agency_id), cost)?;
            }
        }
    }
    for agency in &seed.agencies {
        for (what, limit) in [
            ("defaultClientCreditLimit", agency.default_client_credit_limit),
            ("creditCeilingAtCost", agency.credit_ceiling_at_cost),
        ] {
            if let Some(limit) = limit {
                check_credit_limit(&format!("{}.{what}", agency.agency_id), limit)?;
            }
        }
    }
    for account in &seed.accounts {
        check_id("accountId", &account.account_id)?;
        check_id("agencyId", &account.agency_id)?;
        check_customer(&account.account_id, account.stripe_customer_id.as_deref())?;
        if let Some(limit) = account.credit_limit {
            check_credit_limit(&format!("{}.creditLimit", account.account_id), limit)?;
        }
    }
    Ok(())
}

fn check(what: &str, value: Decimal) -> Result<(), String> {
    domain::check_rate_value(what, value).map_err(|e| e.to_string())
}

fn check_customer(owner: &str, customer: Option<&str>) -> Result<(), String> {
    match customer {
        Some(id) if !domain::is_valid_stripe_customer_id(id) => {
            Err(format!("{owner}.stripeCustomerId {id:?} must be a Stripe customer id (cus_ and letters or digits)"))
        }
        _ => Ok(()),
    }
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if domain::is_valid_account_id(id) {
        Ok(())
    } else {
        Err(format!("{what} {id:?} must be 1-64 letters, digits, '-' or '_'"))
    }
}

/// Refuses to sell below cost. The seed's own default pricing must have every price at or above its cost; and
/// for every agency and credit type, the effective price (the agency's, else the default) must be at or above
/// the effective cost (the agency's, else the default), unless the agency lists that type in `allowBelowCost`.
/// The defaults are the seed's, else `stored_defaults` (what the table holds); without either, only the types
/// where the agency sets both price and cost can be checked. Every problem is reported, not just the first.
pub fn check_margins(seed: &SeedFile, stored_defaults: Option<&BTreeMap<CreditType, Rate>>) -> Result<(), String> {
    let mut problems = Vec::new();
    let (defaults, default_source) = match (&seed.default_pricing, stored_defaults) {
        (Some(rates), _) => (Some(rates), "the seed's defaultPricing"),
        (None, stored) => (stored, "the stored default pricing"),
    };
    if let Some(rates) = &seed.default_pricing {
        for (t, r) in rates {
            if r.price < r.cost {
                problems.push(format!("defaultPricing: {t} price {} is below its cost {}", r.price, r.cost));
            }
        }
    }
    for agency in &seed.agencies {
        for t in CreditType::ALL {
            let over = agency.rates.get(&t).copied().unwrap_or_default();
            let base = defaults.and_then(|d| d.get(&t));
            let price = over.price.map(|p| (p, "the agency's")).or(base.map(|b| (b.price, default_source)));
            let cost = over.cost.map(|c| (c, "the agency's")).or(base.map(|b| (b.cost, default_source)));
            let (Some((price, price_from)), Some((cost, cost_from))) = (price, cost) else { continue };
            if price < cost && !agency.allow_below_cost.contains(&t) {
                problems.push(format!(
                    "agency {}: {t} price {price} ({price_from}) is below its cost {cost} ({cost_from}); \
                     raise the price, set the agency's own cost, or add \"allowBelowCost\": [\"{t}\"] to the agency \
                     if selling below cost is intended",
                    agency.agency_id
                ));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

/// Creates the table if it is missing, then upserts everything in `seed`. Nothing is written if an agency
/// would sell below cost ([`check_margins`], against the table's default pricing when the seed has none).
pub async fn load(store: &Store, seed: &SeedFile) -> Result<LoadReport, String> {
    shared::table::create_table_if_missing(store.client(), store.table_name())
        .await
        .map_err(|e| format!("creating table {}: {e}", store.table_name()))?;
    let stored_defaults = match &seed.default_pricing {
        Some(_) => None,
        None if seed.agencies.is_empty() => None,
        None => store.default_rates().await.map_err(|e| format!("reading the default pricing: {e}"))?,
    };
    check_margins(seed, stored_defaults.as_ref())?;
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
    // Every agency a seed names gets its line (at cost), so its clients can buy on pay-later.
    let mut agency_ids: Vec<&str> = seed.agencies.iter().map(|a| a.agency_id.as_str()).collect();
    agency_ids.extend(seed.accounts.iter().map(|a| a.agency_id.as_str()));
    agency_ids.sort();
    agency_ids.dedup();
    for agency_id in agency_ids {
        let agency = seed.agencies.iter().find(|a| a.agency_id == agency_id);
        let ceiling = agency.and_then(|a| a.credit_ceiling_at_cost).unwrap_or(DEFAULT_AGENCY_CEILING_AT_COST);
        store.set_agency_ceiling(agency_id, ceiling).await.map_err(|e| e.to_string())?;
        if let Some(customer) = agency.and_then(|a| a.stripe_customer_id.as_deref()) {
            store.set_agency_stripe_customer(agency_id, customer).await.map_err(|e| e.to_string())?;
        }
    }
    for account in &seed.accounts {
        store
            .upsert_account(
                &account.account_id,
                &account.agency_id,
                account.name.as_deref(),
                account.stripe_customer_id.as_deref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let agency = seed.agencies.iter().find(|a| a.agency_id == account.agency_id);
        let limit = account
            .credit_limit
            .or(agency.and_then(|a| a.default_client_credit_limit))
            .unwrap_or(DEFAULT_CLIENT_CREDIT_LIMIT);
        store.set_credit_limit(&account.account_id, limit).await.map_err(|e| e.to_string())?;
        report.accounts_upserted += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    const DEFAULTS: &str = r#""defaultPricing": {
        "audience": { "price": "30.00", "cost": "18.00" },
        "enrichment": { "price": "1.00", "cost": "0.40" },
        "pixel": { "price": "12.00", "cost": "6.25" },
        "custom_model": { "price": "150.00", "cost": "80.00" }
    }"#;

    fn with_defaults(agencies: &str) -> String {
        format!("{{ {DEFAULTS}, \"agencies\": {agencies} }}")
    }

    /// Parses and checks margins against the file's own defaults, as `read_seed_files` does.
    fn read(text: &str) -> Result<SeedFile, String> {
        let seed = parse_seed("test.json", text)?;
        check_margins(&seed, None)?;
        Ok(seed)
    }

    #[test]
    fn the_shipped_seeds_are_valid_and_sell_at_or_above_cost_without_allow_below_cost() {
        let files = bundled_seed_files();
        assert_eq!(files.len(), 3, "{files:?}");
        let seed = read_seed_files(&files).unwrap();
        assert!(seed.agencies.iter().all(|a| a.allow_below_cost.is_empty()));
        let defaults = seed.default_pricing.as_ref().unwrap();
        for agency in &seed.agencies {
            for t in CreditType::ALL {
                let over = agency.rates.get(&t).copied().unwrap_or_default();
                let (price, cost) = (over.price.unwrap_or(defaults[&t].price), over.cost.unwrap_or(defaults[&t].cost));
                assert!(price >= cost, "{} {t}: {price} < {cost}", agency.agency_id);
            }
        }
        // Brightside still sets its own enrichment price and leaves the cost to the default.
        let brightside = seed.agencies.iter().find(|a| a.agency_id == "agency-brightside").unwrap();
        assert_eq!(brightside.rates[&CreditType::Enrichment], RateOverride { price: Some(d("0.4150")), cost: None });
    }

    #[test]
    fn an_agency_selling_below_its_effective_cost_is_refused_with_agency_type_price_and_cost() {
        // The shipped seeds' old mistake: an agency price under the default cost it falls back to.
        let text =
            with_defaults(r#"[{ "agencyId": "agency-cheap", "rates": { "enrichment": { "price": "0.0150" } } }]"#);
        let err = read(&text).unwrap_err();
        assert!(err.contains("agency agency-cheap"), "{err}");
        assert!(err.contains("enrichment price 0.0150 (the agency's) is below its cost 0.40"), "{err}");
        assert!(err.contains("allowBelowCost"), "{err}");

        // The agency's own cost above the default price; every problem is reported.
        let text = with_defaults(
            r#"[{ "agencyId": "agency-b", "rates": { "pixel": { "cost": "12.01" }, "audience": { "price": "17.99" } } }]"#,
        );
        let err = read(&text).unwrap_err();
        assert!(err.contains("agency agency-b: audience price 17.99 (the agency's) is below its cost 18.00"), "{err}");
        assert!(err.contains("agency agency-b: pixel price 12.00 (the seed's defaultPricing) is below its cost 12.01"));

        // At cost is fine; so is a type below cost that the agency names in allowBelowCost.
        let at_cost = with_defaults(r#"[{ "agencyId": "a", "rates": { "enrichment": { "price": "0.40" } } }]"#);
        read(&at_cost).unwrap();
        let allowed = with_defaults(
            r#"[{ "agencyId": "a", "allowBelowCost": ["enrichment"], "rates": { "enrichment": { "price": "0.0150" } } }]"#,
        );
        assert_eq!(read(&allowed).unwrap().agencies[0].allow_below_cost, BTreeSet::from([CreditType::Enrichment]));
        // The allowance is per type: it does not cover another type.
        let other = with_defaults(
            r#"[{ "agencyId": "a", "allowBelowCost": ["pixel"], "rates": { "enrichment": { "price": "0.0150" } } }]"#,
        );
        assert!(read(&other).unwrap_err().contains("enrichment price 0.0150"));
        // It names credit types, nothing else.
        let bad = with_defaults(r#"[{ "agencyId": "a", "allowBelowCost": true }]"#);
        assert!(read(&bad).is_err());
        let bad = with_defaults(r#"[{ "agencyId": "a", "allowBelowCost": ["enrichmnet"] }]"#);
        assert!(read(&bad).is_err());
    }

    #[test]
    fn margins_use_the_stored_defaults_when_the_seed_has_none() {
        let seed = parse_seed(
            "a.json",
            r#"{"agencies": [{ "agencyId": "a", "rates": { "enrichment": { "price": "0.0150" } } }]}"#,
        )
        .unwrap();
        // Nothing to compare with: the agency sets no cost.
        check_margins(&seed, None).unwrap();
        let stored = BTreeMap::from([(CreditType::Enrichment, Rate { price: d("1.00"), cost: d("0.40") })]);
        let err = check_margins(&seed, Some(&stored)).unwrap_err();
        assert!(err.contains("below its cost 0.40 (the stored default pricing)"), "{err}");
        // Both set by the agency: checked without any defaults.
        let seed = parse_seed(
            "a.json",
            r#"{"agencies": [{ "agencyId": "a", "rates": { "pixel": { "price": "1.00", "cost": "2.00" } } }]}"#,
        )
        .unwrap();
        assert!(check_margins(&seed, None).is_err());
    }

    #[test]
    fn default_pricing_below_cost_is_refused() {
        let text = r#"{"defaultPricing": {
            "audience": { "price": "30.00", "cost": "18.00" },
            "enrichment": { "price": "0.39", "cost": "0.40" },
            "pixel": { "price": "12.00", "cost": "6.25" },
            "custom_model": { "price": "150.00", "cost": "80.00" } }}"#;
        let err = read(text).unwrap_err();
        assert!(err.contains("defaultPricing: enrichment price 0.39 is below its cost 0.40"), "{err}");
    }

    #[test]
    fn negative_rates_and_negative_zero_are_refused() {
        for bad in ["-0", "-0.00", "-1.00"] {
            let text = with_defaults(&format!(
                r#"[{{ "agencyId": "a", "allowBelowCost": ["pixel"], "rates": {{ "pixel": {{ "price": "{bad}" }} }} }}]"#
            ));
            let err = read(&text).unwrap_err();
            assert!(err.contains("a.pixel.price is negative"), "{bad}: {err}");
            let text = DEFAULTS.replace(r#""cost": "6.25""#, &format!(r#""cost": "{bad}""#));
            let err = read(&format!("{{ {text} }}")).unwrap_err();
            assert!(err.contains("defaultPricing.pixel.cost is negative"), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_above_the_cap_or_with_more_than_four_places_are_refused() {
        let at_cap = with_defaults(
            r#"[{ "agencyId": "a", "rates": { "audience": { "price": "1000000.00", "cost": "1000000" } } }]"#,
        );
        read(&at_cap).unwrap();
        for bad in ["1000000.01", "1000001", "0.00001", "1e3", "+1", "1_0", ""] {
            let text = with_defaults(&format!(
                r#"[{{ "agencyId": "a", "rates": {{ "audience": {{ "price": "{bad}" }} }} }}]"#
            ));
            assert!(read(&text).unwrap_err().contains("a.audience.price"), "{bad}");
        }
        let number = with_defaults(r#"[{ "agencyId": "a", "rates": { "audience": { "price": 25 } } }]"#);
        assert!(read(&number).is_err(), "a JSON number is not a rate");
    }

    #[test]
    fn rates_are_kept_in_canonical_form() {
        let text = with_defaults(
            r#"[{ "agencyId": "a", "rates": { "enrichment": { "price": "0.01500", "cost": "0.0100" }, "audience": { "price": "25" } } }]"#,
        );
        let seed = parse_seed("t.json", &text).unwrap();
        let rates = &seed.agencies[0].rates;
        assert_eq!(rates[&CreditType::Enrichment].price.unwrap().to_string(), "0.0150");
        assert_eq!(rates[&CreditType::Enrichment].cost.unwrap().to_string(), "0.0100");
        assert_eq!(rates[&CreditType::Audience].price.unwrap().to_string(), "25.00");
    }

    #[test]
    fn unknown_fields_are_refused_inside_rates_too() {
        for text in [
            with_defaults(r#"[{ "agencyId": "a", "rates": { "enrichment": { "prize": "1.00" } } }]"#),
            with_defaults(r#"[{ "agencyId": "a", "rates": {}, "allowBelowCosts": ["pixel"] }]"#),
            DEFAULTS.replace(r#""price": "30.00","#, r#""price": "30.00", "note": "x","#),
        ] {
            let text = if text.starts_with('{') { text } else { format!("{{ {text} }}") };
            assert!(parse_seed("t.json", &text).unwrap_err().contains("unknown field"), "{text}");
        }
    }
}
