//! Captures the EMF lines `shared::metrics` writes and checks each is valid Embedded Metric Format with only
//! the allowed dimensions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The metrics destination of this test process: attached once (the sink is global), shared by its tests.
pub struct MetricsCapture {
    buffer: Buffer,
}

static CAPTURE: OnceLock<MetricsCapture> = OnceLock::new();

impl MetricsCapture {
    pub fn get() -> &'static MetricsCapture {
        CAPTURE.get_or_init(|| {
            let buffer = Buffer::default();
            // Kept attached for the life of the test process.
            std::mem::forget(shared::metrics::attach(shared::metrics::DEFAULT_NAMESPACE, buffer.clone()));
            MetricsCapture { buffer }
        })
    }

    /// Every line written so far, parsed and validated.
    pub fn entries(&self) -> Vec<EmfEntry> {
        let text = String::from_utf8(self.buffer.0.lock().unwrap().clone()).expect("EMF output is UTF-8");
        text.lines().filter(|l| !l.trim().is_empty()).map(EmfEntry::parse).collect()
    }
}

/// One EMF line: its namespace, dimension sets, metrics (name → (value, unit)) and the raw object.
#[derive(Debug, Clone)]
pub struct EmfEntry {
    pub namespace: String,
    pub dimension_sets: Vec<Vec<String>>,
    pub metrics: BTreeMap<String, (f64, Option<String>)>,
    pub raw: Value,
}

/// CloudWatch's EMF units.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

impl EmfEntry {
    /// Parses one line and panics unless it is valid EMF (the specification's required members and types)
    /// whose dimensions are all in `shared::metrics::DIMENSIONS`.
    pub fn parse(line: &str) -> EmfEntry {
        let raw: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let root = raw.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let aws = root.get("_aws").and_then(Value::as_object).unwrap_or_else(|| panic!("no _aws: {line}"));
        let timestamp = aws.get("Timestamp").and_then(Value::as_u64).unwrap_or_else(|| panic!("Timestamp: {line}"));
        assert!(timestamp > 1_600_000_000_000, "Timestamp must be epoch milliseconds: {line}");
        let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).expect("CloudWatchMetrics array");
        assert_eq!(directives.len(), 1, "one metric directive per line: {line}");
        let directive = &directives[0];
        let namespace = directive["Namespace"].as_str().expect("Namespace").to_owned();
        assert!(!namespace.is_empty() && namespace.len() <= 255, "namespace {namespace:?}");
        let allowed: BTreeSet<&str> = shared::metrics::DIMENSIONS.iter().copied().collect();
        let mut dimension_sets = Vec::new();
        for set in directive["Dimensions"].as_array().expect("Dimensions array") {
            let set: Vec<String> = set
                .as_array()
                .expect("a dimension set is an array")
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect();
            assert!(set.len() <= 30, "at most 30 dimensions per set");
            for name in &set {
                assert!(
                    allowed.contains(name.as_str()),
                    "dimension {name:?} is not allowed (only {allowed:?}): {line}"
                );
                let value = root.get(name).and_then(Value::as_str);
                assert!(
                    value.is_some_and(|v| !v.is_empty() && v.len() <= 1024),
                    "dimension {name} needs a value: {line}"
                );
            }
            dimension_sets.push(set);
        }
        assert!(!dimension_sets.is_empty(), "at least one dimension set: {line}");
        let mut metrics = BTreeMap::new();
        for definition in directive["Metrics"].as_array().expect("Metrics array") {
            let name = definition["Name"].as_str().expect("metric Name").to_owned();
            let unit = definition.get("Unit").map(|u| u.as_str().expect("Unit is a string").to_owned());
            if let Some(unit) = &unit {
                assert!(UNITS.contains(&unit.as_str()), "unit {unit:?} of {name}");
            }
            let value =
                root.get(&name).and_then(Value::as_f64).unwrap_or_else(|| panic!("metric {name} value: {line}"));
            assert!(metrics.insert(name.clone(), (value, unit)).is_none(), "metric {name} twice");
        }
        assert!(!metrics.is_empty() && metrics.len() <= 100, "1..=100 metrics per directive: {line}");
        EmfEntry { namespace, dimension_sets, metrics, raw }
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).unwrap_or_else(|| panic!("no metric {name} in {}", self.raw)).0
    }

    pub fn has(&self, name: &str) -> bool {
        self.metrics.contains_key(name)
    }

    /// A string member (a dimension's or a property's value).
    pub fn property(&self, name: &str) -> Option<&str> {
        self.raw.get(name).and_then(Value::as_str)
    }
}
