//! The event channel and the JSON-lines file sink.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::Event;

/// The reason a sink failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The events file could not be opened or written.
    #[error("failed to write events file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Maximum time a written event waits in the buffer before it reaches the
/// file.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The sending half: cheap to clone, and [`EventSender::send`] never waits.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The receiving half, consumed by a sink.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Event>,
}

/// Creates a channel that holds up to `capacity` events.
pub fn event_channel(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let sender = EventSender {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    (sender, EventReceiver { rx })
}

impl EventSender {
    /// Queues an event without waiting. When the channel is full or closed
    /// the event is dropped, counted and logged.
    pub fn send(&self, event: Event) {
        if let Err(err) = self.tx.try_send(event) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first loss and then every thousandth, not every one.
            if dropped == 1 || dropped % 1000 == 0 {
                let reason = match err {
                    mpsc::error::TrySendError::Full(_) => "event queue is full",
                    mpsc::error::TrySendError::Closed(_) => "event sink has stopped",
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

/// Writes events as JSON lines, one object per line, appending to a file.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl JsonLinesSink {
    /// Opens (or creates) the file for appending.
    ///
    /// # Errors
    ///
    /// Returns [`SinkError::File`] when the file cannot be opened.
    pub async fn open(path: &Path) -> Result<JsonLinesSink, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|source| file_error(path, source))?;
        Ok(JsonLinesSink {
            path: path.to_owned(),
            writer: BufWriter::new(file),
        })
    }

    /// Writes events until every sender is dropped, then flushes. Lines are
    /// buffered and flushed at most [`FLUSH_INTERVAL`] after they are
    /// written, so a busy proxy makes one file write per buffer, not one per
    /// request.
    ///
    /// # Errors
    ///
    /// Returns [`SinkError::File`] when a write fails.
    pub async fn run(mut self, mut events: EventReceiver) -> Result<(), SinkError> {
        let mut batch = Vec::with_capacity(256);
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unflushed = false;
        loop {
            tokio::select! {
                received = events.rx.recv_many(&mut batch, 256) => {
                    if received == 0 {
                        break;
                    }
                    for event in batch.drain(..) {
                        self.write(&event).await?;
                    }
                    unflushed = true;
                }
                _ = flush.tick(), if unflushed => {
                    self.flush().await?;
                    unflushed = false;
                }
            }
        }
        self.flush().await
    }

    async fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(event).expect("events always serialize");
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|source| file_error(&self.path, source))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.writer
            .flush()
            .await
            .map_err(|source| file_error(&self.path, source))
    }
}

fn file_error(path: &Path, source: io::Error) -> SinkError {
    SinkError::File {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventCategory;

    fn event(url: &str) -> Event {
        Event {
            event_name: crate::ALLOWED_EVENT_NAME.to_owned(),
            event_category: EventCategory::Allowed,
            timestamp: "2026-01-01T00:00:00Z".to_owned(),
            source_ip: "127.0.0.1".parse().unwrap(),
            source_port: 1,
            destination_ip: None,
            destination_port: 80,
            destination_host: "example.com".to_owned(),
            method: "GET".to_owned(),
            url: url.to_owned(),
            status: 200,
            bytes: 0,
            rule: None,
            rule_source: None,
            rule_line: None,
            response_status: Some(200),
            error: None,
        }
    }

    #[tokio::test]
    async fn sink_appends_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let (tx, rx) = event_channel(8);
        let sink = JsonLinesSink::open(&path).await.unwrap();
        let task = tokio::spawn(sink.run(rx));
        tx.send(event("http://example.com/a"));
        tx.send(event("http://example.com/b"));
        drop(tx);
        task.await.unwrap().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let second: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(second["url"], "http://example.com/b");
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let (tx, _rx) = event_channel(1);
        tx.send(event("http://example.com/1"));
        tx.send(event("http://example.com/2"));
        tx.send(event("http://example.com/3"));
        assert_eq!(tx.dropped(), 2);
    }
}
