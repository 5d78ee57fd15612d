//! Cold-start wiring shared by every function's `main.rs`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use tracing_subscriber::filter::LevelFilter;

use crate::api::App;
use crate::settings::{Common, Lookup, SecretSource, Settings, SettingsError, StripeSettings};
use crate::storage::Store;

/// A function's cold start: reads its settings once ([`Common`] and `function`, its own part, from the
/// environment) and starts logging at their level. A bad setting is logged and returned, so `main` fails the
/// cold start with the variable's name (Lambda reports `Runtime.ExitError`) instead of serving with a default.
pub fn start<T>(function: impl FnOnce(Lookup) -> Result<T, SettingsError>) -> Result<Settings<T>, SettingsError> {
    match crate::settings::from_env(function) {
        Ok(settings) => {
            init_tracing(settings.common.log_level);
            Ok(settings)
        }
        Err(error) => {
            init_tracing(LevelFilter::INFO);
            tracing::error!(variable = error.variable, error = %error, "bad setting; not starting");
            Err(error)
        }
    }
}

/// JSON logs; the Lambda runtime's span (`Lambda runtime invoke`) adds the request id (`requestId`) and, when
/// Lambda sends one, the X-Ray trace id (`xrayTraceId`) to every line written while handling an invocation.
///
/// The level is [`Common::log_level`]. A plain level filter instead of `EnvFilter` keeps the regex engine out
/// of the binary and off the cold start.
fn init_tracing(level: LevelFilter) {
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line already.
        .init();
}

/// The DynamoDB client, configured so an outage becomes an error quickly instead of a hang.
///
/// The endpoint comes from the SDK's own settings, so `AWS_ENDPOINT_URL_DYNAMODB` points it at a local engine.
/// Every call is counted into the current unit of work's metrics (`metrics::CountDynamoCalls`).
///
/// Cold start (README "Cold start"): where Lambda's environment already holds the region and the role's
/// credentials, they are given to aws-config directly, so it builds neither default provider chain (the
/// result is the same: both chains look at the environment first).
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let config = sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&config).interceptor(crate::metrics::CountDynamoCalls).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The region, when the environment also holds credentials (Lambda sets `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` for the function's role).
fn region_with_env_credentials() -> Option<aws_config::Region> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !(set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY")) {
        return None;
    }
    std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()).map(aws_config::Region::new)
}

/// The SDK's own HTTPS connector (hyper, rustls with aws-lc: its connect timeout, error classification and
/// connection poisoning for retries), trusting only the roots AWS service endpoints chain to
/// ([`aws_service_roots`], from the Mozilla set compiled into the binary by `webpki-root-certs`) instead of the
/// system's certificate files.
///
/// Built once, here (on the background task of [`Deferred`]), and handed to every operation: the SDK's default
/// client would build its connector twice (once when the client is built, once on the first request, the latter
/// on the request's path) and parse the roots each time. Every operation uses the same settings
/// ([`timeout_config`]; none overrides it), so one connector serves them all.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    // The SDK's trust store takes PEM only.
    let mut pem = String::with_capacity(AWS_SERVICE_ROOT_NAMES.len() * 2048);
    for cert in aws_service_roots() {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert));
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem.into_bytes()))
        .build()
        .expect("a valid TLS context");
    let mut settings = HttpConnectorSettings::builder();
    if let Some(connect) = timeout_config().connect_timeout() {
        settings = settings.connect_timeout(connect);
    }
    let mut connector = aws_smithy_http_client::Connector::builder().connector_settings(settings.build());
    connector.set_sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep());
    let connector = connector
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .tls_context(context)
        .build();
    SharedHttpClient::new(Prebuilt(SharedHttpConnector::new(connector)))
}

/// The roots of Amazon Trust Services, which issues the certificates of AWS service endpoints (DynamoDB's
/// among them): Amazon Root CA 1–4 and the Starfield root that cross-signs them.
const AWS_SERVICE_ROOT_NAMES: [&str; 5] = [
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

/// The compiled-in Mozilla roots (DER) whose name is one of [`AWS_SERVICE_ROOT_NAMES`].
///
/// Why not all ~150: the functions' one HTTPS peer is DynamoDB (credentials come from Lambda's environment, no
/// STS call), and parsing every root took a millisecond of the first request's wait on a cold start; five
/// roots also trust fewer issuers. A root is self-signed, so its name is in its DER as a plain string.
fn aws_service_roots() -> impl Iterator<Item = &'static [u8]> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|cert| cert.as_ref())
        .filter(|der| AWS_SERVICE_ROOT_NAMES.iter().any(|name| names(der, name)))
}

/// Whether a certificate's DER holds `name`. memchr's substring search: a naive `windows().any()` over the
/// ~150 roots measured ~2 ms on the cold start, more than parsing them all.
fn names(der: &[u8], name: &str) -> bool {
    memchr::memmem::find(der, name.as_bytes()).is_some()
}

/// An HTTP client whose one connector is already built.
#[derive(Debug)]
struct Prebuilt(SharedHttpConnector);

impl HttpClient for Prebuilt {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        self.0.clone()
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some(std::borrow::Cow::Borrowed("1.x"))))
    }
}

/// Short timeouts: a DynamoDB call that hangs fails fast enough for the request budget to answer a 503.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_millis(1500))
        .operation_timeout(Duration::from_secs(3))
        .build()
}

/// The SDK's standard retries (throttling, 5xx, transient network errors), three attempts in all.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(25))
}

/// The table the command-line tools (seeds, reconcile) use: `TABLE_NAME`, read as the functions read it.
pub fn table_name() -> Result<String, SettingsError> {
    crate::settings::table_name(&crate::settings::env_var)
}

/// The table's `Store`, built once per Lambda instance.
pub async fn store(common: &Common) -> Store {
    Store::new(dynamodb_client().await, common.table_name.clone())
}

/// [`store`], started now on the runtime's worker threads while the caller goes on (see [`Deferred`]).
pub fn store_in_background(common: &Common) -> Deferred<Store> {
    let common = common.clone();
    Deferred::spawn(async move { store(&common).await })
}

/// `consume-credits`' state ([`crate::consumption::Consumer`]: the store and what the container remembers of
/// accounts and prices), started now while the caller goes on (see [`Deferred`]).
pub fn consumer_in_background(
    settings: Settings<crate::consumption::ConsumptionSettings>,
) -> Deferred<crate::consumption::Consumer> {
    Deferred::spawn(async move { crate::consumption::Consumer::new(store(&settings.common).await, settings.function) })
}

/// The handlers' shared state ([`App`]), started now while the caller goes on (see [`Deferred`]). The settings
/// were read by [`start`]: a missing or bad one (`CURSOR_SIGNING_KEY` of a function serving lists) already
/// stopped the cold start.
pub fn app_in_background(settings: Settings<crate::api::Settings>) -> Deferred<App> {
    Deferred::spawn(async move { App::new(store(&settings.common).await, settings.function) })
}

/// The SDK configuration every client here is built from: our timeouts, retries and HTTPS connector, and
/// where Lambda's environment holds them, its region and the role's credentials given directly.
pub(crate) async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .http_client(https_client());
    if let Some(region) = region_with_env_credentials() {
        loader = loader
            .region(region)
            .credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    }
    loader.load().await
}

/// A secret the function reads once at cold start: from AWS Secrets Manager by its ARN, else (the local stack)
/// the value itself. Never logged.
pub async fn secret(source: &SecretSource) -> crate::stripe::Secret {
    match source {
        SecretSource::Value(value) => value.clone(),
        SecretSource::SecretsManager { variable, arn } => {
            let client = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
            let value = client.get_secret_value().secret_id(arn).send().await.unwrap_or_else(|e| {
                panic!(
                    "{variable}: reading the secret failed: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            });
            let text = value.secret_string().unwrap_or_else(|| panic!("{variable}: the secret has no string value"));
            crate::stripe::Secret::new(text.trim())
        }
    }
}

/// `collect-payments`' own settings: the collection's and Stripe's.
pub fn collector_settings(var: Lookup) -> Result<(crate::collection::CollectSettings, StripeSettings), SettingsError> {
    Ok((crate::collection::CollectSettings::from_vars(var)?, StripeSettings::from_vars(var)?))
}

/// `collect-payments`' state: the table, the Stripe client with the secret key, the collection settings.
pub async fn collector(
    settings: Settings<(crate::collection::CollectSettings, StripeSettings)>,
) -> crate::collection::Collector {
    let (collect, stripe) = settings.function;
    let (store, key) = tokio::join!(store(&settings.common), secret(&stripe.secret_key));
    let stripe = crate::stripe::StripeClient::new(crate::stripe::StripeSettings {
        base_url: stripe.api_base,
        secret_key: key,
        timeout: Duration::from_secs(20),
    });
    crate::collection::Collector { store, stripe, settings: collect }
}

/// `stripe-webhook`'s state: the table and the endpoint's signing secrets (whitespace-separated in the secret
/// while one is being rolled).
pub async fn webhook(settings: Settings<SecretSource>) -> crate::webhook::WebhookApp {
    let (store, secret) = tokio::join!(store(&settings.common), secret(&settings.function));
    let secrets = secret.expose().split_whitespace().map(crate::stripe::Secret::new).collect();
    crate::webhook::WebhookApp { store, secrets }
}

/// A value being built by a task started at once; [`Deferred::get`] waits for it the first time.
///
/// A function's `main` starts building its DynamoDB client this way and goes straight on to the Lambda runtime,
/// which polls for the first event while the client is built on another thread; the handler's first call waits
/// for what is left of it. The handlers themselves still take a plain `&App` / `&Store`.
pub struct Deferred<T> {
    value: tokio::sync::OnceCell<T>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<T>>>,
}

impl<T: Send + 'static> Deferred<T> {
    /// Starts `build` as a task on the current Tokio runtime.
    pub fn spawn(build: impl Future<Output = T> + Send + 'static) -> Deferred<T> {
        Deferred { value: tokio::sync::OnceCell::new(), task: tokio::sync::Mutex::new(Some(tokio::spawn(build))) }
    }

    /// Already built (tests, tools).
    pub fn ready(value: T) -> Deferred<T> {
        Deferred { value: tokio::sync::OnceCell::new_with(Some(value)), task: tokio::sync::Mutex::new(None) }
    }

    /// The value, once built. A build that panicked panics here too (as it would have in `main`).
    pub async fn get(&self) -> &T {
        self.value
            .get_or_init(|| async {
                let mut task = self.task.lock().await;
                // Awaited by reference: a caller dropped half way leaves the task for the next one.
                let handle = task.as_mut().expect("a Deferred is either ready or has its task");
                match handle.await {
                    Ok(value) => value,
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deferred_waits_for_its_task_once_and_keeps_the_value() {
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = built.clone();
        let deferred = Deferred::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            7
        });
        let (a, b) = tokio::join!(deferred.get(), deferred.get());
        assert_eq!((*a, *b), (7, 7));
        assert_eq!(*deferred.get().await, 7);
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(*Deferred::ready("ready").get().await, "ready");
    }

    #[test]
    fn the_client_trusts_exactly_the_amazon_trust_services_roots() {
        let roots: Vec<_> = aws_service_roots().collect();
        // Each name picks exactly one certificate ("Amazon Root CA 1" is not a prefix of another root's name).
        for name in AWS_SERVICE_ROOT_NAMES {
            let matching = roots.iter().filter(|der| names(der, name)).count();
            assert_eq!(matching, 1, "{name}: {matching} compiled-in roots");
        }
        assert_eq!(roots.len(), AWS_SERVICE_ROOT_NAMES.len());
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100, "the full set is still compiled in");
        // And the SDK accepts them as its trust store.
        let _ = https_client();
    }
}
