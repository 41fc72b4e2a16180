//! The most recent blocked requests, newest first, in a fixed amount of
//! memory.

use std::collections::VecDeque;

/// One blocked request as the window lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedRequest {
    /// When it was blocked, as RFC 3339 text from the event.
    pub time: String,
    /// The destination host.
    pub host: String,
    /// The category of the rule that blocked it.
    pub category: String,
}

/// A ring of the last `capacity` blocked requests.
#[derive(Debug, Clone)]
pub struct RecentBlocks {
    capacity: usize,
    entries: VecDeque<BlockedRequest>,
}

impl RecentBlocks {
    /// Creates an empty ring that keeps up to `capacity` requests (at least
    /// one).
    pub fn new(capacity: usize) -> RecentBlocks {
        let capacity = capacity.max(1);
        RecentBlocks {
            capacity,
            entries: VecDeque::with_capacity(capacity),
        }
    }

    /// Adds a request, dropping the oldest when the ring is full.
    pub fn push(&mut self, request: BlockedRequest) {
        if self.entries.len() == self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front(request);
    }

    /// Returns the requests, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &BlockedRequest> {
        self.entries.iter()
    }

    /// Returns the number of requests kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Checks whether no request is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(host: &str) -> BlockedRequest {
        BlockedRequest {
            time: "2026-12-04T10:00:00Z".to_owned(),
            host: host.to_owned(),
            category: "Gambling".to_owned(),
        }
    }

    fn hosts(ring: &RecentBlocks) -> Vec<&str> {
        ring.newest_first().map(|r| r.host.as_str()).collect()
    }

    #[test]
    fn newest_comes_first() {
        let mut ring = RecentBlocks::new(3);
        assert!(ring.is_empty());
        ring.push(blocked("a.test"));
        ring.push(blocked("b.test"));
        assert_eq!(hosts(&ring), ["b.test", "a.test"]);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn full_ring_drops_the_oldest() {
        let mut ring = RecentBlocks::new(3);
        for host in ["a.test", "b.test", "c.test", "d.test", "e.test"] {
            ring.push(blocked(host));
        }
        assert_eq!(hosts(&ring), ["e.test", "d.test", "c.test"]);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn zero_capacity_keeps_one() {
        let mut ring = RecentBlocks::new(0);
        ring.push(blocked("a.test"));
        ring.push(blocked("b.test"));
        assert_eq!(hosts(&ring), ["b.test"]);
    }
}
