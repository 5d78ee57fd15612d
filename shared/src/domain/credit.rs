//! Pay-later credit lines: how much a client (at price) and an agency (at cost) may owe before paying.
//!
//! A line is kept as its `limit` and its `available` amount; the outstanding amount (purchases not yet paid) is
//! `limit − available`. A purchase takes its total out of `available` under the condition that it stays ≥ 0,
//! inside the purchase's own transaction (DynamoDB conditions cannot add, so the sum is kept, not recomputed);
//! a payment puts its amount back. Changing a limit moves `available` by the difference and may leave it
//! negative, in which case purchases are refused until payments come in.

use rust_decimal::Decimal;

/// A client's limit at price when neither its seed entry nor its agency sets one: 10,000.00.
pub const DEFAULT_CLIENT_CREDIT_LIMIT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 2);

/// An agency's ceiling at cost (what all its clients together may owe the platform) when it sets none:
/// 250,000.00.
pub const DEFAULT_AGENCY_CEILING_AT_COST: Decimal = Decimal::from_parts(25_000_000, 0, 0, false, 2);

/// The largest limit or ceiling accepted (10 trillion): above the largest possible purchase (four types of
/// 1,000,000 credits at the 1,000,000.00 price cap), far below what a DynamoDB number holds.
pub const MAX_CREDIT_LIMIT: Decimal = Decimal::from_parts(1_316_134_912, 2_328, 0, false, 0);

/// A line as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditLine {
    pub limit: Decimal,
    pub available: Decimal,
}

impl CreditLine {
    /// A new line: nothing owed yet.
    pub fn new(limit: Decimal) -> CreditLine {
        CreditLine { limit, available: limit }
    }

    /// What is owed and not yet paid.
    pub fn outstanding(&self) -> Decimal {
        self.limit - self.available
    }

    /// The same line with another limit: what is owed stays, so `available` moves by the difference.
    pub fn with_limit(&self, limit: Decimal) -> CreditLine {
        CreditLine { limit, available: self.available + (limit - self.limit) }
    }
}

/// Checks a limit or ceiling: non-negative, whole cents, at most [`MAX_CREDIT_LIMIT`].
pub fn check_credit_limit(what: &str, limit: Decimal) -> Result<(), String> {
    if limit.is_sign_negative() || limit > MAX_CREDIT_LIMIT || limit.normalize().scale() > 2 {
        return Err(format!(
            "{what} must be an amount from 0 to {MAX_CREDIT_LIMIT} with at most two decimals: {limit}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_what_the_readme_says() {
        assert_eq!(DEFAULT_CLIENT_CREDIT_LIMIT.to_string(), "10000.00");
        assert_eq!(DEFAULT_AGENCY_CEILING_AT_COST.to_string(), "250000.00");
        assert_eq!(MAX_CREDIT_LIMIT.to_string(), "10000000000000");
    }

    #[test]
    fn a_new_limit_keeps_what_is_owed_and_may_leave_available_negative() {
        let line = CreditLine { limit: d("1000.00"), available: d("400.00") };
        assert_eq!(line.outstanding(), d("600.00"));
        let raised = line.with_limit(d("1500.00"));
        assert_eq!((raised.available, raised.outstanding()), (d("900.00"), d("600.00")));
        let lowered = line.with_limit(d("500.00"));
        assert_eq!((lowered.available, lowered.outstanding()), (d("-100.00"), d("600.00")));
    }

    #[test]
    fn limits_are_whole_cents_in_range() {
        assert!(check_credit_limit("x", d("0")).is_ok());
        assert!(check_credit_limit("x", d("2500.50")).is_ok());
        assert!(check_credit_limit("x", d("-1")).is_err());
        assert!(check_credit_limit("x", d("0.001")).is_err());
        assert!(check_credit_limit("x", d("10000000000000.01")).is_err());
    }
}
