//! Rate-limit values as people write them: `50/s`, `600/m burst 100`, `off`.

use std::time::Duration;

use super::{ConfigError, RateSpec};

/// Parses `<count>/<s|m|h> [burst <n>]` (also `per-second`-style units `sec`, `min`, `hour`);
/// `off` or an empty value means no limit. The burst defaults to the count.
pub(super) fn parse(key: &str, value: Option<&str>) -> Result<Option<RateSpec>, ConfigError> {
    let Some(text) = value.map(str::trim) else {
        return Ok(None);
    };
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        ConfigError::new(
            key,
            format!("'{text}' is not a rate; write it like `50/s`, `600/m burst 100` or `off`"),
        )
    };
    let mut words = text.split_whitespace();
    let rate = words.next().ok_or_else(bad)?;
    let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    let burst = match (words.next(), words.next(), words.next()) {
        (None, _, _) => count,
        (Some("burst"), Some(n), None) => n.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if count == 0 || burst == 0 {
        return Err(ConfigError::new(
            key,
            "a rate of 0 would refuse everything; write `off` to disable the limit",
        ));
    }
    Ok(Some(RateSpec { count, per, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_people_write_them() {
        let r = parse("k", Some("50/s burst 100")).unwrap().unwrap();
        assert_eq!((r.count, r.per, r.burst), (50, Duration::from_secs(1), 100));
        let r = parse("k", Some("600/m")).unwrap().unwrap();
        assert_eq!(
            (r.count, r.per, r.burst),
            (600, Duration::from_secs(60), 600)
        );
        assert_eq!(parse("k", Some("off")).unwrap(), None);
        assert_eq!(parse("k", None).unwrap(), None);
    }

    #[test]
    fn limits_are_off_by_default_and_read_from_server_and_admin() {
        let c = crate::config::Config::from_yaml("").unwrap();
        assert!(c.server.rate_limit.per_ip.is_none() && c.server.rate_limit.per_repo.is_none());
        assert!(c.admin.rate_limit.is_none());
        let c = crate::config::Config::from_yaml(
            "server:\n  rate-limit:\n    per-ip: 50/s burst 100\n    per-repo: 20/s\nadmin:\n  rate-limit: 10/m\n",
        )
        .unwrap();
        assert_eq!(c.server.rate_limit.per_ip.map(|r| r.burst), Some(100));
        assert_eq!(c.server.rate_limit.per_repo.map(|r| r.count), Some(20));
        assert_eq!(
            c.admin.rate_limit.map(|r| r.per),
            Some(Duration::from_secs(60))
        );
        let e = crate::config::Config::from_yaml("server:\n  rate-limit:\n    per-host: 1/s\n")
            .unwrap_err();
        assert!(e.to_string().contains("per-host"), "{e}");
    }

    #[test]
    fn bad_rates_name_the_key() {
        for bad in ["fast", "50", "50/d", "50/s burst", "50/s bursts 3", "0/s"] {
            let e = parse("server.rate-limit.per-ip", Some(bad)).unwrap_err();
            assert_eq!(e.key, "server.rate-limit.per-ip", "{bad}");
        }
    }
}
