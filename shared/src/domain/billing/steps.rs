//! How a run groups the purchases it reads into steps (one owner's purchases, one transaction each), and how a
//! side's statement owners are split into disjoint parts so several runs can bill one side at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::StatementKind;
use crate::domain::purchase::PurchaseRecord;

/// One step of a run: purchases of one owner, sorted by id and unique (a transaction may not touch an item
/// twice, and the statement part is named by the first id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub owner: String,
    pub purchases: Vec<PurchaseRecord>,
}

impl Step {
    fn new(owner: String, mut purchases: Vec<PurchaseRecord>) -> Step {
        purchases.sort_by(|a, b| a.purchase_id.cmp(&b.purchase_id));
        purchases.dedup_by(|a, b| a.purchase_id == b.purchase_id);
        Step { owner, purchases }
    }

    /// The same step without the purchases at `positions` (another run billed them since we read them).
    pub fn without(self, positions: &[usize]) -> Step {
        let dropped: BTreeSet<usize> = positions.iter().copied().collect();
        let purchases =
            self.purchases.into_iter().enumerate().filter(|(i, _)| !dropped.contains(i)).map(|(_, p)| p).collect();
        Step { owner: self.owner, purchases }
    }
}

/// How a run groups the purchases it reads into steps: per owner, a step as soon as `batch_size` purchases
/// are waiting, and every waiting purchase once `max_buffered` are held (so memory stays bounded).
#[derive(Debug)]
pub struct StepPlanner {
    kind: StatementKind,
    batch_size: usize,
    max_buffered: usize,
    waiting: BTreeMap<String, Vec<PurchaseRecord>>,
    buffered: usize,
}

impl StepPlanner {
    pub fn new(kind: StatementKind, batch_size: usize, max_buffered: usize) -> StepPlanner {
        StepPlanner { kind, batch_size: batch_size.max(1), max_buffered, waiting: BTreeMap::new(), buffered: 0 }
    }

    /// Takes one purchase; returns its owner's step when that step is full.
    pub fn push(&mut self, purchase: PurchaseRecord) -> Option<Step> {
        let owner = self.kind.owner(&purchase).to_owned();
        let batch = self.waiting.entry(owner.clone()).or_default();
        batch.push(purchase);
        self.buffered += 1;
        if batch.len() < self.batch_size {
            return None;
        }
        let batch = self.waiting.remove(&owner).unwrap_or_default();
        self.buffered -= batch.len();
        Some(Step::new(owner, batch))
    }

    /// Every waiting purchase as steps, if the buffer is full; nothing otherwise.
    pub fn flush_if_full(&mut self) -> Vec<Step> {
        if self.buffered >= self.max_buffered { self.drain() } else { Vec::new() }
    }

    /// Every waiting purchase as steps (at the end of the run).
    pub fn drain(&mut self) -> Vec<Step> {
        self.buffered = 0;
        std::mem::take(&mut self.waiting).into_iter().map(|(owner, batch)| Step::new(owner, batch)).collect()
    }
}

/// The most parts a side can be split into ([`Part`]): far more than a Map state needs to bill a side within
/// a Lambda's 15 minutes, and few enough that each part still has statements to build.
pub const MAX_PARTS: u32 = 64;

/// Part `index` of `of` disjoint parts of one side's statement owners (accounts, or agencies), so several
/// runs can bill one side at once without ever writing the same statement item. Valid by construction:
/// 1 ≤ `of` ≤ [`MAX_PARTS`] and `index` < `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Part {
    index: u32,
    of: u32,
}

impl Part {
    pub fn new(index: u32, of: u32) -> Result<Part, String> {
        if !(1..=MAX_PARTS).contains(&of) {
            return Err(format!("`part.of` must be 1..={MAX_PARTS}, got {of}"));
        }
        if index >= of {
            return Err(format!("`part.index` must be 0..{of} (below `part.of`), got {index}"));
        }
        Ok(Part { index, of })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn of(self) -> u32 {
        self.of
    }

    /// Whether this part bills the statements of `owner`.
    pub fn holds(self, owner: &str) -> bool {
        owner_part(owner, self.of) == self.index
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// Which of `parts` parts (0..`parts`) the statements of `owner` belong to. Every run of every release must
/// agree on it, so it is spelled out here rather than taken from std's per-process `RandomState`: FNV-1a over
/// the id's bytes, then a 64-bit finalizer (MurmurHash3's fmix64) so ids differing only in their last
/// characters (acct-0001, acct-0002, ...) still spread evenly, whatever `parts` is. The shard hash of
/// `storage::purchases::unbilled_shard` would not do: modulo 31 or 62 it sees only the last byte.
pub fn owner_part(owner: &str, parts: u32) -> u32 {
    let fnv = owner.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut h = fnv;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % u64::from(parts.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::billing::tests::purchase;

    #[test]
    fn planner_emits_full_steps_per_owner_and_flushes_when_the_buffer_fills() {
        let mut planner = StepPlanner::new(StatementKind::Client, 2, 3);
        assert_eq!(planner.push(purchase("p3", "a", vec![])), None);
        assert_eq!(planner.push(purchase("p9", "b", vec![])), None);
        let full = planner.push(purchase("p1", "a", vec![])).expect("a's step is full");
        assert_eq!(full.owner, "a");
        assert_eq!(full.purchases.iter().map(|p| p.purchase_id.as_str()).collect::<Vec<_>>(), ["p1", "p3"]);
        assert!(planner.flush_if_full().is_empty(), "one purchase waits, the buffer holds three");
        assert_eq!(planner.push(purchase("p5", "c", vec![])), None);
        assert_eq!(planner.push(purchase("p6", "d", vec![])), None);
        let flushed = planner.flush_if_full();
        assert_eq!(flushed.iter().map(|s| s.owner.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);
        assert!(planner.drain().is_empty());
    }

    #[test]
    fn a_step_drops_what_another_run_billed_and_never_holds_a_purchase_twice() {
        let step = Step::new(
            "a".into(),
            vec![purchase("p2", "a", vec![]), purchase("p1", "a", vec![]), purchase("p2", "a", vec![])],
        );
        assert_eq!(step.purchases.len(), 2);
        let rest = step.without(&[0]);
        assert_eq!(rest.purchases.iter().map(|p| p.purchase_id.as_str()).collect::<Vec<_>>(), ["p2"]);
    }

    #[test]
    fn every_owner_is_in_exactly_one_part() {
        for of in [1, 2, 3, 4, 7, 16, MAX_PARTS] {
            let parts: Vec<Part> = (0..of).map(|index| Part::new(index, of).unwrap()).collect();
            for i in 0..500 {
                for owner in [format!("acct-{i:04}"), format!("agency-{i}")] {
                    assert_eq!(parts.iter().filter(|p| p.holds(&owner)).count(), 1, "{owner} in {of} parts");
                    assert!(owner_part(&owner, of) < of);
                }
            }
        }
    }

    #[test]
    fn an_owner_stays_in_its_part_across_processes_and_releases() {
        // Regression guard: a change here moves owners between the parts of a running state machine.
        let fixed: [(&str, u32, u32); 6] = [
            ("acct-0000", 3, 1),
            ("acct-0001", 3, 2),
            ("agency-0", 3, 2),
            ("agency-northwind", 4, 1),
            ("acct-brightside-dental", 4, 3),
            ("018f6c1e-2f3a-7b4c-9d5e-6f7a8b9c0d1e", 64, 0),
        ];
        for (owner, of, part) in fixed {
            assert_eq!(owner_part(owner, of), part, "{owner} of {of}");
        }
        assert_eq!(owner_part("anything", 1), 0);
    }

    #[test]
    fn owners_spread_evenly_over_the_parts() {
        let owners: Vec<String> = (0..1000).map(|i| format!("acct-{i:04}")).collect();
        for of in [2, 3, 4, 8, 16] {
            let mut counts = vec![0usize; of as usize];
            for owner in &owners {
                counts[owner_part(owner, of) as usize] += 1;
            }
            let mean = 1000.0 / f64::from(of);
            // A fair hash puts each part within a few standard deviations of the mean; ±40% is loose for 2..16.
            for (part, &count) in counts.iter().enumerate() {
                let off = (count as f64 - mean).abs() / mean;
                assert!(off <= 0.4, "part {part} of {of} holds {count} of 1000 (mean {mean:.0}): {counts:?}");
            }
        }
    }

    #[test]
    fn parts_are_within_bounds() {
        assert_eq!(Part::new(0, 1).map(|p| (p.index(), p.of())), Ok((0, 1)));
        assert_eq!(Part::new(63, 64).map(|p| p.to_string()), Ok("63/64".to_owned()));
        for (index, of) in [(0, 0), (1, 1), (3, 3), (0, 65), (64, 64)] {
            assert!(Part::new(index, of).is_err(), "{index}/{of}");
        }
    }
}
