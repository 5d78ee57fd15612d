//! A small per-instance cache of what rarely changes: which agency an account belongs to, and each
//! agency's effective prices.
//!
//! Purchases may use cached values because their transaction re-checks them (`agencyId` on the account,
//! `version` on both pricing items): a stale entry can never be charged, it only costs one refresh.
//! `GET /pricing` shows cached prices, so a price change is visible there after at most the TTL.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::EffectivePricing;

/// Entries older than `ttl` are misses; a zero TTL disables caching.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

/// Bounds memory when one instance serves many tenants; the map is simply cleared when full,
/// which costs a few refreshes and never correctness.
const MAX_ENTRIES: usize = 10_000;

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).filter(|(_, stored_at)| stored_at.elapsed() < self.ttl).map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.remove(key);
    }
}

/// The two caches a handler consults before touching DynamoDB.
#[derive(Debug)]
pub struct PricingCache {
    /// account id → agency id
    pub agency_of_account: TtlCache<String, String>,
    /// agency id → effective pricing (with the versions it was resolved from)
    pub pricing_of_agency: TtlCache<String, EffectivePricing>,
}

impl PricingCache {
    pub fn new(ttl: Duration) -> PricingCache {
        PricingCache { agency_of_account: TtlCache::new(ttl), pricing_of_agency: TtlCache::new(ttl) }
    }

    /// Forgets what we knew of an account and its agency, after a transaction proved it stale.
    pub fn invalidate(&self, account_id: &str, agency_id: &str) {
        self.agency_of_account.remove(&account_id.to_owned());
        self.pricing_of_agency.remove(&agency_id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let cache = TtlCache::new(Duration::from_millis(30));
        cache.put("a".to_owned(), 1);
        assert_eq!(cache.get(&"a".to_owned()), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"a".to_owned()), None);

        let off = TtlCache::new(Duration::ZERO);
        off.put("a".to_owned(), 1);
        assert_eq!(off.get(&"a".to_owned()), None);
    }

    #[test]
    fn remove_forgets() {
        let cache = TtlCache::new(Duration::from_secs(60));
        cache.put(1, "x");
        cache.remove(&1);
        assert_eq!(cache.get(&1), None);
    }
}
