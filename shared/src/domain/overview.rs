//! The agency's overview, pure: which client needs attention (on hold, near its line's limit, a failed
//! collection) and the cycle's purchases per day with their margin. The reads behind it are storage's
//! (`storage::agency_days`, the clients pages); the bounds of those reads are here, so the handler and the docs
//! name the same numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rust_decimal::{Decimal, RoundingStrategy};

use super::billing::{STATUS_OVERDUE, STATUS_PAYMENT_FAILED, Statement};
use super::credit::CreditLine;

/// A client is near its limit when what it owes is above this share of the limit (percent).
pub const NEAR_LIMIT_PERCENT: Decimal = Decimal::from_parts(80, 0, 0, false, 0);

/// The overview reads at most this many clients (pages of [`OVERVIEW_CLIENTS_PAGE`] from the agency-items
/// index); past it the answer says `truncated`. At ~2 KB an account item, 500 clients are 1 MB read in 5 Query
/// calls (a few tens of ms each), well inside the request budget; an agency with more sees the first 500 here
/// and every client on the paged clients route.
pub const OVERVIEW_MAX_CLIENTS: usize = 500;
pub const OVERVIEW_CLIENTS_PAGE: usize = 100;
/// At most this many held statements are read, in one BatchGetItem (its own maximum is 100 keys).
pub const OVERVIEW_MAX_STATEMENTS: usize = 100;

/// A billing cycle: one calendar month, UTC (cycles end at 00:00 UTC on the 1st, `CycleEnd::is_month_boundary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    year: u32,
    /// 1..=12
    month: u32,
}

impl Month {
    /// `YYYY-MM`, 2000-01 to 9999-12; anything else is `None`.
    pub fn parse(text: &str) -> Option<Month> {
        let b = text.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()) {
            return None;
        }
        let year: u32 = text[..4].parse().ok()?;
        let month: u32 = text[5..].parse().ok()?;
        (year >= 2000 && (1..=12).contains(&month)).then_some(Month { year, month })
    }

    /// The month (UTC) holding `at`.
    pub fn containing(at: SystemTime) -> Month {
        let date = date_of(at);
        Month::parse(&date[..7]).expect("a date of this millennium")
    }

    pub fn days(self) -> u32 {
        match self.month {
            2 if self.year.is_multiple_of(4) && (!self.year.is_multiple_of(100) || self.year.is_multiple_of(400)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// `YYYY-MM-DD` of its `day`-th day (1-based).
    pub fn date(self, day: u32) -> String {
        format!("{self}-{day:02}")
    }

    pub fn first_date(self) -> String {
        self.date(1)
    }

    pub fn last_date(self) -> String {
        self.date(self.days())
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// `YYYY-MM-DD` (UTC) of an instant.
pub fn date_of(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let whole_seconds = UNIX_EPOCH + Duration::from_secs(since.as_secs());
    humantime::format_rfc3339_seconds(whole_seconds).to_string()[..10].to_owned()
}

/// The UTC day of a stored timestamp (`2026-11-25T12:00:00.000Z` → `2026-11-25`), checked.
pub fn day_of_timestamp(timestamp: &str) -> Option<&str> {
    let date = timestamp.get(..10)?;
    let b = date.as_bytes();
    let shaped =
        b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    (shaped && timestamp.as_bytes().get(10) == Some(&b'T')).then_some(date)
}

/// One day's running sums, as stored: purchases made that day under the agency, less those voided since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaySums {
    pub purchases: i64,
    pub total: Decimal,
    pub total_at_cost: Decimal,
}

impl DaySums {
    pub fn margin(&self) -> Decimal {
        self.total - self.total_at_cost
    }

    fn add(&mut self, other: &DaySums) {
        self.purchases += other.purchases;
        self.total += other.total;
        self.total_at_cost += other.total_at_cost;
    }
}

/// The cycle's days shown: from its first day through `through` (today for the running cycle, its last day for a
/// past one; none for a future one), every day present (zero when nothing was bought), and their totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleSeries {
    pub month: Month,
    pub days: Vec<(String, DaySums)>,
    pub totals: DaySums,
}

/// The series of `month` as of `today` (`YYYY-MM-DD`) from the stored days (any order; days outside are ignored).
pub fn cycle_series(month: Month, today: &str, stored: &[(String, DaySums)]) -> CycleSeries {
    let by_date: BTreeMap<&str, &DaySums> = stored.iter().map(|(date, sums)| (date.as_str(), sums)).collect();
    let mut days = Vec::new();
    let mut totals = DaySums::default();
    for day in 1..=month.days() {
        let date = month.date(day);
        if date.as_str() > today {
            break;
        }
        let sums = by_date.get(date.as_str()).copied().copied().unwrap_or_default();
        totals.add(&sums);
        days.push((date, sums));
    }
    CycleSeries { month, days, totals }
}

/// The share of a line in use (owed / limit × 100, rounded up to two places, so a listed client never shows 80.00) when it is above [`NEAR_LIMIT_PERCENT`]; `None`
/// otherwise. A zero limit with something owed is near (above) it: its share is `None` inside `Some`.
pub fn near_limit(line: &CreditLine) -> Option<Option<Decimal>> {
    let owed = line.outstanding();
    if line.limit <= Decimal::ZERO {
        return (owed > Decimal::ZERO).then_some(None);
    }
    // Compared exactly, without dividing: owed × 100 > limit × 80.
    if owed * Decimal::ONE_HUNDRED <= line.limit * NEAR_LIMIT_PERCENT {
        return None;
    }
    let mut percent =
        (owed * Decimal::ONE_HUNDRED / line.limit).round_dp_with_strategy(2, RoundingStrategy::AwayFromZero);
    percent.rescale(2); // always two places: "81.00"
    Some(Some(percent))
}

/// Whether a statement's collection failed: its status says so, or its latest attempt failed (a retry may be
/// scheduled) or has no attempt left. Paid statements never.
pub fn collection_failed(statement: &Statement) -> bool {
    if statement.paid_at.is_some() || statement.amount_due <= Decimal::ZERO {
        return false;
    }
    statement.status == STATUS_PAYMENT_FAILED
        || (statement.status == STATUS_OVERDUE
            && statement.collection.as_ref().is_some_and(|c| c.state == "failed" || c.state == "exhausted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn months_parse_strictly_and_know_their_days() {
        assert_eq!(Month::parse("2026-12").unwrap().to_string(), "2026-12");
        for bad in ["2026-13", "2026-00", "26-12", "2026-1", "2026/12", "1999-12", "2026-12-01", "", "２０２６-12"]
        {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        assert_eq!(Month::parse("2028-02").unwrap().days(), 29);
        assert_eq!(Month::parse("2100-02").unwrap().days(), 28);
        assert_eq!(Month::parse("2000-02").unwrap().days(), 29);
        assert_eq!(Month::parse("2026-11").unwrap().last_date(), "2026-11-30");
        assert_eq!(Month::parse("2026-12").unwrap().first_date(), "2026-12-01");
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_005); // 2026-11-18T11:06:40.005Z
        assert_eq!(date_of(at), "2026-11-18");
        assert_eq!(Month::containing(at).to_string(), "2026-11");
    }

    #[test]
    fn the_day_of_a_timestamp_is_its_utc_date() {
        assert_eq!(day_of_timestamp("2026-11-25T23:59:59.999Z"), Some("2026-11-25"));
        assert_eq!(day_of_timestamp("2026-11-25"), None);
        assert_eq!(day_of_timestamp("20261125T000000"), None);
    }

    #[test]
    fn the_series_has_every_day_through_today_and_totals_equal_to_its_days() {
        let month = Month::parse("2026-12").unwrap();
        let sums = |n, total: &str, cost: &str| DaySums { purchases: n, total: d(total), total_at_cost: d(cost) };
        let stored = vec![
            ("2026-12-03".to_owned(), sums(2, "50.00", "35.00")),
            ("2026-12-01".to_owned(), sums(1, "0.75", "0.40")),
            ("2026-12-09".to_owned(), sums(5, "1.00", "0.50")), // after today: not shown
            ("2026-11-30".to_owned(), sums(5, "1.00", "0.50")), // another cycle
        ];
        let series = cycle_series(month, "2026-12-04", &stored);
        assert_eq!(
            series.days.iter().map(|(date, _)| date.as_str()).collect::<Vec<_>>(),
            ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
        );
        assert_eq!(series.days[1].1, DaySums::default());
        assert_eq!(series.totals, sums(3, "50.75", "35.40"));
        assert_eq!(series.totals.margin(), d("15.35"));
        // A past cycle: all its days; a future one: none.
        assert_eq!(cycle_series(month, "2027-01-15", &stored).days.len(), 31);
        assert!(cycle_series(month, "2026-11-15", &stored).days.is_empty());
    }

    #[test]
    fn near_limit_is_strictly_above_eighty_percent() {
        let line = |limit: &str, available: &str| CreditLine { limit: d(limit), available: d(available) };
        assert_eq!(near_limit(&line("1000.00", "200.00")), None, "exactly 80%");
        assert_eq!(near_limit(&line("1000.00", "190.00")).unwrap().unwrap().to_string(), "81.00");
        assert_eq!(
            near_limit(&line("1000.00", "199.99")),
            Some(Some(d("80.01"))),
            "80.001% is above: rounded up, never shown as 80"
        );
        assert_eq!(
            near_limit(&line("1000.00", "-50.00")),
            Some(Some(d("105.00"))),
            "a limit lowered below what is owed"
        );
        assert_eq!(near_limit(&line("0", "0")), None);
        assert_eq!(near_limit(&line("0", "-10")), Some(None));
    }
}
