//! Every setting a function reads from its environment, parsed once at cold start.
//!
//! Each concern parses its own variables with a pure `from_vars(lookup)` over any source of variables (the
//! process's environment in a function, a map in tests, which never touch the process's environment):
//! [`Common`] here (every function), [`crate::api::Settings`], [`crate::billing::BillingSettings`],
//! [`crate::collection::CollectSettings`], [`StripeSettings`], [`SecretSource`], [`ReconcileSettings`]. A
//! function's `main` reads [`Common`] and its own part in one call (`runtime::start`, over [`from_env`]) and
//! hands them to the handler's context; handlers take their settings as arguments, so tests pass their own.
//!
//! An unset or empty variable takes its documented default (docs/deploy.md, "Configuration"); any other value
//! that is not accepted stops the cold start with an error naming the variable and what it accepts.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;

/// A setting that stops a cold start, naming its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub problem: String,
}

/// The variables, by name: the process's environment in a function, a closure over a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment (the one place a function reads it). A value that is not UTF-8 is read lossily,
/// so the parser refuses it by name rather than it passing for unset.
pub fn env_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(value)) => Some(value.to_string_lossy().into_owned()),
    }
}

/// What a function's `main` reads: [`Common`] and the function's own part.
#[derive(Debug, Clone)]
pub struct Settings<T> {
    pub common: Common,
    pub function: T,
}

/// Reads [`Common`] and `function` (one concern's `from_vars`) from the process's environment, once.
pub fn from_env<T>(function: impl FnOnce(Lookup) -> Result<T, SettingsError>) -> Result<Settings<T>, SettingsError> {
    from_vars(&env_var, function)
}

/// [`from_env`] over any source of variables.
pub fn from_vars<T>(
    var: Lookup,
    function: impl FnOnce(Lookup) -> Result<T, SettingsError>,
) -> Result<Settings<T>, SettingsError> {
    Ok(Settings { common: Common::from_vars(var)?, function: function(var)? })
}

/// A function that reads nothing beyond [`Common`].
pub fn nothing_more(_: Lookup) -> Result<(), SettingsError> {
    Ok(())
}

/// The log level's variables: Lambda's advanced logging controls set the first, the local stack the second.
pub const LOG_LEVEL_VARIABLES: [&str; 2] = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"];
pub const TABLE_NAME_VARIABLE: &str = "TABLE_NAME";
pub const DEFAULT_TABLE_NAME: &str = "overage-credits";
pub const METRICS_NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";
/// The namespace when `METRICS_NAMESPACE` is unset (local runs).
pub const DEFAULT_METRICS_NAMESPACE: &str = "OverageCredits";

/// What every function reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// `AWS_LAMBDA_LOG_LEVEL` (`TRACE`..`FATAL`, any case), else `RUST_LOG` (a plain level), else `info`.
    pub log_level: LevelFilter,
    /// `TABLE_NAME`, else `overage-credits` (the local stack's).
    pub table_name: String,
    /// `METRICS_NAMESPACE` (the template sets `OverageCredits/<stack>`), else `OverageCredits`.
    pub metrics_namespace: String,
}

impl Common {
    pub fn from_vars(var: Lookup) -> Result<Common, SettingsError> {
        let vars = Vars(var);
        let log_level = match (vars.text(LOG_LEVEL_VARIABLES[0]), vars.text(LOG_LEVEL_VARIABLES[1])) {
            (Some(lambda), _) => lambda_log_level(&lambda).ok_or_else(|| {
                vars.bad(LOG_LEVEL_VARIABLES[0], &lambda, "one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL")
            })?,
            (None, Some(rust)) => rust.parse().map_err(|_| {
                vars.bad(LOG_LEVEL_VARIABLES[1], &rust, "one plain level: off, error, warn, info, debug or trace")
            })?,
            (None, None) => LevelFilter::INFO,
        };
        Ok(Common {
            log_level,
            table_name: table_name(var)?,
            metrics_namespace: vars.checked(
                METRICS_NAMESPACE_VARIABLE,
                DEFAULT_METRICS_NAMESPACE,
                "a CloudWatch namespace: 1 to 255 of a-z, A-Z, 0-9, '.', '-', '_', '/', '#', ':', ' ', not starting with ':'",
                |ns| {
                    ns.len() <= 255
                        && !ns.starts_with(':')
                        && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_/#: ".contains(&b))
                },
            )?,
        })
    }
}

/// `TABLE_NAME`, else [`DEFAULT_TABLE_NAME`] (also read alone by the command-line tools).
pub fn table_name(var: Lookup) -> Result<String, SettingsError> {
    Vars(var).checked(
        TABLE_NAME_VARIABLE,
        DEFAULT_TABLE_NAME,
        "a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, '_', '-', '.'",
        |name| {
            (3..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        },
    )
}

/// Lambda's log levels; it has `FATAL` where tracing stops at `ERROR`.
fn lambda_log_level(text: &str) -> Option<LevelFilter> {
    match text.to_ascii_uppercase().as_str() {
        "TRACE" => Some(LevelFilter::TRACE),
        "DEBUG" => Some(LevelFilter::DEBUG),
        "INFO" => Some(LevelFilter::INFO),
        "WARN" => Some(LevelFilter::WARN),
        "ERROR" | "FATAL" => Some(LevelFilter::ERROR),
        _ => None,
    }
}

pub const STRIPE_API_BASE_VARIABLE: &str = "STRIPE_API_BASE";

/// What `collect-payments` reads to call Stripe: where Stripe is and where its secret key comes from.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// `STRIPE_API_BASE` (localstripe locally), else Stripe's own.
    pub api_base: String,
    pub secret_key: SecretSource,
}

impl StripeSettings {
    pub fn from_vars(var: Lookup) -> Result<StripeSettings, SettingsError> {
        let api_base = Vars(var).checked(
            STRIPE_API_BASE_VARIABLE,
            crate::stripe::STRIPE_API_BASE,
            "an http:// or https:// URL",
            |url| url.starts_with("https://") || url.starts_with("http://"),
        )?;
        Ok(StripeSettings {
            api_base,
            secret_key: SecretSource::from_vars(var, "STRIPE_SECRET_KEY_ARN", "STRIPE_SECRET_KEY")?,
        })
    }
}

/// Where a secret comes from: Secrets Manager, by the ARN the template sets (only this function's role may read
/// it), or for the local stack only the value itself (the template never sets it). Never logged
/// ([`crate::stripe::Secret`] prints as `***`).
#[derive(Debug, Clone)]
pub enum SecretSource {
    SecretsManager { variable: &'static str, arn: String },
    Value(crate::stripe::Secret),
}

impl SecretSource {
    /// `stripe-webhook`'s endpoint signing secrets (whitespace-separated while one is being rolled).
    pub fn stripe_webhook_secret(var: Lookup) -> Result<SecretSource, SettingsError> {
        SecretSource::from_vars(var, "STRIPE_WEBHOOK_SECRET_ARN", "STRIPE_WEBHOOK_SECRET")
    }

    /// The ARN in `arn_variable`, else the value in `value_variable`; one of them must be set.
    fn from_vars(
        var: Lookup,
        arn_variable: &'static str,
        value_variable: &'static str,
    ) -> Result<SecretSource, SettingsError> {
        let vars = Vars(var);
        match (vars.text(arn_variable), vars.text(value_variable).filter(|v| !v.trim().is_empty())) {
            (Some(arn), _) => Ok(SecretSource::SecretsManager { variable: arn_variable, arn }),
            (None, Some(value)) => Ok(SecretSource::Value(crate::stripe::Secret::new(value.trim()))),
            (None, None) => Err(SettingsError {
                variable: arn_variable,
                problem: format!(
                    "not set: the ARN of the secret in Secrets Manager (or, on the local stack only, the value \
                     itself in {value_variable})"
                ),
            }),
        }
    }
}

pub const AUTO_TOPUP_DAILY_CAP_VARIABLE: &str = "AUTO_TOPUP_DAILY_CAP";
/// The most `AUTO_TOPUP_DAILY_CAP` accepts.
pub const MAX_DAILY_TOPUP_CAP: u32 = 100;

/// `AUTO_TOPUP_DAILY_CAP`: auto top-ups per account per UTC day (0..=[`MAX_DAILY_TOPUP_CAP`], 0: none), else
/// [`crate::domain::rules::DEFAULT_DAILY_TOPUP_CAP`]. `consume-credits` enforces it; the client's routes show it,
/// so both are given the same value.
pub fn auto_topup_daily_cap(var: Lookup) -> Result<u32, SettingsError> {
    Vars(var).number(
        AUTO_TOPUP_DAILY_CAP_VARIABLE,
        crate::domain::rules::DEFAULT_DAILY_TOPUP_CAP,
        0..=MAX_DAILY_TOPUP_CAP,
    )
}

pub const RECONCILE_SEGMENTS_VARIABLE: &str = "RECONCILE_SEGMENTS";

/// `reconcile-run`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Parallel Scan segments, `RECONCILE_SEGMENTS` (1..=64), default 4.
    pub segments: i32,
}

impl ReconcileSettings {
    pub fn from_vars(var: Lookup) -> Result<ReconcileSettings, SettingsError> {
        Ok(ReconcileSettings { segments: Vars(var).number(RECONCILE_SEGMENTS_VARIABLE, 4, 1..=64)? })
    }
}

/// The reader each concern parses its variables with.
#[derive(Clone, Copy)]
pub struct Vars<'a>(pub Lookup<'a>);

impl Vars<'_> {
    /// The value as set, empty included (for the one variable where empty means something).
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// The value, `None` when unset or empty (an empty variable takes the default, like an unset one).
    pub fn text(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    /// The value if `accepted`, else an error saying what is (`accepts`); the default when unset.
    pub fn checked(
        &self,
        name: &'static str,
        default: &str,
        accepts: &str,
        accepted: impl Fn(&str) -> bool,
    ) -> Result<String, SettingsError> {
        match self.text(name) {
            None => Ok(default.to_owned()),
            Some(value) if accepted(&value) => Ok(value),
            Some(value) => Err(self.bad(name, &value, accepts)),
        }
    }

    /// A whole number within `range`; the default when unset.
    pub fn number<N>(&self, name: &'static str, default: N, range: RangeInclusive<N>) -> Result<N, SettingsError>
    where
        N: FromStr + PartialOrd + Display,
    {
        let Some(text) = self.text(name) else { return Ok(default) };
        text.trim()
            .parse::<N>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| self.bad(name, &text, &format!("a whole number from {} to {}", range.start(), range.end())))
    }

    /// The error for a value that is not accepted: the variable, the value, what it accepts.
    pub fn bad(&self, name: &'static str, value: &str, accepts: &str) -> SettingsError {
        SettingsError { variable: name, problem: format!("{value:?} is not accepted; expected {accepts}") }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A lookup over `pairs`, as the tests of every concern's settings use it.
    pub(crate) fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    /// Asserts `result` is an error naming `variable` and saying what it accepts (`accepts` is part of it).
    pub(crate) fn assert_refused<T: std::fmt::Debug>(result: Result<T, SettingsError>, variable: &str, accepts: &str) {
        let error = result.expect_err(variable);
        assert_eq!(error.variable, variable);
        let text = error.to_string();
        assert!(text.starts_with(&format!("{variable}: ")) && text.contains(accepts), "{text}");
    }

    #[test]
    fn the_log_level_defaults_to_info_and_takes_lambdas_levels_before_rust_log() {
        let level = |pairs: &[(&str, &str)]| Common::from_vars(&vars(pairs)).map(|c| c.log_level);
        assert_eq!(level(&[]), Ok(LevelFilter::INFO));
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "")]), Ok(LevelFilter::INFO));
        assert_eq!(level(&[("RUST_LOG", "debug")]), Ok(LevelFilter::DEBUG));
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "debug")]), Ok(LevelFilter::WARN));
        assert_eq!(level(&[("AWS_LAMBDA_LOG_LEVEL", "fatal")]), Ok(LevelFilter::ERROR));
        assert_refused(level(&[("AWS_LAMBDA_LOG_LEVEL", "LOUD")]), "AWS_LAMBDA_LOG_LEVEL", "TRACE, DEBUG");
        // A directive list would need EnvFilter (and its regex engine) on the cold start: refused, not ignored.
        assert_refused(level(&[("RUST_LOG", "info,hyper=warn")]), "RUST_LOG", "one plain level");
    }

    #[test]
    fn the_table_name_defaults_to_the_local_stacks_and_must_be_a_table_name() {
        let table = |pairs: &[(&str, &str)]| Common::from_vars(&vars(pairs)).map(|c| c.table_name);
        assert_eq!(table(&[]).unwrap(), "overage-credits");
        assert_eq!(table(&[("TABLE_NAME", "prod-Table_1.x")]).unwrap(), "prod-Table_1.x");
        for bad in ["ab", "has space", "a/b/c", &"t".repeat(256)] {
            assert_refused(table(&[("TABLE_NAME", bad)]), "TABLE_NAME", "a DynamoDB table name");
        }
    }

    #[test]
    fn the_metrics_namespace_defaults_and_must_be_a_cloudwatch_namespace() {
        let namespace = |pairs: &[(&str, &str)]| Common::from_vars(&vars(pairs)).map(|c| c.metrics_namespace);
        assert_eq!(namespace(&[]).unwrap(), DEFAULT_METRICS_NAMESPACE);
        assert_eq!(namespace(&[("METRICS_NAMESPACE", "OverageCredits/prod")]).unwrap(), "OverageCredits/prod");
        for bad in [":aws", "emoji✓", &"n".repeat(256)] {
            assert_refused(namespace(&[("METRICS_NAMESPACE", bad)]), "METRICS_NAMESPACE", "a CloudWatch namespace");
        }
    }

    #[test]
    fn stripe_settings_need_a_secret_and_default_to_stripes_own_api() {
        let read = |pairs: &[(&str, &str)]| StripeSettings::from_vars(&vars(pairs));
        assert_refused(read(&[]), "STRIPE_SECRET_KEY_ARN", "STRIPE_SECRET_KEY");
        assert_refused(read(&[("STRIPE_SECRET_KEY", "  ")]), "STRIPE_SECRET_KEY_ARN", "Secrets Manager");
        let local = read(&[("STRIPE_SECRET_KEY", " sk_test_1 ")]).unwrap();
        assert_eq!(local.api_base, crate::stripe::STRIPE_API_BASE);
        assert!(matches!(&local.secret_key, SecretSource::Value(secret) if secret.expose() == "sk_test_1"));
        assert!(!format!("{local:?}").contains("sk_test"), "never logged");
        // The ARN wins: the template sets it, never the value.
        let deployed = read(&[("STRIPE_SECRET_KEY_ARN", "arn:aws:secretsmanager:x"), ("STRIPE_SECRET_KEY", "v")]);
        let arn = |s: StripeSettings| match s.secret_key {
            SecretSource::SecretsManager { variable, arn } => Some((variable, arn)),
            SecretSource::Value(_) => None,
        };
        assert_eq!(arn(deployed.unwrap()), Some(("STRIPE_SECRET_KEY_ARN", "arn:aws:secretsmanager:x".into())));
        let localstripe = read(&[("STRIPE_SECRET_KEY", "k"), ("STRIPE_API_BASE", "http://127.0.0.1:12111")]);
        assert_eq!(localstripe.unwrap().api_base, "http://127.0.0.1:12111");
        assert_refused(
            read(&[("STRIPE_SECRET_KEY", "k"), ("STRIPE_API_BASE", "127.0.0.1:12111")]),
            "STRIPE_API_BASE",
            "an http:// or https:// URL",
        );
    }

    #[test]
    fn the_webhook_needs_its_signing_secret() {
        let read = |pairs: &[(&str, &str)]| SecretSource::stripe_webhook_secret(&vars(pairs));
        assert_refused(read(&[]), "STRIPE_WEBHOOK_SECRET_ARN", "STRIPE_WEBHOOK_SECRET");
        assert!(matches!(read(&[("STRIPE_WEBHOOK_SECRET", "whsec_1 whsec_2")]), Ok(SecretSource::Value(_))));
        let deployed = read(&[("STRIPE_WEBHOOK_SECRET_ARN", "arn:x")]).unwrap();
        assert!(matches!(deployed, SecretSource::SecretsManager { variable: "STRIPE_WEBHOOK_SECRET_ARN", .. }));
    }

    #[test]
    fn reconcile_segments_default_to_4_within_1_to_64() {
        let segments = |pairs: &[(&str, &str)]| ReconcileSettings::from_vars(&vars(pairs)).map(|s| s.segments);
        assert_eq!(segments(&[]), Ok(4));
        assert_eq!(segments(&[("RECONCILE_SEGMENTS", "16")]), Ok(16));
        for bad in ["0", "65", "four", "-1"] {
            assert_refused(segments(&[("RECONCILE_SEGMENTS", bad)]), "RECONCILE_SEGMENTS", "from 1 to 64");
        }
    }

    #[test]
    fn the_daily_topup_cap_defaults_to_3_within_0_to_100() {
        let cap = |pairs: &[(&str, &str)]| auto_topup_daily_cap(&vars(pairs));
        assert_eq!(cap(&[]), Ok(crate::domain::rules::DEFAULT_DAILY_TOPUP_CAP));
        assert_eq!(cap(&[("AUTO_TOPUP_DAILY_CAP", "0")]), Ok(0));
        assert_eq!(cap(&[("AUTO_TOPUP_DAILY_CAP", "100")]), Ok(100));
        for bad in ["101", "-1", "three", "2.5"] {
            assert_refused(cap(&[("AUTO_TOPUP_DAILY_CAP", bad)]), "AUTO_TOPUP_DAILY_CAP", "from 0 to 100");
        }
    }

    #[test]
    fn a_function_reads_common_and_its_own_part_in_one_call() {
        let var = vars(&[("TABLE_NAME", "t-1"), ("RECONCILE_SEGMENTS", "8")]);
        let settings = from_vars(&var, ReconcileSettings::from_vars).unwrap();
        assert_eq!((settings.common.table_name.as_str(), settings.function.segments), ("t-1", 8));
        assert_refused(from_vars(&vars(&[("TABLE_NAME", "x")]), nothing_more), "TABLE_NAME", "table name");
        // Only the function's own part: a bad variable of another function's is not read.
        assert!(from_vars(&vars(&[("RECONCILE_SEGMENTS", "0")]), nothing_more).is_ok());
    }
}
