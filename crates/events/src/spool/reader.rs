//! A sink's reader: reads batches from its saved position and saves the
//! new position once the sink has delivered them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{write_atomically, ReaderProgress, Segment, Shared, SpoolError, CURSOR_DIR};
use crate::AgentEvent;

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number, or 0 for an `EventsDropped` notice made by the
    /// reader.
    pub seq: u64,
    /// The JSON object, without the newline.
    pub json: String,
}

/// Events to deliver in order. When the batch starts with an
/// `EventsDropped` notice, `notice` is true.
#[derive(Debug)]
pub struct Batch {
    /// The events.
    pub records: Vec<Record>,
    notice: bool,
    /// The position after each record that came from the spool.
    ends: Vec<Position>,
}

impl Batch {
    /// Returns true when the batch has nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A reader's position: a segment, a byte offset in it, and the sequence
/// number of the event that starts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    segment: u64,
    offset: u64,
    seq: u64,
}

impl Position {
    fn start_of(segment: &Segment) -> Position {
        Position {
            segment: segment.first_seq,
            offset: 0,
            seq: segment.first_seq,
        }
    }
}

/// The saved state of one sink's reader.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    sink: String,
    #[serde(flatten)]
    position: Position,
    /// Events lost to the byte limit and not yet reported.
    dropped: u64,
}

/// Reads the spool for one sink.
#[derive(Debug)]
pub struct SpoolReader {
    shared: Arc<Shared>,
    name: String,
    cursor_path: PathBuf,
    position: Position,
    dropped: u64,
    progress: Arc<ReaderProgress>,
    appended: watch::Receiver<u64>,
    /// The open segment file and its first sequence number.
    file: Option<(u64, File)>,
    buf: Vec<u8>,
}

impl SpoolReader {
    pub(super) fn open(shared: Arc<Shared>, name: &str) -> Result<SpoolReader, SpoolError> {
        let digest = Sha256::digest(name.as_bytes());
        let cursor_path = shared
            .dir
            .join(CURSOR_DIR)
            .join(format!("{}.json", crate::identity::hex(&digest[..8])));
        let saved = read_cursor(&cursor_path)?;
        let is_new = saved.is_none();
        let (position, dropped, skipped) = {
            let state = shared.lock_state();
            let oldest = state.segments.front().map(Position::start_of);
            let empty = Position {
                segment: state.next_seq,
                offset: 0,
                seq: state.next_seq,
            };
            let end = state.segments.back().map_or(empty, |last| Position {
                segment: last.first_seq,
                offset: last.len,
                seq: state.next_seq,
            });
            let retained = state.next_seq - oldest.map_or(state.next_seq, |p| p.seq);
            match saved {
                // A position past the end belongs to a spool that was
                // deleted; start again at its new beginning.
                Some(cursor) if cursor.position.seq > state.next_seq => {
                    (oldest.unwrap_or(empty), 0, 0)
                }
                Some(cursor) => (cursor.position, cursor.dropped, 0),
                // A sink added to a running agent gets the events from now
                // on, not a burst of what other sinks still hold.
                None => (end, 0, retained),
            }
        };
        let progress = Arc::new(ReaderProgress {
            committed: position.seq.into(),
        });
        shared
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&progress));
        let appended = shared.appended.subscribe();
        let reader = SpoolReader {
            shared,
            name: name.to_owned(),
            cursor_path,
            position,
            dropped,
            progress,
            appended,
            file: None,
            buf: Vec::new(),
        };
        if is_new {
            // Saved at once, so a crash before the first delivery does not
            // make the sink new again and skip its backlog.
            reader
                .save()
                .map_err(SpoolError::io("write", &reader.cursor_path))?;
            if skipped > 0 {
                tracing::info!(sink = name, skipped, "new sink starts with new events; events already in the spool go only to the other sinks");
            }
        }
        Ok(reader)
    }

    /// Returns the sink name the reader was opened for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns how many spooled events this sink has not delivered.
    pub fn pending(&self) -> u64 {
        self.shared
            .lock_state()
            .next_seq
            .saturating_sub(self.position.seq)
    }

    /// Returns a handle that reads the pending count from another task.
    pub fn pending_gauge(&self) -> PendingGauge {
        PendingGauge {
            shared: Arc::clone(&self.shared),
            progress: Arc::clone(&self.progress),
        }
    }

    /// Waits for events and returns up to `max_records` of them (and about
    /// `max_bytes`), or `None` once `stop` is set and nothing is left.
    ///
    /// # Errors
    ///
    /// Returns the I/O error of reading a segment.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> io::Result<Option<Batch>> {
        loop {
            // Mark the current count as seen before reading, so an append
            // between the read and the wait still wakes the wait.
            self.appended.borrow_and_update();
            if let Some(batch) = self.read(max_records.max(1), max_bytes)? {
                return Ok(Some(batch));
            }
            if *stop.borrow() {
                return Ok(None);
            }
            tokio::select! {
                changed = self.appended.changed() => {
                    if changed.is_err() {
                        return Ok(None);
                    }
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// Reads what is available now.
    fn read(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Option<Batch>> {
        loop {
            let Some((segment, next)) = self.locate() else {
                return Ok(self.notice_only());
            };
            if self.position.offset < segment.len {
                let available = segment.len - self.position.offset;
                return self.read_segment(&segment, available, max_records, max_bytes);
            }
            match next {
                Some(next) => {
                    self.position = Position::start_of(&next);
                    self.file = None;
                }
                None => return Ok(self.notice_only()),
            }
        }
    }

    /// Finds the reader's segment and the one after it, moving the reader
    /// to the oldest segment (and counting the loss) when its own was
    /// deleted for the byte limit.
    fn locate(&mut self) -> Option<(Segment, Option<Segment>)> {
        let state = self.shared.lock_state();
        let oldest = state.segments.front()?;
        if self.position.seq < oldest.first_seq {
            self.dropped += oldest.first_seq - self.position.seq;
            self.position = Position::start_of(oldest);
            self.file = None;
        }
        let index = state
            .segments
            .iter()
            .position(|segment| segment.first_seq == self.position.segment);
        let index = match index {
            Some(index) => index,
            None => {
                // A saved position in a segment that no longer exists but
                // is not older than the oldest: the files were changed by
                // hand. Start at the oldest segment.
                self.position = Position::start_of(oldest);
                self.file = None;
                0
            }
        };
        Some((
            state.segments[index].clone(),
            state.segments.get(index + 1).cloned(),
        ))
    }

    fn notice_only(&mut self) -> Option<Batch> {
        let mut batch = Batch {
            records: Vec::new(),
            notice: false,
            ends: Vec::new(),
        };
        self.add_notice(&mut batch);
        (!batch.records.is_empty()).then_some(batch)
    }

    fn add_notice(&self, batch: &mut Batch) {
        if self.dropped == 0 {
            return;
        }
        let event = AgentEvent::dropped(
            self.dropped,
            "the spool reached its size limit before this sink could send them",
        );
        // Stable across restarts: the cursor keeps the position and count.
        let id = format!("{}-dropped-{}", self.shared.id, self.position.seq);
        let mut json = Vec::new();
        let identity = self.shared.identity.stamp();
        super::encode_record(&mut json, &id, &identity.json_members, &event.into());
        json.pop();
        batch.records.insert(
            0,
            Record {
                seq: 0,
                json: String::from_utf8(json).expect("JSON is UTF-8"),
            },
        );
        batch.notice = true;
    }

    fn read_segment(
        &mut self,
        segment: &Segment,
        available: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Option<Batch>> {
        let file = match &mut self.file {
            Some((first, file)) if *first == segment.first_seq => file,
            _ => {
                let file = File::open(&segment.path)?;
                &mut self.file.insert((segment.first_seq, file)).1
            }
        };
        file.seek(SeekFrom::Start(self.position.offset))?;
        // Read at least one whole line, however long.
        let mut want = (max_bytes as u64).min(available);
        loop {
            self.buf.clear();
            file.by_ref().take(want).read_to_end(&mut self.buf)?;
            if self.buf.contains(&b'\n') || want >= available {
                break;
            }
            want = (want * 2).min(available);
            file.seek(SeekFrom::Start(self.position.offset))?;
        }
        let mut batch = Batch {
            records: Vec::new(),
            notice: false,
            ends: Vec::new(),
        };
        let mut position = self.position;
        let mut start = 0;
        while let Some(len) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + len];
            start += len + 1;
            position.offset += len as u64 + 1;
            let seq = position.seq;
            position.seq += 1;
            match std::str::from_utf8(line) {
                Ok(json) => batch.records.push(Record {
                    seq,
                    json: json.to_owned(),
                }),
                Err(_) => tracing::error!(
                    seq,
                    path = %segment.path.display(),
                    "spooled event is not UTF-8; skipping it"
                ),
            }
            batch.ends.push(position);
            if batch.ends.len() >= max_records {
                break;
            }
        }
        if batch.ends.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "spool segment {} has no line end after offset {}",
                    segment.path.display(),
                    self.position.offset
                ),
            ));
        }
        self.add_notice(&mut batch);
        Ok(Some(batch))
    }

    /// Saves the position after the first `delivered` records of `batch`
    /// (counting the notice) and frees segments every sink has delivered.
    ///
    /// # Errors
    ///
    /// Returns the I/O error of writing the cursor file. The position is
    /// then kept in memory only, so events may be sent again after a
    /// restart.
    pub fn commit(&mut self, batch: &Batch, delivered: usize) -> io::Result<()> {
        let mut spooled = delivered;
        if batch.notice && delivered > 0 {
            self.dropped = 0;
            spooled -= 1;
        }
        // Records skipped as unreadable still advance the position.
        if spooled > 0 {
            let last = spooled.min(batch.ends.len()) - 1;
            self.position = batch.ends[last];
        } else if !(batch.notice && delivered > 0) {
            return Ok(());
        }
        self.progress
            .committed
            .store(self.position.seq, Ordering::Release);
        self.save()?;
        self.shared.collect_garbage();
        Ok(())
    }

    /// Writes the position and the unreported loss count to the cursor file.
    fn save(&self) -> io::Result<()> {
        let cursor = Cursor {
            sink: self.name.clone(),
            position: self.position,
            dropped: self.dropped,
        };
        let text = serde_json::to_vec(&cursor).expect("cursor serializes");
        write_atomically(&self.cursor_path, &text)
    }
}

/// Reads a sink's pending count without its reader.
#[derive(Debug, Clone)]
pub struct PendingGauge {
    shared: Arc<Shared>,
    progress: Arc<ReaderProgress>,
}

impl PendingGauge {
    /// Returns how many spooled events the sink has not delivered.
    pub fn pending(&self) -> u64 {
        let next = self.shared.lock_state().next_seq;
        next.saturating_sub(self.progress.committed.load(Ordering::Acquire))
    }
}

fn read_cursor(path: &std::path::Path) -> Result<Option<Cursor>, SpoolError> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(cursor) => Ok(Some(cursor)),
            Err(err) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %err,
                    "sink position file is damaged; the sink starts at the oldest spooled event"
                );
                Ok(None)
            }
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(SpoolError::io("read", path)(err)),
    }
}
