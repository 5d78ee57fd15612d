//! The HTTP API: plain async functions from a `Request` to a `Response`, callable from tests.
//!
//! - [`http`]: reading API Gateway requests (claims, path, body, headers, query).
//! - [`error`]: the one error type and the one place it becomes a response.
//! - this file: the instance's shared state, the request budget, the read routes and the client's views.
//! - [`purchase`]: `POST /credit-purchases`; [`history`]: the purchase history and statements routes;
//!   [`ledger`]: the ledger route (served with the purchase history by `list-purchases`); [`rules`]: the
//!   client's alert thresholds and auto top-up rules (read by `get-balances`, changed by `purchase-credits`).
//!
//! Handlers import the domain and storage; neither imports them.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::cache::PricingCache;
use crate::domain::{self, Account, EffectivePricing};
use crate::storage::Store;
use cursor::{CURSOR_KEY_VARIABLE, CursorKey};
use error::AppError;
use http::{authorize, json_response};

pub mod agency;
pub mod cursor;
pub mod error;
pub mod history;
pub mod http;
pub mod ledger;
pub mod paging;
pub mod purchase;
pub mod routing;
pub mod rules;
pub mod views;

pub use crate::domain::idempotency::IDEMPOTENCY_TTL;
pub use agency::{agency_read, agency_write};
pub use history::{list_purchases, list_statements};
pub use ledger::{list_ledger, list_purchases_or_ledger};
pub use purchase::{Purchased, purchase_credits, purchase_credits_with_outcome};
pub use rules::balances_or_rules;

/// Settings read once at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The JWT claim holding the caller's account id.
    pub account_claim: String,
    /// The JWT claim holding an agency administrator's agency id.
    pub agency_claim: String,
    /// The JWT claim listing the caller's groups (roles).
    pub groups_claim: String,
    /// The group that makes a token an agency administrator's.
    pub agency_admin_group: String,
    /// A request gives up (503) after this long, safely inside the function timeout.
    pub request_budget: Duration,
    /// How long an instance trusts its cached account → agency and agency → prices (zero: no cache).
    /// Purchases re-check both inside their transaction; `GET /pricing` may show a price this old.
    pub pricing_cache_ttl: Duration,
    /// Signs the cursors of every list route ([`cursor`]); only the functions serving lists hold it
    /// ([`Cursors::Signed`]), the others have none.
    pub cursor_key: Option<CursorKey>,
    /// Auto top-ups per account per UTC day (`AUTO_TOPUP_DAILY_CAP`), shown with the client's top-up rules; the
    /// consumption enforces the same setting.
    pub auto_topup_daily_cap: u32,
}

impl Default for Settings {
    /// The defaults, with a random cursor key: cursors then live as long as the process (tests, tools).
    fn default() -> Self {
        Settings {
            account_claim: "custom:account_id".into(),
            agency_claim: "custom:agency_id".into(),
            groups_claim: "cognito:groups".into(),
            agency_admin_group: "agency-admin".into(),
            request_budget: Duration::from_secs(7),
            pricing_cache_ttl: Duration::from_secs(30),
            cursor_key: Some(CursorKey::random()),
            auto_topup_daily_cap: crate::domain::rules::DEFAULT_DAILY_TOPUP_CAP,
        }
    }
}

/// Whether a function hands out cursors, and so needs `CURSOR_SIGNING_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursors {
    /// It serves list routes: the key must be set, or the function does not start.
    Signed,
    /// It serves no list: it is not given the key (least privilege) and holds none.
    None,
}

pub use crate::settings::SettingsError;

/// The most `REQUEST_BUDGET_MS` accepts: API Gateway gives up on an integration after 30 s.
pub const MAX_REQUEST_BUDGET_MS: u64 = 29_000;
/// The most `PRICING_CACHE_TTL_SECONDS` accepts: a price change shows everywhere within the hour.
pub const MAX_PRICING_CACHE_TTL_SECONDS: u64 = 3_600;

impl Settings {
    /// `ACCOUNT_ID_CLAIM`, `AGENCY_ID_CLAIM`, `GROUPS_CLAIM`, `AGENCY_ADMIN_GROUP` (any text),
    /// `REQUEST_BUDGET_MS` (1..=[`MAX_REQUEST_BUDGET_MS`]) and `PRICING_CACHE_TTL_SECONDS`
    /// (0..=[`MAX_PRICING_CACHE_TTL_SECONDS`], 0: no cache) and `AUTO_TOPUP_DAILY_CAP`
    /// ([`crate::settings::auto_topup_daily_cap`]) override the defaults; `CURSOR_SIGNING_KEY` is the
    /// cursor key. Over any source of variables (a function's `main` passes the environment, see
    /// [`crate::settings`]; tests a map). A bad value is an error naming its variable.
    pub fn from_vars(cursors: Cursors, var: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let vars = crate::settings::Vars(&var);
        let defaults = Settings { cursor_key: None, ..Settings::default() };
        let text = |name, default: String| vars.text(name).unwrap_or(default);
        let mut settings = Settings {
            account_claim: text("ACCOUNT_ID_CLAIM", defaults.account_claim),
            agency_claim: text("AGENCY_ID_CLAIM", defaults.agency_claim),
            groups_claim: text("GROUPS_CLAIM", defaults.groups_claim),
            agency_admin_group: text("AGENCY_ADMIN_GROUP", defaults.agency_admin_group),
            request_budget: Duration::from_millis(vars.number(
                "REQUEST_BUDGET_MS",
                defaults.request_budget.as_millis() as u64,
                1..=MAX_REQUEST_BUDGET_MS,
            )?),
            pricing_cache_ttl: Duration::from_secs(vars.number(
                "PRICING_CACHE_TTL_SECONDS",
                defaults.pricing_cache_ttl.as_secs(),
                0..=MAX_PRICING_CACHE_TTL_SECONDS,
            )?),
            cursor_key: None,
            auto_topup_daily_cap: crate::settings::auto_topup_daily_cap(&var)?,
        };
        if cursors == Cursors::Signed {
            // No fallback: a key made up per instance would sign cursors the next instance refuses.
            let secret = vars.text(CURSOR_KEY_VARIABLE).ok_or_else(|| SettingsError {
                variable: CURSOR_KEY_VARIABLE,
                problem: "not set: this function signs its list cursors with it (docs/deploy.md)".into(),
            })?;
            let key = CursorKey::new(secret.as_bytes())
                .map_err(|problem| SettingsError { variable: CURSOR_KEY_VARIABLE, problem })?;
            settings.cursor_key = Some(key);
        }
        Ok(settings)
    }
}

/// Everything a handler needs, built once per Lambda instance.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub settings: Settings,
    pub cache: Arc<PricingCache>,
}

impl App {
    pub fn new(store: Store, settings: Settings) -> App {
        let cache = Arc::new(PricingCache::new(settings.pricing_cache_ttl));
        App { store, settings, cache }
    }

    /// The cursor key of a function serving lists. Its `main` asked for [`Cursors::Signed`], so a missing key
    /// stopped its cold start; here it would be a list route wired to another function: our fault.
    pub(crate) fn cursor_key(&self) -> Result<&CursorKey, AppError> {
        self.settings.cursor_key.as_ref().ok_or_else(|| {
            AppError::Internal(format!("a list route reached a function started without {CURSOR_KEY_VARIABLE}"))
        })
    }
}

/// Runs a handler body within the request budget and maps its error in the one place errors become HTTP.
pub(crate) async fn respond(app: &App, work: impl Future<Output = Result<Response<Body>, AppError>>) -> Response<Body> {
    let outcome = match tokio::time::timeout(app.settings.request_budget, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AppError::Unavailable("request budget exhausted".into())),
    };
    outcome.unwrap_or_else(AppError::into_response)
}

/// `GET /accounts/{accountId}/pricing`
pub async fn get_pricing(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings)?;
        let agency_id = agency_of(app, &account_id).await?;
        let (pricing, _) = pricing_of(app, &agency_id).await?;
        Ok(json_response(StatusCode::OK, &views::PricingView::of(&account_id, &pricing)))
    })
    .await
}

/// `GET /accounts/{accountId}/balances`
pub async fn get_balances(app: &App, request: Request) -> Response<Body> {
    respond(app, async {
        let account_id = authorize(&request, &app.settings)?;
        let account = load_account(app, &account_id).await?;
        Ok(json_response(StatusCode::OK, &views::AccountBalancesView::of(&account)))
    })
    .await
}

/// Reads the account (always fresh) and remembers its agency.
pub(crate) async fn load_account(app: &App, account_id: &str) -> Result<Account, AppError> {
    let account = app.store.account(account_id).await?.ok_or(AppError::AccountNotFound)?;
    app.cache.agency_of_account.put(account_id.to_owned(), account.agency_id.clone());
    Ok(account)
}

/// The account's agency, from the cache when fresh enough.
pub(crate) async fn agency_of(app: &App, account_id: &str) -> Result<String, AppError> {
    match app.cache.agency_of_account.get(&account_id.to_owned()) {
        Some(agency_id) => Ok(agency_id),
        None => Ok(load_account(app, account_id).await?.agency_id),
    }
}

/// The agency's effective prices, from the cache when fresh enough; `true` when they came from the cache.
pub(crate) async fn pricing_of(app: &App, agency_id: &str) -> Result<(EffectivePricing, bool), AppError> {
    if let Some(pricing) = app.cache.pricing_of_agency.get(&agency_id.to_owned()) {
        return Ok((pricing, true));
    }
    let (default, agency) = app.store.pricing(agency_id).await?;
    let pricing = domain::resolve_pricing(agency_id, &default, agency.as_ref())?;
    app.cache.pricing_of_agency.put(agency_id.to_owned(), pricing.clone());
    Ok((pricing, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_function_serving_lists_does_not_start_without_a_good_cursor_key() {
        let vars = |key: Option<&'static str>| move |name: &str| (name == CURSOR_KEY_VARIABLE).then_some(key?.into());
        for missing in [None, Some("")] {
            let error = Settings::from_vars(Cursors::Signed, vars(missing)).unwrap_err();
            assert_eq!(error.variable, CURSOR_KEY_VARIABLE);
            assert!(error.to_string().starts_with("CURSOR_SIGNING_KEY: not set"), "{error}");
        }
        let error = Settings::from_vars(Cursors::Signed, vars(Some("too-short"))).unwrap_err();
        assert!(error.to_string().contains("CURSOR_SIGNING_KEY") && error.to_string().contains("32"), "{error}");
        let key = "k".repeat(64).leak();
        let settings = Settings::from_vars(Cursors::Signed, vars(Some(key))).unwrap();
        assert!(settings.cursor_key.is_some());
        // A function serving no list neither needs nor keeps one, even if given one.
        assert!(Settings::from_vars(Cursors::None, vars(None)).unwrap().cursor_key.is_none());
        assert!(Settings::from_vars(Cursors::None, vars(Some(key))).unwrap().cursor_key.is_none());
    }

    #[test]
    fn api_settings_default_take_good_values_and_refuse_bad_ones_by_name() {
        use crate::settings::tests::{assert_refused, vars};
        let read = |pairs: &[(&str, &str)]| Settings::from_vars(Cursors::None, vars(pairs));
        let defaults = read(&[]).unwrap();
        let d = Settings::default();
        assert_eq!(
            (&defaults.account_claim, &defaults.agency_claim, &defaults.groups_claim, &defaults.agency_admin_group),
            (&d.account_claim, &d.agency_claim, &d.groups_claim, &d.agency_admin_group)
        );
        assert_eq!(
            (defaults.request_budget, defaults.pricing_cache_ttl),
            (Duration::from_secs(7), Duration::from_secs(30))
        );
        let set = read(&[
            ("ACCOUNT_ID_CLAIM", "custom:acct"),
            ("AGENCY_ID_CLAIM", "custom:agency"),
            ("GROUPS_CLAIM", "groups"),
            ("AGENCY_ADMIN_GROUP", "admins"),
            ("REQUEST_BUDGET_MS", "2500"),
            ("PRICING_CACHE_TTL_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(
            (set.account_claim.as_str(), set.agency_claim.as_str(), set.groups_claim.as_str()),
            ("custom:acct", "custom:agency", "groups")
        );
        assert_eq!(set.agency_admin_group, "admins");
        assert_eq!((set.request_budget, set.pricing_cache_ttl), (Duration::from_millis(2500), Duration::ZERO));
        // An empty claim is an unset one: the default, never a claim named "".
        assert_eq!(read(&[("ACCOUNT_ID_CLAIM", "")]).unwrap().account_claim, d.account_claim);
        for bad in ["0", "30000", "7s", "-1"] {
            assert_refused(read(&[("REQUEST_BUDGET_MS", bad)]), "REQUEST_BUDGET_MS", "from 1 to 29000");
        }
        for bad in ["3601", "30s", "-1"] {
            assert_refused(read(&[("PRICING_CACHE_TTL_SECONDS", bad)]), "PRICING_CACHE_TTL_SECONDS", "from 0 to 3600");
        }
    }

    #[test]
    fn two_instances_with_the_same_key_read_each_others_cursors() {
        let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let settings =
            || Settings::from_vars(Cursors::Signed, |name| (name == CURSOR_KEY_VARIABLE).then(|| secret.into()));
        let (a, b) = (settings().unwrap().cursor_key.unwrap(), settings().unwrap().cursor_key.unwrap());
        let cursor = a.sign(cursor::CursorList::Ledger, &json!({"pk": "x"}));
        assert_eq!(b.open::<Value>(cursor::CursorList::Ledger, &cursor).unwrap(), json!({"pk": "x"}));
    }
}
