//! The bounded queue between the proxy and the spool writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::SiemEvent;

/// The sending half: cheap to clone, and [`EventSender::send`] never waits.
#[derive(Debug, Clone)]
pub struct EventSender {
    // Boxed, so the queue's preallocated slots are a pointer each.
    tx: mpsc::SyncSender<Box<SiemEvent>>,
    dropped: Arc<AtomicU64>,
}

/// The receiving half, read by the spool writer.
#[derive(Debug)]
pub struct EventReceiver {
    pub(crate) rx: mpsc::Receiver<Box<SiemEvent>>,
    pub(crate) dropped: Arc<AtomicU64>,
}

/// Creates a queue that holds up to `capacity` events.
pub fn event_channel(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let sender = EventSender {
        tx,
        dropped: Arc::clone(&dropped),
    };
    (sender, EventReceiver { rx, dropped })
}

impl EventSender {
    /// Queues an event without waiting. When the queue is full or closed
    /// the event is dropped, counted and logged; the spool writer reports
    /// the count to the SIEM.
    pub fn send(&self, event: impl Into<SiemEvent>) {
        if let Err(err) = self.tx.try_send(Box::new(event.into())) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first loss and then every thousandth, not every one.
            if dropped == 1 || dropped.is_multiple_of(1000) {
                let reason = match err {
                    mpsc::TrySendError::Full(_) => "event queue is full",
                    mpsc::TrySendError::Disconnected(_) => "event spool has stopped",
                };
                tracing::error!(dropped, reason, "request event lost");
            }
        }
    }

    /// Events lost so far because the queue was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentEvent;

    #[test]
    fn full_queue_drops_and_counts() {
        let (tx, _rx) = event_channel(1);
        for _ in 0..3 {
            tx.send(AgentEvent::now("Test", String::new()));
        }
        assert_eq!(tx.dropped(), 2);
    }
}
