//! Rate limits for block notifications: at most one per host within a
//! quiet period, and at most a few per minute in all. The next
//! notification counts the blocks held back, so none is lost without a
//! trace.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window of the overall cap.
const MINUTE: Duration = Duration::from_secs(60);

/// Hosts remembered at most; past it, hosts outside the quiet period are
/// forgotten first.
const MAX_HOSTS: usize = 4096;

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The blocked host.
    pub host: String,
    /// The category of the rule that blocked it.
    pub category: String,
    /// Blocks held back since the previous notification.
    pub held_back: u64,
}

impl Notification {
    /// Returns the notification's body text.
    pub fn body(&self) -> String {
        let mut text = format!("{} was blocked ({}).", self.host, self.category);
        match self.held_back {
            0 => {}
            1 => text.push_str(" 1 more block was not shown."),
            n => text.push_str(&format!(" {n} more blocks were not shown.")),
        }
        text
    }
}

/// Rate limits for block notifications.
#[derive(Debug, Clone)]
pub struct NotificationLimiter {
    per_host: Duration,
    per_minute: usize,
    last_by_host: HashMap<String, Instant>,
    recent_shown: VecDeque<Instant>,
    held_back: u64,
}

impl NotificationLimiter {
    /// Creates a limiter that shows a host again only after `per_host` and
    /// shows at most `per_minute` notifications in any minute (at least one).
    pub fn new(per_host: Duration, per_minute: usize) -> NotificationLimiter {
        NotificationLimiter {
            per_host,
            per_minute: per_minute.max(1),
            last_by_host: HashMap::new(),
            recent_shown: VecDeque::new(),
            held_back: 0,
        }
    }

    /// Decides whether the block of `host` at `now` raises a notification.
    /// A block held back is counted in the next notification.
    pub fn offer(&mut self, now: Instant, host: &str, category: &str) -> Option<Notification> {
        while self
            .recent_shown
            .front()
            .is_some_and(|&time| now.saturating_duration_since(time) >= MINUTE)
        {
            self.recent_shown.pop_front();
        }
        let host_is_quiet = self
            .last_by_host
            .get(host)
            .is_some_and(|&last| now.saturating_duration_since(last) < self.per_host);
        if host_is_quiet || self.recent_shown.len() >= self.per_minute {
            self.held_back += 1;
            return None;
        }

        self.recent_shown.push_back(now);
        self.remember(host, now);
        Some(Notification {
            host: host.to_owned(),
            category: category.to_owned(),
            held_back: std::mem::take(&mut self.held_back),
        })
    }

    /// Records that `host` was shown at `now`, forgetting hosts outside the
    /// quiet period when too many are remembered.
    fn remember(&mut self, host: &str, now: Instant) {
        if self.last_by_host.len() >= MAX_HOSTS && !self.last_by_host.contains_key(host) {
            let per_host = self.per_host;
            self.last_by_host
                .retain(|_, &mut last| now.saturating_duration_since(last) < per_host);
        }
        self.last_by_host.insert(host.to_owned(), now);
    }
}

/// Checks whether block notifications are shown: the employee's setting,
/// unless the administrator's policy forces them on.
pub fn notifications_enabled(user_setting: bool, forced_by_policy: bool) -> bool {
    user_setting || forced_by_policy
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn shown_hosts(results: &[Option<Notification>]) -> Vec<&str> {
        results.iter().flatten().map(|n| n.host.as_str()).collect()
    }

    #[test]
    fn same_host_waits_for_quiet_period() {
        let start = Instant::now();
        let mut limiter = NotificationLimiter::new(FIVE_MINUTES, 10);
        assert!(limiter.offer(start, "a.test", "Ads").is_some());
        assert!(limiter
            .offer(start + Duration::from_secs(299), "a.test", "Ads")
            .is_none());

        let again = limiter
            .offer(start + FIVE_MINUTES, "a.test", "Ads")
            .expect("shown after the quiet period");
        assert_eq!(again.held_back, 1);
    }

    #[test]
    fn overall_cap_holds_back_and_counts() {
        let start = Instant::now();
        let mut limiter = NotificationLimiter::new(FIVE_MINUTES, 3);
        let results: Vec<_> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|host| limiter.offer(start, host, "Ads"))
            .collect();
        assert_eq!(shown_hosts(&results), ["a", "b", "c"]);

        let next = limiter
            .offer(start + MINUTE, "f", "Malware")
            .expect("shown once the minute has passed");
        assert_eq!(next.held_back, 2);
        assert_eq!(next.category, "Malware");
        let after = limiter.offer(start + MINUTE, "g", "Ads").unwrap();
        assert_eq!(after.held_back, 0);
    }

    #[test]
    fn cap_is_a_sliding_minute() {
        let start = Instant::now();
        let mut limiter = NotificationLimiter::new(FIVE_MINUTES, 2);
        assert!(limiter.offer(start, "a", "Ads").is_some());
        assert!(limiter
            .offer(start + Duration::from_secs(30), "b", "Ads")
            .is_some());
        assert!(limiter
            .offer(start + Duration::from_secs(59), "c", "Ads")
            .is_none());
        assert!(limiter
            .offer(start + Duration::from_secs(60), "d", "Ads")
            .is_some());
        assert!(limiter
            .offer(start + Duration::from_secs(61), "e", "Ads")
            .is_none());
    }

    #[test]
    fn many_hosts_are_forgotten_outside_the_quiet_period() {
        let start = Instant::now();
        let mut limiter = NotificationLimiter::new(Duration::from_secs(1), usize::MAX);
        for i in 0..MAX_HOSTS {
            limiter.offer(start, &format!("h{i}.test"), "Ads");
        }
        let later = start + Duration::from_secs(2);
        assert!(limiter.offer(later, "new.test", "Ads").is_some());
        assert_eq!(limiter.last_by_host.len(), 1);
    }

    #[test]
    fn body_names_host_category_and_held_back() {
        let mut notification = Notification {
            host: "casino.test".to_owned(),
            category: "Gambling".to_owned(),
            held_back: 0,
        };
        assert_eq!(notification.body(), "casino.test was blocked (Gambling).");
        notification.held_back = 1;
        assert!(notification
            .body()
            .ends_with(" 1 more block was not shown."));
        notification.held_back = 7;
        assert!(notification
            .body()
            .ends_with(" 7 more blocks were not shown."));
    }

    #[test]
    fn policy_forces_notifications_on() {
        assert!(notifications_enabled(true, false));
        assert!(!notifications_enabled(false, false));
        assert!(notifications_enabled(false, true));
    }
}
