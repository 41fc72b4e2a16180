//! The bounded queue between the proxy and the spool writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::{Event, SiemEvent};

/// A function called with each request event before it is queued.
pub type EventObserver = Arc<dyn Fn(&Event) + Send + Sync>;

/// The sending half: cheap to clone, and [`EventSender::send`] never waits.
#[derive(Clone)]
pub struct EventSender {
    // Boxed, so the queue's preallocated slots are a pointer each.
    tx: mpsc::SyncSender<Box<SiemEvent>>,
    dropped: Arc<AtomicU64>,
    observer: Option<EventObserver>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("dropped", &self.dropped)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
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
        observer: None,
    };
    (sender, EventReceiver { rx, dropped })
}

impl EventReceiver {
    /// Takes the next queued event without waiting.
    pub fn try_recv(&self) -> Option<SiemEvent> {
        self.rx.try_recv().ok().map(|event| *event)
    }
}

impl EventSender {
    /// Returns a sender that also shows each request event to `observer`
    /// (the tray app's notifications), on the sending thread, so the
    /// observer must return quickly.
    pub fn observed(self, observer: EventObserver) -> EventSender {
        EventSender {
            observer: Some(observer),
            ..self
        }
    }

    /// Queues an event without waiting. When the queue is full or closed
    /// the event is dropped, counted and logged; the spool writer reports
    /// the count to the SIEM.
    pub fn send(&self, event: impl Into<SiemEvent>) {
        let event = event.into();
        if let (Some(observer), SiemEvent::Request(request)) = (&self.observer, &event) {
            observer(request);
        }
        if let Err(err) = self.tx.try_send(Box::new(event)) {
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

    #[test]
    fn observer_sees_request_events_only() {
        use std::sync::Mutex;

        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let (tx, rx) = event_channel(4);
        let tx = tx.observed(Arc::new(move |event: &Event| {
            record.lock().unwrap().push(event.destination_host.clone());
        }));
        tx.send(AgentEvent::now("Test", String::new()));
        let mut event = crate::event::sample_event();
        event.destination_host = "seen.example".to_owned();
        tx.send(event);
        assert_eq!(*seen.lock().unwrap(), ["seen.example"]);
        assert_eq!(rx.rx.try_iter().count(), 2, "both events are still queued");
    }
}
