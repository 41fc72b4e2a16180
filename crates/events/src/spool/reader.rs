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
    /// The position after the record's line; `None` for a notice.
    end: Option<Position>,
}

impl Record {
    /// Creates a record that is not in the spool, such as a test event.
    pub(crate) fn detached(json: String) -> Record {
        Record {
            seq: 0,
            json,
            end: None,
        }
    }
}

/// Events to deliver in order. When the batch starts with an
/// `EventsDropped` notice, `notice` is true.
#[derive(Debug)]
pub struct Batch {
    /// The events.
    pub records: Vec<Record>,
    notice: bool,
    /// The position after everything the batch read, damaged lines
    /// included.
    end: Option<Position>,
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
    /// Damaged lines before this sequence number are already counted in
    /// `dropped`, so reading them again does not count them twice.
    damage_counted_to: u64,
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
                Some(cursor) => (
                    checked_position(&state, cursor.position, name),
                    cursor.dropped,
                    0,
                ),
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
            damage_counted_to: 0,
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
                let following = next
                    .as_ref()
                    .map_or_else(|| self.shared.lock_state().next_seq, |n| n.first_seq);
                let batch = self.read_segment(&segment, following, max_records, max_bytes)?;
                if batch.is_some() {
                    return Ok(batch);
                }
                continue;
            }
            match next {
                Some(next) => {
                    if next.first_seq > self.position.seq {
                        let missing = next.first_seq - self.position.seq;
                        tracing::warn!(
                            sink = %self.name,
                            missing,
                            path = %segment.path.display(),
                            "spool events are missing after this segment; reporting them as dropped"
                        );
                        self.dropped = self.dropped.saturating_add(missing);
                    }
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
            self.dropped = self
                .dropped
                .saturating_add(oldest.first_seq - self.position.seq);
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
            end: None,
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
            "the spool reached its size limit, or was damaged, before this sink could send them",
        );
        // Stable across restarts: the cursor keeps the position and count.
        let id = format!("{}-dropped-{}", self.shared.id, self.position.seq);
        let mut json = Vec::new();
        let identity = self.shared.identity.stamp();
        super::encode_record(&mut json, &id, &identity.json_members, &event.into());
        json.pop();
        batch.records.insert(
            0,
            Record::detached(String::from_utf8(json).expect("JSON is UTF-8")),
        );
        batch.notice = true;
    }

    /// Reads whole lines from `segment` at the reader's position. Damaged
    /// lines (not UTF-8, not a JSON object) are skipped and counted as
    /// dropped. Returns `None` after skipping the damaged rest of a
    /// segment; `following` is the sequence number after the segment.
    fn read_segment(
        &mut self,
        segment: &Segment,
        following: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Option<Batch>> {
        let available = segment.len - self.position.offset;
        self.fill_buffer(segment, available, max_bytes)?;
        let mut batch = Batch {
            records: Vec::new(),
            notice: false,
            end: None,
        };
        let mut position = self.position;
        let mut start = 0;
        let mut damaged = 0u64;
        while let Some(len) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + len];
            start += len + 1;
            position.offset += len as u64 + 1;
            let seq = position.seq;
            position.seq += 1;
            batch.end = Some(position);
            match whole_event(line) {
                Some(json) => batch.records.push(Record {
                    seq,
                    json: json.to_owned(),
                    end: Some(position),
                }),
                None if seq >= self.damage_counted_to => {
                    damaged += 1;
                    self.damage_counted_to = seq + 1;
                }
                None => {}
            }
            if batch.records.len() >= max_records {
                break;
            }
        }
        if damaged > 0 {
            tracing::warn!(
                sink = %self.name,
                damaged,
                path = %segment.path.display(),
                "skipping damaged spool lines; reporting them as dropped"
            );
            self.dropped = self.dropped.saturating_add(damaged);
        }
        if batch.end.is_none() {
            // No line end in the rest of the segment: the file was cut or
            // changed outside webwarden. Skip to what follows it.
            let missing = following.saturating_sub(self.position.seq);
            tracing::warn!(
                sink = %self.name,
                path = %segment.path.display(),
                offset = self.position.offset,
                missing,
                "spool segment ends in a partial line; skipping it and reporting its events as dropped"
            );
            self.dropped = self.dropped.saturating_add(missing);
            self.position = Position {
                segment: segment.first_seq,
                offset: segment.len,
                seq: following,
            };
            self.damage_counted_to = following;
            return Ok(None);
        }
        self.add_notice(&mut batch);
        Ok(Some(batch))
    }

    /// Reads from the reader's position into the buffer: at least one whole
    /// line, however long, or all of `available`.
    fn fill_buffer(
        &mut self,
        segment: &Segment,
        available: u64,
        max_bytes: usize,
    ) -> io::Result<()> {
        let with_path = |err: io::Error| {
            io::Error::new(err.kind(), format!("{}: {err}", segment.path.display()))
        };
        let file = match &mut self.file {
            Some((first, file)) if *first == segment.first_seq => file,
            _ => {
                let file = File::open(&segment.path).map_err(with_path)?;
                &mut self.file.insert((segment.first_seq, file)).1
            }
        };
        let mut want = (max_bytes as u64).min(available);
        loop {
            file.seek(SeekFrom::Start(self.position.offset))
                .map_err(with_path)?;
            self.buf.clear();
            file.by_ref()
                .take(want)
                .read_to_end(&mut self.buf)
                .map_err(with_path)?;
            if self.buf.contains(&b'\n') || want >= available {
                return Ok(());
            }
            want = (want * 2).min(available);
        }
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
        let notice_delivered = batch.notice && delivered > 0;
        if notice_delivered {
            self.dropped = 0;
        }
        // A whole batch also passes the damaged lines after its last record.
        let end = if delivered >= batch.records.len() {
            batch.end
        } else {
            batch.records[..delivered].iter().rev().find_map(|r| r.end)
        };
        match end {
            Some(end) => self.position = end,
            None if notice_delivered => {}
            None => return Ok(()),
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

/// Returns a saved position, or the start of its segment when the
/// position is not at a line start inside the segment: a power cut can
/// keep a cursor file whose segment lost its last lines.
fn checked_position(state: &super::State, position: Position, sink: &str) -> Position {
    let Some(segment) = state
        .segments
        .iter()
        .find(|segment| segment.first_seq == position.segment)
    else {
        return position;
    };
    let at_line_start = position.offset == 0
        || (position.offset <= segment.len
            && byte_before(&segment.path, position.offset).ok() == Some(b'\n'));
    if at_line_start {
        return position;
    }
    tracing::warn!(
        sink,
        path = %segment.path.display(),
        offset = position.offset,
        "saved spool position is not at the start of an event; sending the segment again from its start"
    );
    Position::start_of(segment)
}

fn byte_before(path: &std::path::Path, offset: u64) -> io::Result<u8> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset - 1))?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// Returns the highest sequence number any saved cursor in `dir` has
/// reached, or 0.
pub(super) fn highest_saved_seq(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Cursor>(&bytes).ok())
        .map(|cursor| cursor.position.seq)
        .max()
        .unwrap_or(0)
}

/// Returns the line as text when it is a whole JSON object.
fn whole_event(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(text)
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
