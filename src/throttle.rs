//! Repeated failures of a periodic task, logged once per interval with a count (issue 14: during a
//! Redis outage maintenance warned every second). The recovery is logged once, with the total.

use std::time::{Duration, Instant};

/// How long a repeated failure stays quiet after it was logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The state of one failing-or-not loop.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    last_logged: Option<Instant>,
    /// Failures not logged since the last line.
    quiet: u64,
    /// Failures since the last success.
    streak: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(LOG_EVERY)
    }
}

impl LogThrottle {
    /// Logs at most once per `every` while failing.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last_logged: None,
            quiet: 0,
            streak: 0,
        }
    }

    /// A failure: `Some(n)` when it should be logged now, `n` being the failures left unlogged
    /// since the previous line (0 for the first of a streak).
    pub fn failure(&mut self) -> Option<u64> {
        self.streak += 1;
        let due = self.last_logged.is_none_or(|t| t.elapsed() >= self.every);
        if due {
            self.last_logged = Some(Instant::now());
            Some(std::mem::take(&mut self.quiet))
        } else {
            self.quiet += 1;
            None
        }
    }

    /// True while failures have come since the last success.
    pub fn failing(&self) -> bool {
        self.streak > 0
    }

    /// A success: `Some(n)` once after a streak of `n` failures (log the recovery), else `None`.
    pub fn success(&mut self) -> Option<u64> {
        self.last_logged = None;
        self.quiet = 0;
        (self.streak > 0).then(|| std::mem::take(&mut self.streak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_logs_once_per_interval_and_its_recovery_once() {
        let mut t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.failure(), Some(0));
        for _ in 0..23 {
            assert_eq!(t.failure(), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.failure(), Some(23));
        assert_eq!(t.success(), Some(25));
        assert_eq!(t.success(), None);
        assert_eq!(t.failure(), Some(0), "a new streak logs at once");
    }
}
