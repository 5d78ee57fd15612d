//! A real localstripe (PyPI: a stateful fake Stripe server) for the tests, started on `127.0.0.1:<free port>`
//! through `scripts/localstripe-serve.py` (loopback only, state in memory only), stopped when dropped.
//!
//! `scripts/install-tools.sh` installs it in its own virtualenv (`$OVERAGE_TOOLS_DIR/localstripe-venv`, pinned
//! in `scripts/requirements-localstripe.txt`); `LOCALSTRIPE_PYTHON` overrides the interpreter.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shared::stripe::{Secret, StripeClient, StripeSettings};

/// A card that charges (Stripe's test Visa).
pub const GOOD_CARD: &str = "pm_card_visa";
/// A card that attaches, then declines every charge (`card_declined`).
pub const DECLINING_CARD: &str = "4000000000000341";

pub struct LocalStripe {
    child: Child,
    pub base_url: String,
    client: StripeClient,
}

fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("LOCALSTRIPE_PYTHON") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("OVERAGE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/overage-credits/tools")
    });
    tools.join("localstripe-venv/bin/python")
}

impl LocalStripe {
    /// Starts a fresh server and waits until it accepts connections.
    pub async fn start() -> LocalStripe {
        let python = python();
        if !python.exists() {
            panic!(
                "localstripe is not installed ({} is missing): run `source scripts/install-tools.sh` first \
                 (it installs the pinned localstripe into its own virtualenv), or set LOCALSTRIPE_PYTHON",
                python.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let script = crate::repo_root().join("scripts/localstripe-serve.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let found = lines.by_ref().any(|l| l.is_ok_and(|l| l.starts_with("localstripe listening")));
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            found
        });
        match tokio::time::timeout(Duration::from_secs(30), ready).await {
            Ok(Ok(true)) => {}
            _ => {
                let _ = child.kill();
                panic!("localstripe did not start on 127.0.0.1:{port}");
            }
        }
        let base_url = format!("http://127.0.0.1:{port}");
        let client = StripeClient::new(StripeSettings {
            base_url: base_url.clone(),
            secret_key: Secret::new("sk_test_local"),
            timeout: Duration::from_secs(10),
        });
        LocalStripe { child, base_url, client }
    }

    /// A client of this server, as `collect-payments` builds it.
    pub fn client(&self) -> StripeClient {
        self.client.clone()
    }

    async fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let (status, body) =
            self.client.call(method, path, form).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
        body
    }

    /// A customer whose default payment method is `card` (a `pm_card_*` test id or a card number).
    pub async fn customer_with_card(&self, name: &str, card: &str) -> String {
        let customer = self.call("POST", "/v1/customers", &[("name", name)]).await["id"].as_str().unwrap().to_owned();
        self.set_default_card(&customer, card).await;
        customer
    }

    /// Attaches `card` and makes it the customer's default (`invoice_settings.default_payment_method`).
    pub async fn set_default_card(&self, customer: &str, card: &str) {
        let method = if card.starts_with("pm_") {
            card.to_owned()
        } else {
            let created = self
                .call(
                    "POST",
                    "/v1/payment_methods",
                    &[
                        ("type", "card"),
                        ("card[number]", card),
                        ("card[exp_month]", "12"),
                        ("card[exp_year]", "2030"),
                        ("card[cvc]", "123"),
                    ],
                )
                .await;
            created["id"].as_str().unwrap().to_owned()
        };
        let attached =
            self.call("POST", &format!("/v1/payment_methods/{method}/attach"), &[("customer", customer)]).await;
        let attached = attached["id"].as_str().unwrap().to_owned();
        self.call(
            "POST",
            &format!("/v1/customers/{customer}"),
            &[("invoice_settings[default_payment_method]", &attached)],
        )
        .await;
    }

    /// Every PaymentIntent the server holds.
    pub async fn payment_intents(&self) -> Vec<Value> {
        let list = self.call("GET", "/v1/payment_intents?limit=10000", &[]).await;
        list["data"].as_array().cloned().unwrap_or_default()
    }

    /// Events of one type, newest first, as the server would deliver them.
    pub async fn events(&self, kind: &str) -> Vec<Value> {
        let list = self.call("GET", &format!("/v1/events?type={kind}&limit=1000"), &[]).await;
        list["data"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
