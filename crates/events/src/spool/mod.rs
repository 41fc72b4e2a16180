//! The durable spool: every event is appended to a file before any sink
//! reads it, and each sink reads from its own saved position.
//!
//! Layout of the spool directory:
//!
//! - `id`: 16 random hex digits, the prefix of every event ID.
//! - `seg-<first sequence number>.jsonl`: segments, one JSON object per line.
//!   Only the newest segment is appended to.
//! - `cursors/<hash>.json`: one file per sink with the position of the first
//!   event it has not delivered, replaced atomically after each delivery.
//!
//! An event counts as spooled once its line is written to the segment file;
//! the kernel keeps it when the agent is killed. Segments are flushed to the
//! disk every [`SYNC_INTERVAL`], so a power cut loses at most that much.
//! When the spool grows past its byte limit the oldest segment is deleted
//! even if a sink has not read it. That sink then reports how many events
//! it lost in an `EventsDropped` event.

mod reader;
mod writer;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::IdentityHandle;

pub use reader::{Batch, PendingGauge, Record, SpoolReader};
pub(crate) use writer::{spawn_writer, WriterHandle};

/// The default byte limit of the spool.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// How often appended events are flushed to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The largest segment file.
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The smallest segment file, so tiny limits still make progress.
const MIN_SEGMENT_BYTES: u64 = 4 * 1024;

const ID_FILE: &str = "id";
const CURSOR_DIR: &str = "cursors";
const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// The reason the spool could not be opened or used.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// A spool file or directory could not be read or written.
    #[error("spool {action} failed for {path}")]
    Io {
        /// The operation that failed.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl SpoolError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
        move |source| SpoolError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    len: u64,
    path: PathBuf,
}

/// The state the writer publishes and the readers read, under one lock.
#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    /// The sequence number the next event gets; the first event gets 1.
    next_seq: u64,
    total_bytes: u64,
}

/// A sink's delivery progress, for garbage collection and status.
#[derive(Debug)]
struct ReaderProgress {
    /// The sequence number of the first event not yet delivered.
    committed: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    id: String,
    max_bytes: u64,
    segment_bytes: u64,
    identity: IdentityHandle,
    state: Mutex<State>,
    appended: watch::Sender<u64>,
    readers: Mutex<Vec<Arc<ReaderProgress>>>,
}

/// An open spool directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

impl Spool {
    /// Opens the spool in `dir`, creating it when needed, and repairs a
    /// segment whose last line was cut short by a crash.
    ///
    /// # Errors
    ///
    /// Returns [`SpoolError::Io`] when the directory or a segment cannot be
    /// read or written.
    pub fn open(dir: &Path, max_bytes: u64, identity: IdentityHandle) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir.join(CURSOR_DIR))
            .map_err(SpoolError::io("create directory", dir))?;
        let mut id = read_or_create_id(dir)?;
        let segments = recover_segments(dir)?;
        let next_seq = match segments.back() {
            Some(last) => last.first_seq + count_lines(&last.path)?,
            None => 1,
        };
        if reader::highest_saved_seq(&dir.join(CURSOR_DIR)) > next_seq {
            // Events a sink already delivered are gone from the newest
            // segment (a power cut, or files removed by hand). Their
            // sequence numbers would come again, and receivers that drop
            // duplicates by eventId would drop the new events.
            tracing::warn!(path = %dir.display(), "spool lost events that sinks had already sent; starting a new spool ID so event IDs stay unique");
            id = create_id(dir)?;
        }
        let total_bytes = segments.iter().map(|segment| segment.len).sum();
        let segment_bytes = (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
        let (appended, _) = watch::channel(next_seq);
        Ok(Spool {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                id,
                max_bytes: max_bytes.max(2 * segment_bytes),
                segment_bytes,
                identity,
                state: Mutex::new(State {
                    segments,
                    next_seq,
                    total_bytes,
                }),
                appended,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Returns the spool's ID, the prefix of its event IDs.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Returns the directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Returns the sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.lock_state().next_seq
    }

    /// Returns the bytes the segment files take.
    pub fn bytes(&self) -> u64 {
        self.shared.lock_state().total_bytes
    }

    /// Opens the reader of the sink named `name` at its saved position. A
    /// sink seen for the first time starts after the events already
    /// spooled, and its position is saved at once.
    ///
    /// # Errors
    ///
    /// Returns [`SpoolError::Io`] when the saved position cannot be read.
    pub fn reader(&self, name: &str) -> Result<SpoolReader, SpoolError> {
        SpoolReader::open(Arc::clone(&self.shared), name)
    }
}

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir
            .join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"))
    }

    fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.id)
    }

    /// Deletes the segments every sink has delivered, keeping the newest.
    fn collect_garbage(&self) {
        let delivered = {
            let readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            readers
                .iter()
                .map(|reader| reader.committed.load(Ordering::Acquire))
                .min()
                .unwrap_or(u64::MAX)
        };
        let mut state = self.lock_state();
        while state.segments.len() > 1 && state.segments[1].first_seq <= delivered {
            let segment = state.segments.pop_front().expect("checked length");
            state.total_bytes -= segment.len;
            remove_segment(&segment);
        }
    }
}

/// Appends one record and its newline: the event's JSON object with
/// `eventId` and the identity members put in front of its own members.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    event_id: &str,
    identity_members: &str,
    event: &crate::SiemEvent,
) {
    out.extend_from_slice(b"{\"eventId\":");
    serde_json::to_writer(&mut *out, event_id).expect("strings serialize");
    out.push(b',');
    out.extend_from_slice(identity_members.as_bytes());
    out.push(b',');
    let members = out.len();
    event.write_json(out);
    // Drop the event object's own opening brace.
    debug_assert_eq!(out[members], b'{');
    out.remove(members);
    out.push(b'\n');
}

fn remove_segment(segment: &Segment) {
    if let Err(err) = std::fs::remove_file(&segment.path) {
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %segment.path.display(), error = %err, "failed to delete a spool segment");
        }
    }
}

fn read_or_create_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text)
            if text.trim().len() == 16 && text.trim().bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "spool ID file is damaged; starting a new ID")
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(SpoolError::io("read", &path)(err)),
    }
    create_id(dir)
}

/// Writes a new random spool ID.
fn create_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join(ID_FILE);
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let id = crate::identity::hex(&bytes);
    write_atomically(&path, format!("{id}\n").as_bytes())
        .map_err(SpoolError::io("write", &path))?;
    Ok(id)
}

/// Lists the segments in order and cuts a partial last line off the newest.
fn recover_segments(dir: &Path) -> Result<VecDeque<Segment>, SpoolError> {
    let entries = std::fs::read_dir(dir).map_err(SpoolError::io("list", dir))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(SpoolError::io("list", dir))?;
        let name = entry.file_name();
        let Some(first_seq) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SEGMENT_PREFIX))
            .and_then(|rest| rest.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|digits| digits.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let len = entry
            .metadata()
            .map_err(SpoolError::io("inspect", &path))?
            .len();
        segments.push(Segment {
            first_seq,
            len,
            path,
        });
    }
    segments.sort_by_key(|segment| segment.first_seq);
    if let Some(last) = segments.last_mut() {
        last.len = truncate_partial_line(&last.path)?;
    }
    Ok(segments.into())
}

/// Cuts everything after the last newline, the remains of a write that a
/// crash interrupted, and returns the new length.
fn truncate_partial_line(path: &Path) -> Result<u64, SpoolError> {
    let bytes = std::fs::read(path).map_err(SpoolError::io("read", path))?;
    let complete = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    if complete < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            bytes = bytes.len() - complete,
            "spool segment ends in a partial event, left by a crash; cutting it off"
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(SpoolError::io("open", path))?;
        file.set_len(complete as u64)
            .map_err(SpoolError::io("truncate", path))?;
    }
    Ok(complete as u64)
}

fn count_lines(path: &Path) -> Result<u64, SpoolError> {
    let bytes = std::fs::read(path).map_err(SpoolError::io("read", path))?;
    Ok(bytes.iter().filter(|&&byte| byte == b'\n').count() as u64)
}

/// Replaces `path` with `contents` so that a crash leaves the old or the
/// new file, never a mix.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
