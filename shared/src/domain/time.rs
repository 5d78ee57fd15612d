//! The one timestamp format of the table: RFC 3339, UTC, milliseconds ("2026-12-01T00:00:00.000Z").
//!
//! Fixed width, so timestamps sort as text in time order: the unbilled indexes' sort keys, statement keys and
//! a billing run's cycle end all compare as strings and must all be made here.

use std::time::SystemTime;

pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_fixed_width_and_sort_in_time_order() {
        let earlier = UNIX_EPOCH + Duration::from_millis(1_795_000_000_005);
        let later = earlier + Duration::from_millis(995);
        assert_eq!(timestamp(earlier), "2026-11-18T11:06:40.005Z");
        assert_eq!(timestamp(earlier).len(), timestamp(later).len());
        assert!(timestamp(earlier) < timestamp(later));
    }
}
