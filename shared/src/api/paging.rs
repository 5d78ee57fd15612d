//! Paging of every list route: `limit` (a per-route default, at most [`MAX_PAGE_SIZE`]) and the opaque
//! `cursor` in, `nextCursor` out, signed and opened by [`super::cursor`].

use lambda_http::Request;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::App;
use super::cursor::{CursorKey, CursorList, invalid_cursor};
use super::error::AppError;
use super::http::query_parameter;

/// The client's lists answer this many items when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// The agency's lists answer this many items when `limit` is not given.
pub const AGENCY_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 100;

/// One list request's paging: how many items, and the key that opens its cursor and signs the next.
pub struct Paging<'a> {
    pub limit: usize,
    cursors: &'a CursorKey,
}

impl<'a> Paging<'a> {
    /// Reads `limit` (absent: `default`). The cursor is read by [`Paging::after`], in the order each route has
    /// always checked its parameters in.
    pub fn read(app: &'a App, request: &Request, default: usize) -> Result<Paging<'a>, AppError> {
        let cursors = app.cursor_key()?;
        let limit = page_size_or(query_parameter(request, "limit")?.as_deref(), default)?;
        Ok(Paging { limit, cursors })
    }

    /// Where the page starts: the request's `cursor` opened as a position of `list`, refused with `not_ours`
    /// unless `is_ours` says the position is in the caller's own list (a valid tag proves we issued it, not to
    /// whom). `None` without a cursor.
    pub fn after<P: DeserializeOwned>(
        &self,
        request: &Request,
        list: CursorList,
        is_ours: impl FnOnce(&P) -> bool,
        not_ours: &'static str,
    ) -> Result<Option<P>, AppError> {
        match query_parameter(request, "cursor")? {
            Some(cursor) => self.open(list, &cursor, is_ours, not_ours).map(Some),
            None => Ok(None),
        }
    }

    /// [`Paging::after`] for a cursor already read.
    pub fn open<P: DeserializeOwned>(
        &self,
        list: CursorList,
        cursor: &str,
        is_ours: impl FnOnce(&P) -> bool,
        not_ours: &'static str,
    ) -> Result<P, AppError> {
        let position: P = self.cursors.open(list, cursor)?;
        if !is_ours(&position) {
            return Err(invalid_cursor(not_ours));
        }
        Ok(position)
    }

    /// `nextCursor`: the position the next page starts after, signed for `list`; `None` on the last page.
    pub fn next_cursor<P: Serialize>(&self, list: CursorList, next: Option<&P>) -> Option<String> {
        next.map(|position| self.cursors.sign(list, position))
    }
}

/// `limit`: absent → 20; else a plain whole number 1..=100.
pub fn page_size(raw: Option<&str>) -> Result<usize, AppError> {
    page_size_or(raw, DEFAULT_PAGE_SIZE)
}

/// `limit`: absent → `default`; else a plain whole number 1..=100.
pub fn page_size_or(raw: Option<&str>, default: usize) -> Result<usize, AppError> {
    let Some(raw) = raw else { return Ok(default) };
    let invalid = || AppError::InvalidQuery {
        parameter: "limit",
        detail: format!("`limit` must be a whole number from 1 to {MAX_PAGE_SIZE} (got {raw:?})."),
    };
    // Digits only: no sign, spaces or exponent; at most three so parsing cannot overflow.
    if raw.is_empty() || raw.len() > 3 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_strict() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some("1")).unwrap(), 1);
        assert_eq!(page_size(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "abc", "", "-1", "+5", " 5", "5.0", "1e2", "1000"] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_agency_default_differs_and_the_rules_do_not() {
        assert_eq!(page_size_or(None, AGENCY_PAGE_SIZE).unwrap(), 25);
        assert_eq!(page_size_or(Some("100"), AGENCY_PAGE_SIZE).unwrap(), 100);
        assert!(page_size_or(Some("101"), AGENCY_PAGE_SIZE).is_err());
    }
}
