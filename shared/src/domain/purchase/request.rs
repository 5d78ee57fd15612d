//! The purchase request a client sends, validated before anything is read or written: quantities per credit
//! type and the total the client saw.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::domain::CreditType;

/// Largest quantity of one credit type in one purchase: a typo guard, not a business cap.
pub const MAX_QUANTITY: u64 = 1_000_000;

/// Quantities per credit type, validated; types not mentioned are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantities(BTreeMap<CreditType, u64>);

impl Quantities {
    pub fn get(&self, credit_type: CreditType) -> u64 {
        self.0.get(&credit_type).copied().unwrap_or(0)
    }

    /// The non-zero entries in dashboard order.
    pub fn non_zero(&self) -> impl Iterator<Item = (CreditType, u64)> + '_ {
        CreditType::ALL.into_iter().map(|t| (t, self.get(t))).filter(|(_, q)| *q > 0)
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (CreditType, u64)>) -> Quantities {
        Quantities(pairs.into_iter().collect())
    }
}

/// A validated purchase request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    pub quantities: Quantities,
    /// The total the client saw; when it no longer matches, the client must confirm again.
    pub expected_total: Option<Decimal>,
}

impl PurchaseRequest {
    /// A canonical rendering, so the same request always hashes the same whatever its JSON spacing or key order.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for t in CreditType::ALL {
            out.push_str(&format!("{}={};", t, self.quantities.get(t)));
        }
        if let Some(total) = self.expected_total {
            out.push_str(&format!("expectedTotal={}", total.normalize()));
        }
        out
    }
}

/// Why a purchase request was refused before anything was read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NotAnObject,
    UnknownField(String),
    MissingField(&'static str),
    UnknownCreditType(String),
    InvalidQuantity {
        credit_type: String,
        reason: String,
    },
    EmptyPurchase,
    InvalidExpectedTotal(String),
    /// The line's subtotal would round to less than a cent (at price or at cost), so it would be free.
    LineBelowMinimum {
        credit_type: CreditType,
        minimum_quantity: Option<u64>,
    },
}

impl RequestError {
    /// The machine-readable code of the problem response.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NotAnObject => "invalid_body",
            RequestError::UnknownField(_) => "unknown_field",
            RequestError::MissingField(_) => "missing_field",
            RequestError::UnknownCreditType(_) => "unknown_credit_type",
            RequestError::InvalidQuantity { .. } => "invalid_quantity",
            RequestError::EmptyPurchase => "empty_purchase",
            RequestError::InvalidExpectedTotal(_) => "invalid_expected_total",
            RequestError::LineBelowMinimum { .. } => "line_below_minimum",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            RequestError::NotAnObject => "The body must be a JSON object.".into(),
            RequestError::UnknownField(f) => format!("Unknown field `{f}`; allowed: `quantities`, `expectedTotal`."),
            RequestError::MissingField(f) => format!("The field `{f}` is required."),
            RequestError::UnknownCreditType(t) => {
                format!("Unknown credit type `{t}`; allowed: audience, enrichment, pixel, custom_model.")
            }
            RequestError::InvalidQuantity { credit_type, reason } => {
                format!("Quantity of `{credit_type}` {reason}.")
            }
            RequestError::EmptyPurchase => "At least one quantity must be above zero.".into(),
            RequestError::LineBelowMinimum { credit_type, minimum_quantity: Some(minimum) } => {
                format!("A line of `{credit_type}` must come to at least 0.01: buy at least {minimum} credits of it.")
            }
            RequestError::LineBelowMinimum { credit_type, minimum_quantity: None } => {
                format!("`{credit_type}` cannot be bought at its current price.")
            }
            RequestError::InvalidExpectedTotal(why) => format!(
                "`expectedTotal` must be a decimal string with at most two decimal places, like \"300.00\": {why}."
            ),
        }
    }
}

/// Validates a purchase body already parsed as JSON. Quantities must be whole numbers, as JSON Schema counts them:
/// `8`, `8.0` and `8e0` are the same quantity; `8.5` is refused.
pub fn parse_purchase_request(body: &serde_json::Value) -> Result<PurchaseRequest, RequestError> {
    let object = body.as_object().ok_or(RequestError::NotAnObject)?;
    if let Some(unknown) = object.keys().find(|k| *k != "quantities" && *k != "expectedTotal") {
        return Err(RequestError::UnknownField(unknown.clone()));
    }
    let raw_quantities =
        object.get("quantities").ok_or(RequestError::MissingField("quantities"))?.as_object().ok_or_else(|| {
            RequestError::InvalidQuantity {
                credit_type: "quantities".into(),
                reason: "must be an object of credit type to whole number".into(),
            }
        })?;

    let mut quantities = BTreeMap::new();
    for (name, value) in raw_quantities {
        let credit_type = CreditType::parse(name).ok_or_else(|| RequestError::UnknownCreditType(name.clone()))?;
        let invalid =
            |reason: &str| RequestError::InvalidQuantity { credit_type: name.clone(), reason: reason.to_owned() };
        let quantity = match value {
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(q), _, _) => q,
                (None, Some(_), _) => return Err(invalid("must not be negative")),
                // A whole number written with a fraction or an exponent (`8663.0`, `1e3`) is an integer to JSON
                // Schema and to most JSON parsers, so it is one here too; the range check below still applies.
                (None, None, Some(f)) if f.is_finite() && f.fract() == 0.0 => {
                    if f < 0.0 {
                        return Err(invalid("must not be negative"));
                    }
                    if f > MAX_QUANTITY as f64 {
                        return Err(invalid(&format!("must be at most {MAX_QUANTITY}")));
                    }
                    f as u64
                }
                _ => return Err(invalid("must be a whole number")),
            },
            serde_json::Value::Null => return Err(invalid("must be a number, not null")),
            serde_json::Value::String(_) => return Err(invalid("must be a number, not a string")),
            _ => return Err(invalid("must be a whole number")),
        };
        if quantity > MAX_QUANTITY {
            return Err(invalid(&format!("must be at most {MAX_QUANTITY}")));
        }
        quantities.insert(credit_type, quantity);
    }
    let quantities = Quantities(quantities);
    if quantities.non_zero().next().is_none() {
        return Err(RequestError::EmptyPurchase);
    }

    let expected_total = match object.get("expectedTotal") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(parse_money(s).map_err(RequestError::InvalidExpectedTotal)?),
        Some(other) => {
            return Err(RequestError::InvalidExpectedTotal(format!("got {}", json_kind(other))));
        }
    };
    Ok(PurchaseRequest { quantities, expected_total })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parses a non-negative amount of money written as plain digits with at most two decimals.
pub fn parse_money(text: &str) -> Result<Decimal, String> {
    let well_formed = {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        !whole.is_empty()
            && whole.len() <= 15
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (!text.contains('.') || (!fraction.is_empty() && fraction.len() <= 2))
            && fraction.bytes().all(|b| b.is_ascii_digit())
    };
    if !well_formed {
        return Err(format!("got {text:?}"));
    }
    text.parse::<Decimal>().map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::tests::d;
    use serde_json::json;

    #[test]
    fn valid_request_parses() {
        let r = parse_purchase_request(&json!({"quantities": {"audience": 10, "pixel": 5}, "expectedTotal": "300.00"}))
            .unwrap();
        assert_eq!(r.quantities.get(CreditType::Audience), 10);
        assert_eq!(r.quantities.get(CreditType::Pixel), 5);
        assert_eq!(r.expected_total, Some(d("300.00")));
    }

    #[test]
    fn every_bad_request_has_its_code() {
        let cases = [
            (json!([1]), "invalid_body"),
            (json!("x"), "invalid_body"),
            (json!({"quantities": {"audience": 1}, "extra": 1}), "unknown_field"),
            (json!({}), "missing_field"),
            (json!({"quantities": [1]}), "invalid_quantity"),
            (json!({"quantities": {"gold": 1}}), "unknown_credit_type"),
            (json!({"quantities": {"audience": -1}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 1.5}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 0.5}}), "invalid_quantity"),
            (json!({"quantities": {"audience": -1.0}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 1_000_001.0}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 1e300}}), "invalid_quantity"),
            (json!({"quantities": {"audience": "1"}}), "invalid_quantity"),
            (json!({"quantities": {"audience": null}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 1_000_001}}), "invalid_quantity"),
            (json!({"quantities": {"audience": 0, "pixel": 0}}), "empty_purchase"),
            (json!({"quantities": {}}), "empty_purchase"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": 3}), "invalid_expected_total"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": "abc"}), "invalid_expected_total"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": "1.005"}), "invalid_expected_total"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": "-1.00"}), "invalid_expected_total"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": "1e3"}), "invalid_expected_total"),
            (json!({"quantities": {"audience": 1}, "expectedTotal": null}), "invalid_expected_total"),
        ];
        for (body, code) in cases {
            let err = parse_purchase_request(&body).expect_err(&body.to_string());
            assert_eq!(err.code(), code, "{body}");
        }
        assert!(parse_purchase_request(&json!({"quantities": {"audience": 1_000_000}})).is_ok());
    }

    #[test]
    fn whole_numbers_with_a_fraction_or_exponent_are_quantities() {
        // JSON Schema's `integer` (the contract's `Quantity`) counts 8663.0 and 1e3 as integers.
        let parsed = |text: &str| parse_purchase_request(&serde_json::from_str(text).unwrap());
        let r = parsed(r#"{"quantities": {"pixel": 8663.0, "audience": 1e3, "enrichment": 0.0}}"#).unwrap();
        assert_eq!(r.quantities.get(CreditType::Pixel), 8663);
        assert_eq!(r.quantities.get(CreditType::Audience), 1000);
        assert_eq!(r.quantities.get(CreditType::Enrichment), 0);
        assert_eq!(r.canonical(), parsed(r#"{"quantities": {"pixel": 8663, "audience": 1000}}"#).unwrap().canonical());
        assert!(parsed(r#"{"quantities": {"pixel": 1000000.0}}"#).is_ok());
        assert!(parsed(r#"{"quantities": {"pixel": -0.0, "audience": 1}}"#).is_ok());
        for text in [r#"{"quantities": {"pixel": 1.5}}"#, r#"{"quantities": {"pixel": 1e-1}}"#] {
            assert_eq!(parsed(text).unwrap_err().code(), "invalid_quantity", "{text}");
        }
        for text in [r#"{"quantities": {"pixel": 1000001.0}}"#, r#"{"quantities": {"pixel": 1e7}}"#] {
            assert_eq!(parsed(text).unwrap_err().code(), "invalid_quantity", "{text}");
        }
        assert_eq!(parsed(r#"{"quantities": {"pixel": -2.0}}"#).unwrap_err().code(), "invalid_quantity");
    }

    #[test]
    fn canonical_form_ignores_key_order_and_zero_entries() {
        let a = parse_purchase_request(&json!({"quantities": {"audience": 1, "pixel": 2}})).unwrap();
        let b = parse_purchase_request(&json!({"quantities": {"pixel": 2, "audience": 1, "enrichment": 0}})).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = parse_purchase_request(&json!({"quantities": {"pixel": 3, "audience": 1}})).unwrap();
        assert_ne!(a.canonical(), c.canonical());
    }
}
