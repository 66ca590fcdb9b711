//! Wall-clock helpers shared by the clients (agent runs, monitor, ledger, reports): Unix
//! seconds, UTC timestamps in RFC 3339, and durations written as `30s`, `15m`, `24h`, `7d`.
//!
//! No time-zone database: everything is UTC, which is what logs, ledgers and Prometheus use.

use crate::error::{Error, Result};
use std::time::Duration;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, now, with the fraction (what Prometheus's API takes).
pub fn now_unix_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-12-03T19:30:05Z` for Unix seconds.
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = fields(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261203-193005` for Unix seconds (sorts by time; safe in file names).
pub fn compact(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = fields(unix);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// Year, month, day, hour, minute, second (UTC) of Unix seconds.
fn fields(unix: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `500ms`, `30s`, `15m`, `24h`, `7d` (a whole number and one unit). `what` names
/// the setting in the error.
pub fn parse_duration(text: &str, what: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        Error::invalid(format!(
            "{what}: {t:?} is not a duration (a whole number and a unit: 500ms, 30s, 15m, 24h, 7d)"
        ))
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// A duration the way [`parse_duration`] reads it back, in its largest whole unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_as_written() {
        for text in ["500ms", "30s", "15m", "12h", "7d"] {
            let d = parse_duration(text, "window").unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(parse_duration("90s", "x").unwrap(), Duration::from_secs(90));
        for bad in [
            "",
            "15",
            "m",
            "1.5h",
            "-3s",
            "15 minutes",
            "99999999999999999999d",
        ] {
            let e = parse_duration(bad, "--window").unwrap_err().to_string();
            assert!(e.starts_with("--window: "), "{e}");
        }
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_798_313_405), "2026-12-26T19:30:05Z");
        assert_eq!(compact(951_825_600), "20000229-120000");
    }
}
