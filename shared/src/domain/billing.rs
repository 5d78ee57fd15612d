//! Billing rules: cycles, statements, what a batch of purchases adds to a statement, and how a run groups the
//! purchases it reads into steps ([`steps`]). The run itself (reading pages, sending steps) is `crate::billing`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::Serialize;

use super::purchase::{PurchaseLine, PurchaseRecord};
use super::{CreditType, time};

pub mod steps;

pub use steps::{MAX_PARTS, Part, Step, StepPlanner, owner_part};

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

/// The agency a client statement's `statement.payable` names, from the instant of the latest purchase billed onto
/// it under each agency it billed purchases of: the agency the client bought under last in the cycle. A client
/// that moved mid-cycle has purchases of both on its one statement (one per account and cycle); every purchase
/// under the old agency is older than any under the new one, so this names the new agency, as `statement.paid`
/// and the hold events (read from the account) will. Ties (never in practice) go to the greater id.
pub fn statement_agency<'a>(latest_per_agency: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    latest_per_agency.into_iter().max_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0))).map(|(agency, _)| agency)
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
    /// The instant of the payment that paid it in full; `None` until then.
    pub paid_at: Option<String>,
    /// Its latest collection attempt through Stripe; `None` if collection never attempted it.
    pub collection: Option<CollectionAttempt>,
}

/// The latest attempt to collect a statement, as its owner may see it (never the Stripe ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionAttempt {
    /// 1, 2, ...: each retry is a new attempt.
    pub number: u32,
    /// `in_flight`, `succeeded`, `failed` (a retry is scheduled) or `exhausted` (none is left).
    pub state: String,
    /// The machine code of a failure as stored (`card_declined`, `authentication_required`, ...).
    pub reason: Option<String>,
    /// When the attempt was claimed (taken over, for one resumed after a stopped run).
    pub started_at: String,
    /// When the next automatic retry may start; `None` when none is scheduled.
    pub next_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub credit_type: CreditType,
    pub quantity: u64,
    pub amount: Decimal,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::purchase::PurchaseLine;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    pub(crate) fn purchase(id: &str, account: &str, lines: Vec<PurchaseLine>) -> PurchaseRecord {
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
            trigger: Default::default(),
            in_day_sums: false,
        }
    }

    #[test]
    fn a_statement_names_the_agency_its_client_last_bought_under() {
        assert_eq!(statement_agency([]), None);
        assert_eq!(statement_agency([("agency-a", "2026-11-03T00:00:00.000Z")]), Some("agency-a"));
        let moved = [("agency-new", "2026-11-20T09:00:00.000Z"), ("agency-old", "2026-11-10T00:00:00.000Z")];
        assert_eq!(statement_agency(moved), Some("agency-new"));
        let tie = [("agency-b", "2026-11-03T00:00:00.000Z"), ("agency-a", "2026-11-03T00:00:00.000Z")];
        assert_eq!(statement_agency(tie), Some("agency-b"));
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
}
