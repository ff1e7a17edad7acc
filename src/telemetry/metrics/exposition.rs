//! OpenMetrics → Prometheus text format.
//!
//! `prometheus-client` writes OpenMetrics, where a counter family `x` is declared as
//! `# TYPE x counter` and its sample is `x_total`. The classic text parser (Prometheus with text
//! negotiation, `promtool check metrics`, many agents) then sees `x_total` as an untyped family
//! without help text. Renaming the counter's `HELP`/`TYPE` lines to `x_total` and dropping the
//! OpenMetrics-only lines (`# EOF`, `# UNIT`) yields valid 0.0.4 text with the same samples.

use std::collections::HashSet;

/// Content type of the classic text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Rewrites an OpenMetrics exposition as Prometheus text.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_declared_under_their_sample_name() {
        let om = "# HELP a_ops Ops.\n# TYPE a_ops counter\na_ops_total{k=\"v\"} 3\n\
                  # HELP a_depth Depth.\n# TYPE a_depth gauge\n# UNIT a_depth items\na_depth 2\n# EOF\n";
        let text = prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_ops_total Ops.\n# TYPE a_ops_total counter\na_ops_total{k=\"v\"} 3\n\
             # HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 2\n"
        );
    }
}
