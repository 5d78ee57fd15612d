//! The client's rule changes as sent (`PUT .../alerts`, `PUT .../topups`): each replaces its whole map, so the
//! body is checked whole before anything is written, and the first thing wrong is named by its field path
//! (`thresholds.gold`, `rules.audience.buy`).

use serde_json::Value;

use super::{AlertThresholds, RuleError, TopupRule, TopupRules, validate_thresholds, validate_topups};
use crate::domain::CreditType;

/// `{"thresholds": {"audience": 100, ...}}`: every type at most once, each a whole number in range; `{}` clears.
pub fn parse_alert_thresholds(body: &Value) -> Result<AlertThresholds, RuleError> {
    let map = the_map(body, "thresholds", "an object of credit type to threshold (`{}` removes them all)")?;
    let mut thresholds = AlertThresholds::new();
    for (name, value) in map {
        let path = format!("thresholds.{name}");
        thresholds.insert(credit_type(&path, name)?, whole_number(&path, value)?);
    }
    validate_thresholds(&thresholds)?;
    Ok(thresholds)
}

/// `{"rules": {"audience": {"below": 50, "buy": 500}, ...}}`: both numbers of every rule, nothing else; `{}` clears.
pub fn parse_topup_rules(body: &Value) -> Result<TopupRules, RuleError> {
    let map =
        the_map(body, "rules", "an object of credit type to `{\"below\": T, \"buy\": N}` (`{}` removes them all)")?;
    let mut rules = TopupRules::new();
    for (name, value) in map {
        let path = format!("rules.{name}");
        let credit_type = credit_type(&path, name)?;
        let rule = value.as_object().ok_or_else(|| invalid(&path, "must be an object `{\"below\": T, \"buy\": N}`"))?;
        if let Some(unknown) = rule.keys().find(|k| *k != "below" && *k != "buy") {
            return Err(invalid(
                &format!("{path}.{unknown}"),
                "is not a field of a top-up rule; send `below` and `buy`",
            ));
        }
        let field = |name: &str| {
            let path = format!("{path}.{name}");
            rule.get(name).ok_or_else(|| invalid(&path, "is required")).and_then(|v| whole_number(&path, v))
        };
        rules.insert(credit_type, TopupRule { below: field("below")?, buy: field("buy")? });
    }
    validate_topups(&rules)?;
    Ok(rules)
}

/// The body's one field `name`, an object.
fn the_map<'a>(body: &'a Value, name: &str, what: &str) -> Result<&'a serde_json::Map<String, Value>, RuleError> {
    let object = body.as_object().ok_or_else(|| invalid("body", &format!("must be a JSON object with `{name}`")))?;
    if let Some(unknown) = object.keys().find(|k| k.as_str() != name) {
        return Err(invalid(unknown, &format!("is not a field of this body; send only `{name}`")));
    }
    let value = object.get(name).ok_or_else(|| invalid(name, "is required"))?;
    value.as_object().ok_or_else(|| invalid(name, &format!("must be {what}")))
}

fn credit_type(path: &str, name: &str) -> Result<CreditType, RuleError> {
    CreditType::parse(name).ok_or_else(|| {
        let known: Vec<&str> = CreditType::ALL.iter().map(|t| t.as_str()).collect();
        invalid(path, &format!("is not a credit type (one of {})", known.join(", ")))
    })
}

/// A whole number as JSON Schema counts one (`8`, `8.0` and `8e0` alike); the range is checked by the rules.
fn whole_number(path: &str, value: &Value) -> Result<u64, RuleError> {
    let Value::Number(number) = value else {
        return Err(invalid(path, "must be a whole number"));
    };
    match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => Ok(n),
        // Negative, or beyond u64 (`as` saturates): out of every rule's range, refused by the range check.
        (None, Some(f)) if f.is_finite() && f.fract() == 0.0 => Ok(if f < 0.0 { 0 } else { f as u64 }),
        _ => Err(invalid(path, "must be a whole number")),
    }
}

fn invalid(field: &str, message: &str) -> RuleError {
    RuleError { field: field.to_owned(), message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::ledger::MAX_QUANTITY;

    #[test]
    fn thresholds_replace_the_whole_map_and_name_what_is_wrong() {
        let parsed = parse_alert_thresholds(&json!({"thresholds": {"audience": 100, "pixel": 5.0}})).unwrap();
        assert_eq!(parsed, AlertThresholds::from([(CreditType::Audience, 100), (CreditType::Pixel, 5)]));
        assert!(parse_alert_thresholds(&json!({"thresholds": {}})).unwrap().is_empty());
        let field = |body| parse_alert_thresholds(&body).unwrap_err().field;
        assert_eq!(field(json!([])), "body");
        assert_eq!(field(json!({})), "thresholds");
        assert_eq!(field(json!({"thresholds": null})), "thresholds");
        assert_eq!(field(json!({"thresholds": {}, "rules": {}})), "rules");
        assert_eq!(field(json!({"thresholds": {"gold": 1}})), "thresholds.gold");
        assert_eq!(field(json!({"thresholds": {"audience": 1.5}})), "thresholds.audience");
        assert_eq!(field(json!({"thresholds": {"audience": "100"}})), "thresholds.audience");
        assert_eq!(field(json!({"thresholds": {"audience": 0}})), "thresholds.audience");
        assert_eq!(field(json!({"thresholds": {"audience": -1}})), "thresholds.audience");
        assert_eq!(field(json!({"thresholds": {"pixel": MAX_QUANTITY + 1}})), "thresholds.pixel");
        assert_eq!(field(json!({"thresholds": {"pixel": 1e30}})), "thresholds.pixel");
    }

    #[test]
    fn topup_rules_need_both_numbers_and_nothing_else() {
        let parsed = parse_topup_rules(&json!({"rules": {"audience": {"below": 50, "buy": 500}}})).unwrap();
        assert_eq!(parsed, TopupRules::from([(CreditType::Audience, TopupRule { below: 50, buy: 500 })]));
        assert!(parse_topup_rules(&json!({"rules": {}})).unwrap().is_empty());
        let field = |body| parse_topup_rules(&body).unwrap_err().field;
        assert_eq!(field(json!({"thresholds": {}})), "thresholds");
        assert_eq!(field(json!({"rules": {"gold": {"below": 1, "buy": 1}}})), "rules.gold");
        assert_eq!(field(json!({"rules": {"audience": 5}})), "rules.audience");
        assert_eq!(field(json!({"rules": {"audience": {"below": 5}}})), "rules.audience.buy");
        assert_eq!(field(json!({"rules": {"audience": {"below": 5, "buy": 1, "max": 3}}})), "rules.audience.max");
        assert_eq!(field(json!({"rules": {"audience": {"below": 0, "buy": 1}}})), "rules.audience.below");
        assert_eq!(field(json!({"rules": {"audience": {"below": 1, "buy": 2.5}}})), "rules.audience.buy");
    }
}
