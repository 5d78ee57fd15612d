//! The credit ledger: every change of a balance is an immutable entry in the account's partition.
//!
//! An entry records the signed quantity per credit type it moved (a purchase and a release add, a consumption
//! takes away, an adjustment does either). DynamoDB cannot return updated values from a transaction, so an
//! entry does not store the balance after it: a listing derives it, newest first, from the current balance
//! minus every later entry ([`balances_after`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::purchase::PurchaseTrigger;
use super::reconcile::SignedBalances;
use super::{CreditType, PurchaseRecord};

/// What changed the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    Purchase,
    Consumption,
    /// An earlier consumption's credits put back (once per consumption).
    Release,
    /// An unbilled purchase taken back by its agency (its credits out again, once per purchase).
    Void,
    /// An operator's signed correction, with a reason and who made it.
    Adjustment,
}

impl EntryType {
    pub const ALL: [EntryType; 5] =
        [EntryType::Purchase, EntryType::Consumption, EntryType::Release, EntryType::Void, EntryType::Adjustment];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Purchase => "purchase",
            EntryType::Consumption => "consumption",
            EntryType::Release => "release",
            EntryType::Void => "void",
            EntryType::Adjustment => "adjustment",
        }
    }

    pub fn parse(name: &str) -> Option<EntryType> {
        EntryType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Signed quantities per credit type (only the types an entry touched).
pub type Deltas = BTreeMap<CreditType, i64>;

/// One ledger entry, as stored (its key: `ACCOUNT#{accountId}` / `LEDGER#{createdAt}#{entryId}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub entry_id: String,
    pub account_id: String,
    #[serde(rename = "entryType")]
    pub entry_type: EntryType,
    /// [`super::time::timestamp`]: sorts as text in time order.
    pub created_at: String,
    pub quantities: Deltas,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The consumption a consumption or release entry belongs to (the caller's own id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_id: Option<String>,
    /// Who made an adjustment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What made a purchase entry: its purchase's trigger. Stored only when not the client's, so every entry
    /// written before the field (and every entry of another type) reads as the client's.
    #[serde(default, skip_serializing_if = "PurchaseTrigger::is_client")]
    pub trigger: PurchaseTrigger,
}

impl LedgerEntry {
    /// A purchase's entry: its id and time are the purchase's, so the entry and the record name each other.
    pub fn for_purchase(purchase: &PurchaseRecord) -> LedgerEntry {
        let mut quantities = Deltas::new();
        for line in &purchase.lines {
            *quantities.entry(line.credit_type).or_default() += i64::try_from(line.quantity).unwrap_or(i64::MAX);
        }
        LedgerEntry {
            entry_id: purchase.purchase_id.clone(),
            account_id: purchase.account_id.clone(),
            entry_type: EntryType::Purchase,
            created_at: purchase.created_at.clone(),
            quantities,
            reason: None,
            reference: None,
            consumption_id: None,
            purchase_id: Some(purchase.purchase_id.clone()),
            actor: None,
            trigger: purchase.trigger,
        }
    }

    /// A void's entry: every type the purchase brought in, taken back whole (negative), the purchase as its
    /// reference, the administrator who voided it as its actor (never shown to the client).
    pub fn for_void(
        purchase: &PurchaseRecord,
        entry_id: &str,
        voided_at: &str,
        reason: Option<&str>,
        voided_by: &str,
    ) -> LedgerEntry {
        LedgerEntry {
            entry_id: entry_id.to_owned(),
            account_id: purchase.account_id.clone(),
            entry_type: EntryType::Void,
            created_at: voided_at.to_owned(),
            quantities: purchase
                .credits_per_type()
                .into_iter()
                .map(|(t, q)| (t, -i64::try_from(q).unwrap_or(i64::MAX)))
                .collect(),
            reason: reason.map(str::to_owned),
            reference: Some(purchase.purchase_id.clone()),
            consumption_id: None,
            purchase_id: Some(purchase.purchase_id.clone()),
            actor: Some(voided_by.to_owned()),
            trigger: PurchaseTrigger::Client,
        }
    }
}

/// Quantities per credit type a consumption takes (each above zero).
pub type Quantities = BTreeMap<CreditType, u64>;

/// The largest quantity of one type in one consumption or adjustment: the purchase's own limit.
pub use super::purchase::MAX_QUANTITY;

/// A validated consumption request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    pub account_id: String,
    /// The caller's own id: exactly once per account and id.
    pub consumption_id: String,
    pub quantities: Quantities,
    pub reason: String,
    pub reference: Option<String>,
}

impl Consumption {
    /// The hash a retry must match to be a replay: everything the request asks for.
    pub fn request_hash(&self) -> String {
        let mut canonical = format!("{}\n{}\n", self.account_id, self.consumption_id);
        for (t, q) in &self.quantities {
            canonical.push_str(&format!("{t}={q};"));
        }
        canonical.push_str(&format!("\n{}\n{}", self.reason, self.reference.as_deref().unwrap_or("")));
        hex::encode(Sha256::digest(canonical))
    }

    /// The consumption as signed deltas (every quantity taken away).
    pub fn deltas(&self) -> Deltas {
        self.quantities.iter().map(|(t, q)| (*t, -i64::try_from(*q).unwrap_or(i64::MAX))).collect()
    }
}

/// One type a consumption asked more of than the balance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortfall {
    pub credit_type: CreditType,
    pub balance: i64,
    pub requested: u64,
    pub short: u64,
}

/// Every type of `requested` the balances cannot cover, in type order.
pub fn shortfalls(balances: &BTreeMap<CreditType, i64>, requested: &Quantities) -> Vec<Shortfall> {
    requested
        .iter()
        .filter_map(|(t, q)| {
            let balance = balances.get(t).copied().unwrap_or(0);
            let have = u64::try_from(balance).unwrap_or(0);
            (have < *q).then_some(Shortfall { credit_type: *t, balance, requested: *q, short: q - have })
        })
        .collect()
}

/// A balance walked back past what an `i64` holds: the starting balances or the entries are not ones the ledger
/// can have produced (a balance is written whole, every entry's quantities are bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {credit_type} balance before an entry leaves the range of a balance")]
pub struct BalanceOverflow {
    pub credit_type: CreditType,
}

/// The balance after each entry, given the balances after the newest of them (`after_newest`) and the entries
/// newest first: the balance after an entry is the balance after the next newer one minus that newer one's
/// deltas. Every type is listed. Returns the balances after each entry, and the balances after the entry just
/// older than the last one (where a next page continues). Checked: an overflow is an error, never a panic or a
/// wrapped balance.
pub fn balances_after<'a>(
    after_newest: &BTreeMap<CreditType, i64>,
    entries_newest_first: impl IntoIterator<Item = &'a Deltas>,
) -> Result<(Vec<SignedBalances>, SignedBalances), BalanceOverflow> {
    let mut running: SignedBalances =
        CreditType::ALL.into_iter().map(|t| (t, after_newest.get(&t).copied().unwrap_or(0))).collect();
    let mut out = Vec::new();
    for deltas in entries_newest_first {
        out.push(running.clone());
        for (t, d) in deltas {
            let balance = running.entry(*t).or_default();
            *balance = balance.checked_sub(*d).ok_or(BalanceOverflow { credit_type: *t })?;
        }
    }
    Ok((out, running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_after_walk_back_from_the_current_balance() {
        let current = BTreeMap::from([(CreditType::Audience, 5)]);
        let newest = Deltas::from([(CreditType::Audience, -3)]);
        let middle = Deltas::from([(CreditType::Audience, 8), (CreditType::Pixel, 2)]);
        let (after, before_oldest) = balances_after(&current, [&newest, &middle]).unwrap();
        assert_eq!(after[0][&CreditType::Audience], 5);
        assert_eq!(after[1][&CreditType::Audience], 8);
        assert_eq!(after[1][&CreditType::Pixel], 0);
        assert_eq!(before_oldest[&CreditType::Audience], 0);
        assert_eq!(before_oldest[&CreditType::Pixel], -2);
        assert_eq!(after[0].len(), CreditType::ALL.len());
    }

    #[test]
    fn balances_that_would_leave_i64_are_an_error_not_a_panic_or_a_wrap() {
        let lowest = BTreeMap::from([(CreditType::Audience, i64::MIN)]);
        let bought = Deltas::from([(CreditType::Audience, 1)]);
        assert_eq!(balances_after(&lowest, [&bought]), Err(BalanceOverflow { credit_type: CreditType::Audience }));
        let highest = BTreeMap::from([(CreditType::Pixel, i64::MAX)]);
        let consumed = Deltas::from([(CreditType::Pixel, -1)]);
        assert_eq!(balances_after(&highest, [&consumed]), Err(BalanceOverflow { credit_type: CreditType::Pixel }));
        // At the edge itself, still exact.
        let (_, before) = balances_after(&highest, [&Deltas::from([(CreditType::Pixel, 1)])]).unwrap();
        assert_eq!(before[&CreditType::Pixel], i64::MAX - 1);
    }

    #[test]
    fn shortfalls_say_which_type_and_by_how_much() {
        let balances = BTreeMap::from([(CreditType::Audience, 2), (CreditType::Pixel, 9)]);
        let wanted = Quantities::from([(CreditType::Audience, 3), (CreditType::Pixel, 9), (CreditType::Enrichment, 1)]);
        assert_eq!(
            shortfalls(&balances, &wanted),
            vec![
                Shortfall { credit_type: CreditType::Audience, balance: 2, requested: 3, short: 1 },
                Shortfall { credit_type: CreditType::Enrichment, balance: 0, requested: 1, short: 1 },
            ]
        );
    }

    #[test]
    fn a_request_hash_covers_the_whole_request() {
        let a = Consumption {
            account_id: "a".into(),
            consumption_id: "c".into(),
            quantities: Quantities::from([(CreditType::Audience, 1)]),
            reason: "r".into(),
            reference: None,
        };
        let mut b = a.clone();
        b.quantities.insert(CreditType::Audience, 2);
        let mut c = a.clone();
        c.reference = Some("x".into());
        assert_ne!(a.request_hash(), b.request_hash());
        assert_ne!(a.request_hash(), c.request_hash());
        assert_eq!(a.request_hash(), a.clone().request_hash());
    }
}
