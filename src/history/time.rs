//! Times as people read them in lists: "3 days ago".

use chrono::{DateTime, Utc};

/// Environment variable that pins "now" (RFC 3339, e.g. `2025-03-01T12:00:00Z`) for
/// commands printing relative times. For tests only: it makes snapshots of `ferry history`
/// stable; nothing else reads it.
pub const NOW_VAR: &str = "FERRY_NOW";

/// The current time, or the one [`NOW_VAR`] pins.
pub fn now() -> DateTime<Utc> {
    std::env::var(NOW_VAR)
        .ok()
        .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

/// `then` relative to `now`: "just now", "5 minutes ago", "1 hour ago", "3 days ago",
/// "2 months ago", "1 year ago". A time in the future (clock skew) is "just now".
pub fn relative_time(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    let (n, unit) = match secs {
        ..60 => return "just now".into(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        86_400..2_592_000 => (secs / 86_400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_person_would_say_it() {
        let now: DateTime<Utc> = "2025-03-10T12:00:00Z".parse().unwrap();
        let ago = |secs: i64| relative_time(now - chrono::Duration::seconds(secs), now);
        assert_eq!(ago(-30), "just now");
        assert_eq!(ago(59), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(45 * 60), "45 minutes ago");
        assert_eq!(ago(3_600), "1 hour ago");
        assert_eq!(ago(3 * 86_400 + 5), "3 days ago");
        assert_eq!(ago(65 * 86_400), "2 months ago");
        assert_eq!(ago(400 * 86_400), "1 year ago");
    }
}
