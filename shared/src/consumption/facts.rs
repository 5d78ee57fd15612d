//! What a `consume-credits` container remembers between invocations: each account's facts as last seen (its
//! agency, rules, the day's top-ups, balances and line) and each agency's effective prices. Built once at cold
//! start and handed to the handler with the store ([`Consumer`]).
//!
//! Nothing cached is ever trusted: every consumption's transaction carries conditions that make the facts it
//! decided by still true, and a failed condition brings the account item back to refresh them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::TtlCache;
use crate::domain::consumption_plan::AccountFacts;
use crate::domain::rules::DEFAULT_DAILY_TOPUP_CAP;
use crate::domain::{self, EffectivePricing};
use crate::settings::{Lookup, SettingsError};
use crate::storage::{Store, StoreError};

/// Bounds memory when one container serves many accounts: cleared when full (a few cold reads, never a wrong
/// decision).
const MAX_ACCOUNTS: usize = 10_000;

/// How long prices are reused before being read again (the top-up's transaction checks their versions anyway).
const PRICING_TTL: Duration = Duration::from_secs(30);

/// `consume-credits`' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumptionSettings {
    /// Auto top-ups per account per UTC day, `AUTO_TOPUP_DAILY_CAP` (0..=100; 0: none), default 3.
    pub auto_topup_daily_cap: u32,
}

impl Default for ConsumptionSettings {
    fn default() -> Self {
        ConsumptionSettings { auto_topup_daily_cap: DEFAULT_DAILY_TOPUP_CAP }
    }
}

impl ConsumptionSettings {
    pub fn from_vars(var: Lookup) -> Result<ConsumptionSettings, SettingsError> {
        Ok(ConsumptionSettings { auto_topup_daily_cap: crate::settings::auto_topup_daily_cap(var)? })
    }
}

/// Account id → its facts as last seen.
#[derive(Debug, Default)]
pub struct AccountFactsCache {
    entries: Mutex<HashMap<String, AccountFacts>>,
}

impl AccountFactsCache {
    pub fn get(&self, account_id: &str) -> Option<AccountFacts> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(account_id).cloned()
    }

    pub fn put(&self, account_id: &str, facts: AccountFacts) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ACCOUNTS && !entries.contains_key(account_id) {
            entries.clear();
        }
        entries.insert(account_id.to_owned(), facts);
    }

    pub fn remove(&self, account_id: &str) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(account_id);
    }
}

/// The handler's state: the store, what the container remembers, and its settings.
#[derive(Clone)]
pub struct Consumer {
    pub store: Store,
    pub facts: Arc<AccountFactsCache>,
    pub pricing: Arc<TtlCache<String, EffectivePricing>>,
    pub settings: ConsumptionSettings,
}

impl Consumer {
    pub fn new(store: Store, settings: ConsumptionSettings) -> Consumer {
        Consumer {
            store,
            facts: Arc::new(AccountFactsCache::default()),
            pricing: Arc::new(TtlCache::new(PRICING_TTL)),
            settings,
        }
    }

    /// The account's facts read now (strongly consistent), remembered; `None` if there is no such account.
    pub(super) async fn read_facts(&self, account_id: &str) -> Result<Option<AccountFacts>, StoreError> {
        let Some(account) = self.store.account(account_id).await? else {
            self.facts.remove(account_id);
            return Ok(None);
        };
        let facts = AccountFacts::of(&account);
        self.facts.put(account_id, facts.clone());
        Ok(Some(facts))
    }

    /// The agency's effective prices: remembered ones unless `fresh` (a price check just failed).
    pub(super) async fn pricing_of(&self, agency_id: &str, fresh: bool) -> Result<EffectivePricing, StoreError> {
        let key = agency_id.to_owned();
        if !fresh && let Some(pricing) = self.pricing.get(&key) {
            return Ok(pricing);
        }
        let (default, agency) = self.store.pricing(agency_id).await?;
        let pricing = domain::resolve_pricing(agency_id, &default, agency.as_ref())
            .map_err(|e| StoreError::Internal(format!("pricing of {agency_id}: {e}")))?;
        self.pricing.put(key, pricing.clone());
        Ok(pricing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::{assert_refused, vars};

    #[test]
    fn the_daily_cap_is_the_settings_one() {
        // Its bounds are tested with the parser (`settings::auto_topup_daily_cap`), shared with the client's routes.
        let cap = |pairs: &[(&str, &str)]| ConsumptionSettings::from_vars(&vars(pairs)).map(|s| s.auto_topup_daily_cap);
        assert_eq!(cap(&[]), Ok(3));
        assert_eq!(cap(&[("AUTO_TOPUP_DAILY_CAP", "7")]), Ok(7));
        assert_refused(cap(&[("AUTO_TOPUP_DAILY_CAP", "101")]), "AUTO_TOPUP_DAILY_CAP", "from 0 to 100");
    }

    #[test]
    fn the_facts_cache_is_bounded() {
        let cache = AccountFactsCache::default();
        let facts = AccountFacts {
            agency_id: "a".into(),
            balances: domain::Balances::default(),
            line_available: None,
            on_hold: false,
            rules: Default::default(),
            topups: None,
        };
        for i in 0..MAX_ACCOUNTS {
            cache.put(&format!("acct-{i}"), facts.clone());
        }
        assert!(cache.get("acct-0").is_some());
        cache.put("one-more", facts);
        assert!(cache.get("acct-0").is_none(), "cleared when full");
        assert!(cache.get("one-more").is_some());
    }
}
