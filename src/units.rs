//! Durations and sizes as people write them ("90s", "16MiB"): below both
//! the service configuration and the database's own `mdb.yaml`, which
//! read them alike. Parsing only; each setting names its own bounds.

use std::time::Duration;

/// The longest any duration setting may be: beyond it a typo, not a plan.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses "90s", "5m", "1h", "250ms" or a plain number of seconds, up to
/// [`MAX_DURATION`]; anything longer or malformed is `None`, never a panic.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    let d = Duration::try_from_secs_f64(secs).ok()?;
    (d <= MAX_DURATION).then_some(d)
}

/// Parses "16MiB", "512KiB", "1GiB", "2MB" or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
        assert_eq!(parse_duration("367d"), None);
        assert_eq!(parse_duration("1e400"), None);
    }

    #[test]
    fn sizes_parse_and_overflow_is_refused() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("99999999999GiB"), None);
        assert_eq!(parse_size("big"), None);
    }
}
