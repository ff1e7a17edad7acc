//! Priority from PR labels (`atlantis/priority:<level>` by default).

use crate::classify::Priority;

/// A label pattern with one `<level>` placeholder.
#[derive(Clone, Debug)]
pub struct LabelPattern {
    prefix: String,
    suffix: String,
}

impl LabelPattern {
    /// Parses a pattern such as `atlantis/priority:<level>` (validated by config to hold `<level>`).
    pub fn new(pattern: &str) -> Self {
        let (prefix, suffix) = pattern.split_once("<level>").unwrap_or((pattern, ""));
        Self {
            prefix: prefix.to_ascii_lowercase(),
            suffix: suffix.to_ascii_lowercase(),
        }
    }

    /// The highest priority named by any matching label.
    pub fn priority(&self, labels: &[String]) -> Option<Priority> {
        labels
            .iter()
            .filter_map(|l| {
                let l = l.trim().to_ascii_lowercase();
                let level = l.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
                level.parse::<Priority>().ok()
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_priorities_and_the_highest_wins() {
        let p = LabelPattern::new("atlantis/priority:<level>");
        let labels = |ls: &[&str]| ls.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            p.priority(&labels(&["bug", "atlantis/priority:high"])),
            Some(Priority::High)
        );
        assert_eq!(
            p.priority(&labels(&[
                "Atlantis/Priority:LOW",
                "atlantis/priority:critical"
            ])),
            Some(Priority::Critical)
        );
        assert_eq!(
            p.priority(&labels(&["atlantis/priority:urgent", "priority:high"])),
            None
        );
        let q = LabelPattern::new("prio-<level>-lane");
        assert_eq!(q.priority(&labels(&["prio-low-lane"])), Some(Priority::Low));
    }
}
