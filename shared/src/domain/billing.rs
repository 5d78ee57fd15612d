//! Billing rules: cycles, statements, what a batch of purchases adds to a statement, and how a run groups the
//! purchases it reads into steps. The run itself (reading pages, sending steps) is `crate::billing`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::Serialize;

use super::purchase::{PurchaseLine, PurchaseRecord};
use super::{CreditType, time};

/// A statement's life: `building` while billing runs can still add to it; `pending_payment` once the run of
/// its cycle has finished (only then is it payable); then `paid`, or `payment_failed` / `overdue` (which put a
/// client's account on hold) until it is paid.
pub const STATUS_BUILDING: &str = "building";
pub const STATUS_PENDING_PAYMENT: &str = "pending_payment";
pub const STATUS_PAID: &str = "paid";
pub const STATUS_PAYMENT_FAILED: &str = "payment_failed";
pub const STATUS_OVERDUE: &str = "overdue";

/// The statuses a payment may be recorded against.
pub const PAYABLE_STATUSES: [&str; 3] = [STATUS_PENDING_PAYMENT, STATUS_PAYMENT_FAILED, STATUS_OVERDUE];

/// Days after it became payable a client statement may stay unpaid before it is overdue (`PAYMENT_DUE_DAYS`),
/// counted as in [`due_at`].
pub const DEFAULT_PAYMENT_DUE_DAYS: u64 = 30;

/// The end of a billing cycle (exclusive), rendered as purchases' `createdAt` are ([`time::timestamp`]) so it
/// compares with them as text, in the index sort key and in statement keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CycleEnd(String);

impl CycleEnd {
    /// Parses an RFC 3339 UTC instant ("2026-12-01T00:00:00Z", fractions up to milliseconds).
    pub fn parse(text: &str) -> Result<CycleEnd, String> {
        let at = humantime::parse_rfc3339(text).map_err(|e| {
            format!("`cycleEnd` must be an RFC 3339 UTC instant like \"2026-12-01T00:00:00Z\": {text:?}: {e}")
        })?;
        let since_epoch = at.duration_since(UNIX_EPOCH).map_err(|_| format!("`cycleEnd` is before 1970: {text:?}"))?;
        // A finer cycle end would be silently truncated in every key; refuse it instead.
        if since_epoch.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("`cycleEnd` has more precision than milliseconds: {text:?}"));
        }
        Ok(CycleEnd::at(at))
    }

    pub fn at(time: SystemTime) -> CycleEnd {
        CycleEnd(time::timestamp(time))
    }

    /// "2026-12-01T00:00:00.000Z"
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instant itself, for comparing with the clock.
    pub fn instant(&self) -> SystemTime {
        humantime::parse_rfc3339(&self.0).expect("a CycleEnd holds a valid timestamp")
    }

    /// Whether this is a cycle boundary: 00:00:00.000Z on the 1st of a month, where the monthly cycles end.
    pub fn is_month_boundary(&self) -> bool {
        self.0.get(7..) == Some("-01T00:00:00.000Z")
    }

    /// "20261201T000000.000Z": the cycle end inside statement ids.
    fn compact(&self) -> String {
        self.0.chars().filter(|c| *c != '-' && *c != ':').collect()
    }

    /// The inverse of [`CycleEnd::compact`]; `None` for anything else.
    fn from_compact(compact: &str) -> Option<CycleEnd> {
        let b = compact.as_bytes();
        if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
            return None;
        }
        let text = format!(
            "{}-{}-{}T{}:{}:{}",
            &compact[0..4],
            &compact[4..6],
            &compact[6..8],
            &compact[9..11],
            &compact[11..13],
            &compact[13..]
        );
        CycleEnd::parse(&text).ok().filter(|cycle| cycle.compact() == compact)
    }
}

const DAY_SECONDS: u64 = 24 * 60 * 60;

/// When a client statement of `cycle_end` made payable at `payable_at` falls overdue if unpaid.
///
/// The due day is the `due_days`-th day (UTC dates) after the day the statement became payable, never
/// counted from before the cycle end: a cycle finished late gives its clients the same days to pay. A
/// statement is due by the end of its due day anywhere on Earth (UTC−12), which is 12:00 UTC the next day,
/// so no client is put on hold while their due day lasts (the daily sweep at 01:00 UTC marks it the day after).
pub fn due_at(cycle_end: &CycleEnd, payable_at: SystemTime, due_days: u64) -> String {
    let from = payable_at.max(cycle_end.instant());
    let day = from.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / DAY_SECONDS);
    let end_of_due_day_everywhere = (day + due_days + 1) * DAY_SECONDS + DAY_SECONDS / 2;
    time::timestamp(UNIX_EPOCH + std::time::Duration::from_secs(end_of_due_day_everywhere))
}

/// A statement id taken apart: `{kind}-{compact cycle end}-{owner}` (see [`StatementKind::statement_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    pub kind: StatementKind,
    pub cycle_end: CycleEnd,
    pub owner: String,
}

impl StatementRef {
    /// Strict: only ids this code makes, with an owner that is a valid account or agency id.
    pub fn parse(statement_id: &str) -> Option<StatementRef> {
        let (kind, rest) = statement_id.split_once('-')?;
        let kind = StatementKind::parse(kind)?;
        let (compact, owner) = (rest.get(..20)?, rest.get(20..)?.strip_prefix('-')?);
        let cycle_end = CycleEnd::from_compact(compact)?;
        super::is_valid_account_id(owner).then(|| StatementRef { kind, cycle_end, owner: owner.to_owned() })
    }
}

impl fmt::Display for CycleEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a statement bills: the client (its account, at price) or the agency (at cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Client,
    Agency,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Client => "client",
            StatementKind::Agency => "agency",
        }
    }

    pub fn parse(text: &str) -> Option<StatementKind> {
        [StatementKind::Client, StatementKind::Agency].into_iter().find(|k| k.as_str() == text)
    }

    /// The account (client statements) or agency (agency statements) a purchase is billed to.
    pub fn owner(self, purchase: &PurchaseRecord) -> &str {
        match self {
            StatementKind::Client => &purchase.account_id,
            StatementKind::Agency => &purchase.agency_id,
        }
    }

    /// Deterministic, so a re-run of the same cycle finds the same statement: "client-20261201T000000.000Z-acct-x".
    /// The owner comes last, so no owner id can make two statements' ids equal.
    pub fn statement_id(self, owner: &str, cycle_end: &CycleEnd) -> String {
        format!("{}-{}-{owner}", self.as_str(), cycle_end.compact())
    }

    /// A line's amount on this kind of statement: the subtotal at price, or at cost.
    pub fn line_amount(self, line: &PurchaseLine) -> Decimal {
        match self {
            StatementKind::Client => line.subtotal,
            StatementKind::Agency => line.subtotal_at_cost,
        }
    }

    pub fn purchase_amount(self, purchase: &PurchaseRecord) -> Decimal {
        match self {
            StatementKind::Client => purchase.total,
            StatementKind::Agency => purchase.total_at_cost,
        }
    }
}

/// Quantity and amount of one credit type, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineSum {
    pub quantity: u64,
    pub amount: Decimal,
}

/// What a batch of purchases adds to its statement. Sums of cent amounts are exact: nothing is rounded here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementDelta {
    pub lines: BTreeMap<CreditType, LineSum>,
    pub total: Decimal,
    pub purchase_count: u64,
}

pub fn statement_delta(kind: StatementKind, purchases: &[PurchaseRecord]) -> StatementDelta {
    let mut delta = StatementDelta::default();
    for purchase in purchases {
        for line in &purchase.lines {
            let sum = delta.lines.entry(line.credit_type).or_default();
            sum.quantity += line.quantity;
            sum.amount += kind.line_amount(line);
        }
        delta.total += kind.purchase_amount(purchase);
        delta.purchase_count += 1;
    }
    delta
}

/// A statement as stored, with the ids of every purchase it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub statement_id: String,
    pub kind: StatementKind,
    /// The account id (client statements) or agency id (agency statements).
    pub owner_id: String,
    pub cycle_end: String,
    pub status: String,
    pub currency: String,
    /// Credit types with a non-zero quantity, in dashboard order.
    pub lines: Vec<StatementLine>,
    pub total: Decimal,
    pub purchase_count: u64,
    /// Paid so far and still due; zero and `total` until the statement is payable.
    pub amount_paid: Decimal,
    pub amount_due: Decimal,
    /// When a payable statement falls overdue (client statements); `None` while building.
    pub due_at: Option<String>,
    /// Sorted.
    pub purchase_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub credit_type: CreditType,
    pub quantity: u64,
    pub amount: Decimal,
}

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
    use crate::domain::purchase::PurchaseLine;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn purchase(id: &str, account: &str, lines: Vec<PurchaseLine>) -> PurchaseRecord {
        PurchaseRecord {
            purchase_id: id.into(),
            account_id: account.into(),
            agency_id: "g".into(),
            created_at: "2026-11-25T12:00:00.000Z".into(),
            currency: "USD".into(),
            total: lines.iter().map(|l| l.subtotal).sum(),
            total_at_cost: lines.iter().map(|l| l.subtotal_at_cost).sum(),
            lines,
            billed_to_client: false,
            billed_to_agency: false,
            client_statement_id: None,
            agency_statement_id: None,
            idempotency_key: None,
            voided_at: None,
            voided_by: None,
        }
    }

    #[test]
    fn cycle_end_is_canonical_milliseconds() {
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00Z").unwrap().as_str(), "2026-12-01T00:00:00.000Z");
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00.250Z").unwrap().as_str(), "2026-12-01T00:00:00.250Z");
        assert_eq!(CycleEnd::parse("2026-12-01T00:00:00+00:00").unwrap().as_str(), "2026-12-01T00:00:00.000Z");
        assert!(CycleEnd::parse("2026-12-01T00:00:00.0001Z").is_err());
        assert!(CycleEnd::parse("2026-12-01").is_err());
        assert!(CycleEnd::parse("2026-12-01T00:00:00+02:00").is_err());
        assert!(CycleEnd::parse("tomorrow").is_err());
    }

    #[test]
    fn statement_ids_are_deterministic_and_distinct() {
        let cycle = CycleEnd::parse("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(StatementKind::Client.statement_id("acct-a", &cycle), "client-20261201T000000.000Z-acct-a");
        assert_eq!(StatementKind::Agency.statement_id("agency-a", &cycle), "agency-20261201T000000.000Z-agency-a");
        let later = CycleEnd::parse("2027-01-01T00:00:00Z").unwrap();
        assert_ne!(
            StatementKind::Client.statement_id("acct-a", &cycle),
            StatementKind::Client.statement_id("acct-a", &later)
        );
    }

    #[test]
    fn due_days_count_from_the_day_a_statement_became_payable_to_the_end_of_the_due_day_anywhere() {
        let at = |text: &str| humantime::parse_rfc3339(text).unwrap();
        let november = CycleEnd::parse("2026-11-01T00:00:00Z").unwrap();
        // Made payable by the scheduled run: due on 1 December, until its end at UTC−12.
        assert_eq!(due_at(&november, at("2026-11-01T00:20:00Z"), 30), "2026-12-02T12:00:00.000Z");
        assert_eq!(due_at(&november, at("2026-11-01T23:59:59.999Z"), 30), "2026-12-02T12:00:00.000Z");
        // A run that failed and finished 5 days late: 30 days from then, not from the cycle end.
        assert_eq!(due_at(&november, at("2026-11-06T10:00:00Z"), 30), "2026-12-07T12:00:00.000Z");
        // Never counted from before the cycle end (a clock behind the schedule's).
        assert_eq!(due_at(&november, at("2026-10-31T23:59:30Z"), 30), "2026-12-02T12:00:00.000Z");
        // The 01:00 UTC sweep of the day after the due day is the first that finds it overdue.
        let due = due_at(&november, at("2026-11-01T00:20:00Z"), 30);
        assert!(due.as_str() > "2026-12-02T01:00:00.000Z" && due.as_str() < "2026-12-03T01:00:00.000Z");
    }

    #[test]
    fn statement_ids_parse_back_strictly() {
        let cycle = CycleEnd::parse("2026-12-01T00:00:00.250Z").unwrap();
        let id = StatementKind::Agency.statement_id("agency-north_1", &cycle);
        assert_eq!(
            StatementRef::parse(&id),
            Some(StatementRef {
                kind: StatementKind::Agency,
                cycle_end: cycle.clone(),
                owner: "agency-north_1".into()
            })
        );
        for bad in [
            "",
            "client",
            "client-20261201T000000.000Z",
            "client-20261201T000000.000Z-",
            "client-20261301T000000.000Z-a",
            "client-2026-12-01T00:00:00.000Z-a",
            "vendor-20261201T000000.000Z-a",
            "client-20261201T000000.000Z-a#b",
            "client-20261201T000000.000Zxa",
        ] {
            assert_eq!(StatementRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn delta_sums_lines_at_price_or_cost_exactly() {
        let line = |t, q, subtotal: &str, at_cost: &str| PurchaseLine {
            credit_type: t,
            quantity: q,
            unit_price: d("0"),
            unit_cost: d("0"),
            subtotal: d(subtotal),
            subtotal_at_cost: d(at_cost),
        };
        let purchases = vec![
            purchase(
                "p",
                "a",
                vec![
                    line(CreditType::Audience, 2, "55.00", "32.00"),
                    line(CreditType::Enrichment, 333, "5.00", "133.20"),
                ],
            ),
            purchase("p", "a", vec![line(CreditType::Enrichment, 1, "0.02", "0.01")]),
        ];
        let client = statement_delta(StatementKind::Client, &purchases);
        assert_eq!(client.total, d("60.02"));
        assert_eq!(client.purchase_count, 2);
        assert_eq!(client.lines[&CreditType::Enrichment], LineSum { quantity: 334, amount: d("5.02") });
        assert_eq!(client.lines.values().map(|l| l.amount).sum::<Decimal>(), client.total);
        let agency = statement_delta(StatementKind::Agency, &purchases);
        assert_eq!(agency.total, d("165.21"));
        assert_eq!(agency.lines[&CreditType::Audience], LineSum { quantity: 2, amount: d("32.00") });
    }

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
