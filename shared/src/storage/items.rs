//! Items to and from attribute values: the one set of helpers every storage file decodes and encodes with.
//!
//! Records that are plain serde structs (purchases, pricing) go through serde_dynamo. Items whose numbers are
//! exact decimals summed by `ADD` (statements, balances) are read with [`Attributes`]: serde_dynamo hands a
//! number to serde as an `f64`, which would round money.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::keys;
use crate::domain::billing::{CollectionAttempt, Statement, StatementKind, StatementLine};
use crate::domain::credit::CreditLine;
use crate::domain::rules::{AlertThresholds, ConsumptionRules, TopupRule, TopupRules, TopupsOnDay};
use crate::domain::{Account, Balances, CreditType, Rate, RateOverride, round_to_cents};
use crate::table::{PARTITION_KEY, SORT_KEY};

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A serde struct from an item (serde_dynamo), with the item's kind in the error.
pub fn from_item<T: DeserializeOwned>(what: &str, item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Internal(format!("{what} item: {e}")))
}

/// A serde struct as an item (without its key attributes).
pub fn to_item<T: Serialize>(what: &str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Internal(format!("serialising a {what}: {e}")))
}

/// Reading single attributes of an item, strictly: a missing or mistyped attribute is a data error.
pub trait Attributes {
    fn string(&self, name: &str) -> Result<String, StoreError>;
    fn optional_string(&self, name: &str) -> Option<String>;
    /// A number read from its decimal text, never through a float; `None` when absent.
    fn decimal(&self, name: &str) -> Result<Option<Decimal>, StoreError>;
    /// A whole number that is zero when absent (counters created by `ADD`).
    fn count(&self, name: &str) -> Result<u64, StoreError>;
    fn string_set(&self, name: &str) -> Result<Vec<String>, StoreError>;
}

impl Attributes for Item {
    fn string(&self, name: &str) -> Result<String, StoreError> {
        self.optional_string(name).ok_or_else(|| self.invalid(name, "is missing or not a string"))
    }

    fn optional_string(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        }
    }

    fn decimal(&self, name: &str) -> Result<Option<Decimal>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => {
                Decimal::from_str_exact(v).map(Some).map_err(|e| self.invalid(name, &format!("{v:?}: {e}")))
            }
            Some(_) => Err(self.invalid(name, "is not a number")),
        }
    }

    fn count(&self, name: &str) -> Result<u64, StoreError> {
        let value = self.decimal(name)?.unwrap_or_default();
        let whole = value.fract().is_zero().then(|| u64::try_from(value).ok()).flatten();
        whole.ok_or_else(|| self.invalid(name, &format!("is not a whole number: {value}")))
    }

    fn string_set(&self, name: &str) -> Result<Vec<String>, StoreError> {
        match self.get(name) {
            Some(AttributeValue::Ss(values)) => Ok(values.clone()),
            _ => Err(self.invalid(name, "is missing or not a string set")),
        }
    }
}

trait Describe {
    fn invalid(&self, name: &str, why: &str) -> StoreError;
}

impl Describe for Item {
    fn invalid(&self, name: &str, why: &str) -> StoreError {
        let key = |attribute: &str| self.optional_string(attribute).unwrap_or_default();
        StoreError::Internal(format!("item {}/{}: {name} {why}", key(PARTITION_KEY), key(SORT_KEY)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultPricingItem {
    pub version: u64,
    pub currency: String,
    pub rates: BTreeMap<CreditType, Rate>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgencyPricingItem {
    pub agency_id: String,
    pub version: u64,
    pub currency: String,
    #[serde(default)]
    pub rates: BTreeMap<CreditType, RateOverride>,
}

pub fn account_from_item(item: &Item) -> Result<Account, StoreError> {
    let mut balances = BTreeMap::new();
    for credit_type in CreditType::ALL {
        balances.insert(credit_type, item.count(keys::balance_attribute(credit_type))?);
    }
    Ok(Account {
        account_id: item.string("accountId")?,
        agency_id: item.string("agencyId")?,
        name: item.optional_string("name"),
        balances: Balances(balances),
        credit_line: credit_line_from_item(item)?,
        held_statement_ids: held_statement_ids(item)?,
        rules: consumption_rules(item)?,
        topups: match item.optional_string(keys::TOPUP_DAY) {
            Some(day) => Some(TopupsOnDay {
                day,
                count: u32::try_from(item.count(keys::TOPUP_COUNT)?)
                    .map_err(|_| item.invalid(keys::TOPUP_COUNT, "is out of range"))?,
            }),
            None => None,
        },
    })
}

/// The account's alert thresholds and top-up rules; none when never set.
pub fn consumption_rules(item: &Item) -> Result<ConsumptionRules, StoreError> {
    let thresholds = match item.get(keys::ALERT_THRESHOLDS) {
        None => AlertThresholds::new(),
        Some(AttributeValue::M(map)) => map
            .iter()
            .map(|(name, value)| Ok((rule_type(item, keys::ALERT_THRESHOLDS, name)?, whole(item, name, value)?)))
            .collect::<Result<_, StoreError>>()?,
        Some(_) => return Err(item.invalid(keys::ALERT_THRESHOLDS, "is not a map")),
    };
    let topups = match item.get(keys::TOPUP_RULES) {
        None => TopupRules::new(),
        Some(AttributeValue::M(map)) => map
            .iter()
            .map(|(name, value)| {
                let credit_type = rule_type(item, keys::TOPUP_RULES, name)?;
                let AttributeValue::M(rule) = value else {
                    return Err(item.invalid(keys::TOPUP_RULES, &format!("{name} is not a map")));
                };
                let field = |field: &str| {
                    rule.get(field)
                        .ok_or_else(|| item.invalid(keys::TOPUP_RULES, &format!("{name}.{field} is missing")))
                        .and_then(|value| whole(item, name, value))
                };
                Ok((credit_type, TopupRule { below: field("below")?, buy: field("buy")? }))
            })
            .collect::<Result<_, StoreError>>()?,
        Some(_) => return Err(item.invalid(keys::TOPUP_RULES, "is not a map")),
    };
    Ok(ConsumptionRules { alert_thresholds: thresholds, topups, version: item.count(keys::RULES_VERSION)? })
}

fn rule_type(item: &Item, attribute: &str, name: &str) -> Result<CreditType, StoreError> {
    CreditType::parse(name).ok_or_else(|| item.invalid(attribute, &format!("names an unknown credit type {name:?}")))
}

fn whole(item: &Item, name: &str, value: &AttributeValue) -> Result<u64, StoreError> {
    match value {
        AttributeValue::N(text) => text.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| item.invalid(name, "is not a whole number"))
}

/// The account's rules as the attribute values [`consumption_rules`] reads (without the version).
pub fn rules_values(rules: &ConsumptionRules) -> (AttributeValue, AttributeValue) {
    let thresholds = rules.alert_thresholds.iter().map(|(t, q)| (t.as_str().to_owned(), n(q))).collect();
    let topups = rules
        .topups
        .iter()
        .map(|(t, rule)| {
            let rule = HashMap::from([("below".to_owned(), n(rule.below)), ("buy".to_owned(), n(rule.buy))]);
            (t.as_str().to_owned(), AttributeValue::M(rule))
        })
        .collect();
    (AttributeValue::M(thresholds), AttributeValue::M(topups))
}

/// The statements holding an account, sorted; absent when nothing is held (DynamoDB keeps no empty sets).
pub fn held_statement_ids(item: &Item) -> Result<Vec<String>, StoreError> {
    let mut ids = if item.contains_key(keys::HELD_STATEMENT_IDS) {
        item.string_set(keys::HELD_STATEMENT_IDS)?
    } else {
        Vec::new()
    };
    ids.sort();
    Ok(ids)
}

/// An account item's balances as stored, signed: a negative balance is read as such (reconcile reports it),
/// where [`account_from_item`] refuses it.
pub fn signed_balances(item: &Item) -> Result<BTreeMap<CreditType, i64>, StoreError> {
    let mut balances = BTreeMap::new();
    for credit_type in CreditType::ALL {
        let name = keys::balance_attribute(credit_type);
        let value = item.decimal(name)?.unwrap_or_default();
        let whole = value.fract().is_zero().then(|| i64::try_from(value).ok()).flatten();
        balances
            .insert(credit_type, whole.ok_or_else(|| item.invalid(name, &format!("is not a whole number: {value}")))?);
    }
    Ok(balances)
}

/// The line on an account or agency line item; `None` if it was never given one.
pub fn credit_line_from_item(item: &Item) -> Result<Option<CreditLine>, StoreError> {
    match (item.decimal(keys::CREDIT_LIMIT)?, item.decimal(keys::AVAILABLE_CREDIT)?) {
        (Some(limit), Some(available)) => Ok(Some(CreditLine { limit, available })),
        _ => Ok(None),
    }
}

/// The attribute naming a statement's owner.
pub fn statement_owner_attribute(kind: StatementKind) -> &'static str {
    match kind {
        StatementKind::Client => "accountId",
        StatementKind::Agency => "agencyId",
    }
}

/// A statement's header item, without its purchase ids (they are in its parts).
pub fn statement_from_item(item: &Item) -> Result<Statement, StoreError> {
    let kind_text = item.string("kind")?;
    let kind = StatementKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Internal(format!("statement kind {kind_text:?}")))?;
    let mut lines = Vec::new();
    for credit_type in CreditType::ALL {
        let (quantity_attribute, amount_attribute) = keys::statement_line_attributes(credit_type);
        let quantity = item.count(quantity_attribute)?;
        let amount = item.decimal(amount_attribute)?.unwrap_or_default();
        if quantity > 0 || !amount.is_zero() {
            lines.push(StatementLine { credit_type, quantity, amount: round_to_cents(amount) });
        }
    }
    Ok(Statement {
        statement_id: item.string("statementId")?,
        kind,
        owner_id: item.string(statement_owner_attribute(kind))?,
        cycle_end: item.string("cycleEnd")?,
        status: item.string("status")?,
        currency: item.string("currency")?,
        lines,
        total: round_to_cents(item.decimal("total")?.unwrap_or_default()),
        purchase_count: item.count("purchaseCount")?,
        amount_paid: round_to_cents(item.decimal("amountPaid")?.unwrap_or_default()),
        amount_due: round_to_cents(match item.decimal("amountDue")? {
            Some(due) => due,
            None => item.decimal("total")?.unwrap_or_default(),
        }),
        due_at: item.optional_string("dueAt"),
        purchase_ids: Vec::new(),
        created_at: item.string("createdAt")?,
        updated_at: item.string("updatedAt")?,
        paid_at: item.optional_string(keys::STATEMENT_PAID_AT),
        collection: collection_attempt(item)?,
    })
}

/// The latest collection attempt kept on the statement item (`storage::collection` writes it).
fn collection_attempt(item: &Item) -> Result<Option<CollectionAttempt>, StoreError> {
    let number = item.count("collectAttempt")?;
    if number == 0 {
        return Ok(None);
    }
    Ok(Some(CollectionAttempt {
        number: u32::try_from(number).map_err(|_| item.invalid("collectAttempt", "is not a small number"))?,
        state: item.string("collectState")?,
        reason: item.optional_string("collectReason"),
        started_at: item.string("collectClaimedAt")?,
        next_at: item.optional_string("collectNextAt"),
    }))
}
