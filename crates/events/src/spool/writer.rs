//! The spool writer: one thread that drains the event queue, stamps each
//! event with its ID and the machine identity, and appends it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Segment, Shared, Spool, SYNC_INTERVAL};
use crate::{AgentEvent, EventReceiver, SiemEvent};

/// The maximum events written in one system call.
const MAX_BATCH: usize = 4096;

/// How often failed spool writes are logged while they keep failing.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long the writer waits for an event before it checks for a stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Stops the writer thread and waits for it.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    /// Writes what is still queued, flushes it to the disk and ends the
    /// thread.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the spool writer thread panicked");
            }
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the writer thread of `spool`, reading from `events`.
pub(crate) fn spawn_writer(spool: &Spool, events: EventReceiver) -> io::Result<WriterHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = Writer {
        shared: Arc::clone(&spool.shared),
        file: None,
        buf: Vec::with_capacity(1 << 20),
        unsynced: false,
        reported_drops: 0,
        write_losses: 0,
        force_roll: false,
        failing_since: None,
        last_failure_log: None,
    };
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("spool-writer".to_owned())
        .spawn(move || writer.run(&events, &thread_stop))?;
    Ok(WriterHandle {
        stop,
        thread: Some(thread),
    })
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    /// The newest segment, opened for appending at the first write.
    file: Option<File>,
    buf: Vec<u8>,
    unsynced: bool,
    /// Queue losses already reported in an `EventsDropped` event.
    reported_drops: u64,
    /// Events lost to failed writes and not yet reported.
    write_losses: u64,
    /// Set after a failed write: the next append starts a new segment.
    force_roll: bool,
    /// When spool writes started failing, for the log.
    failing_since: Option<Instant>,
    /// When a failed write was last logged.
    last_failure_log: Option<Instant>,
}

impl Writer {
    fn run(&mut self, events: &EventReceiver, stop: &AtomicBool) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut last_sync = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let wait = if stopping {
                Duration::ZERO
            } else {
                POLL_INTERVAL
            };
            match events.rx.recv_timeout(wait) {
                Ok(event) => {
                    batch.push(*event);
                    while batch.len() < MAX_BATCH {
                        match events.rx.try_recv() {
                            Ok(event) => batch.push(*event),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) if stopping => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !batch.is_empty() || self.has_unreported_losses(events) {
                self.append_with_loss_reports(events, &mut batch);
                batch.clear();
            }
            if self.unsynced && last_sync.elapsed() >= SYNC_INTERVAL {
                self.sync();
                last_sync = Instant::now();
            }
        }
        if !batch.is_empty() || self.has_unreported_losses(events) {
            self.append_with_loss_reports(events, &mut batch);
        }
        self.sync();
    }

    fn has_unreported_losses(&self, events: &EventReceiver) -> bool {
        self.write_losses > 0 || events.dropped.load(Ordering::Relaxed) > self.reported_drops
    }

    /// Appends the batch with an `EventsDropped` event for each kind of loss
    /// not yet reported. A loss counts as reported only once its event is
    /// written; when the write fails, the batch's own events join the count.
    fn append_with_loss_reports(&mut self, events: &EventReceiver, batch: &mut Vec<SiemEvent>) {
        let own_events = batch.len() as u64;
        let queue_dropped = events.dropped.load(Ordering::Relaxed);
        let queue_lost = queue_dropped - self.reported_drops;
        if queue_lost > 0 {
            batch
                .push(AgentEvent::dropped(queue_lost, "the event queue in memory was full").into());
        }
        let write_lost = self.write_losses;
        if write_lost > 0 {
            batch.push(AgentEvent::dropped(write_lost, "writing the spool failed").into());
        }
        match self.append(batch) {
            Ok(()) => {
                self.reported_drops = queue_dropped;
                self.write_losses -= write_lost;
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        failed_for = ?Duration::from_secs(since.elapsed().as_secs()),
                        lost = write_lost,
                        "spool writes work again"
                    );
                }
            }
            Err(err) => {
                self.write_losses += own_events;
                let now = Instant::now();
                let quiet = self
                    .last_failure_log
                    .is_some_and(|at| now - at < FAILURE_LOG_INTERVAL);
                if !quiet {
                    tracing::error!(error = %err, lost = self.write_losses, "failed to write events to the spool; they are lost and reported as dropped once a write succeeds");
                    self.last_failure_log = Some(now);
                }
                self.failing_since.get_or_insert(now);
                self.discard_partial_write();
            }
        }
    }

    /// Cuts a partly written batch off the newest segment, so readers and
    /// the next start see only whole events, and makes the next append
    /// start a new segment in case the cut failed too.
    fn discard_partial_write(&mut self) {
        self.file = None;
        self.force_roll = true;
        let Some(segment) = self.shared.lock_state().segments.back().cloned() else {
            return;
        };
        let cut = OpenOptions::new()
            .write(true)
            .open(&segment.path)
            .and_then(|file| file.set_len(segment.len));
        if let Err(err) = cut {
            tracing::warn!(path = %segment.path.display(), error = %err, "failed to cut a partial write off the spool segment");
        }
    }

    /// Appends the events in one write and publishes them to the readers.
    pub(super) fn append(&mut self, batch: &[SiemEvent]) -> io::Result<()> {
        let (first_seq, active_len) = {
            let state = self.shared.lock_state();
            (state.next_seq, state.segments.back().map(|s| s.len))
        };
        self.buf.clear();
        {
            let stamp = self.shared.identity.stamp();
            for (offset, event) in batch.iter().enumerate() {
                self.encode(first_seq + offset as u64, &stamp.json_members, event);
            }
        }
        let roll = match active_len {
            None => true,
            Some(len) => len > 0 && len + self.buf.len() as u64 > self.shared.segment_bytes,
        };
        if roll || self.force_roll {
            self.roll(first_seq)?;
            self.force_roll = false;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(self.open_active()?),
        };
        file.write_all(&self.buf)?;
        self.unsynced = true;
        self.publish(batch.len() as u64, self.buf.len() as u64);
        Ok(())
    }

    fn encode(&mut self, seq: u64, identity: &str, event: &SiemEvent) {
        let id = self.shared.event_id(seq);
        super::encode_record(&mut self.buf, &id, identity, event);
    }

    /// Starts a new segment whose first event is `first_seq`.
    fn roll(&mut self, first_seq: u64) -> io::Result<()> {
        self.sync();
        let path = self.shared.segment_path(first_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut state = self.shared.lock_state();
        // A failed write into a segment that had no whole event yet leaves
        // a segment with this name: empty it and keep using it.
        let reuse = state
            .segments
            .back()
            .is_some_and(|segment| segment.first_seq == first_seq);
        if reuse {
            file.set_len(0)?;
        } else {
            state.segments.push_back(Segment {
                first_seq,
                len: 0,
                path,
            });
        }
        drop(state);
        sync_dir(&self.shared.dir);
        self.file = Some(file);
        Ok(())
    }

    fn open_active(&self) -> io::Result<File> {
        let path = {
            let state = self.shared.lock_state();
            state
                .segments
                .back()
                .map(|segment| segment.path.clone())
                .ok_or_else(|| io::Error::other("the spool has no segment"))?
        };
        OpenOptions::new().append(true).open(path)
    }

    /// Makes written events visible to readers and deletes the oldest
    /// segments while the spool is over its byte limit.
    fn publish(&self, events: u64, bytes: u64) {
        let mut evicted = 0;
        let next_seq = {
            let mut state = self.shared.lock_state();
            let active = state.segments.back_mut().expect("a segment was opened");
            active.len += bytes;
            state.total_bytes += bytes;
            state.next_seq += events;
            while state.total_bytes > self.shared.max_bytes && state.segments.len() > 1 {
                let oldest = state.segments.pop_front().expect("checked length");
                state.total_bytes -= oldest.len;
                evicted += state.segments[0].first_seq - oldest.first_seq;
                super::remove_segment(&oldest);
            }
            state.next_seq
        };
        if evicted > 0 {
            tracing::warn!(
                events = evicted,
                max_bytes = self.shared.max_bytes,
                "the spool is full; deleted its oldest events, which sinks that had not sent them report as dropped"
            );
        }
        self.shared.appended.send_replace(next_seq);
    }

    fn sync(&mut self) {
        if let Some(file) = &self.file {
            if let Err(err) = file.sync_data() {
                tracing::warn!(error = %err, "failed to flush the spool to the disk");
            }
        }
        self.unsynced = false;
    }
}

/// Makes a new file's directory entry durable.
fn sync_dir(dir: &std::path::Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
impl Writer {
    /// Creates a writer for `spool` without a thread, for tests.
    pub(super) fn for_test(spool: &Spool) -> Writer {
        Writer {
            shared: Arc::clone(&spool.shared),
            file: None,
            buf: Vec::new(),
            unsynced: false,
            reported_drops: 0,
            write_losses: 0,
            force_roll: false,
            failing_since: None,
            last_failure_log: None,
        }
    }

    /// Runs the recovery after a failed write.
    pub(super) fn recover_from_failed_write(&mut self) {
        self.discard_partial_write();
    }
}

#[cfg(test)]
pub(crate) fn append_for_test(spool: &Spool, batch: &[SiemEvent]) -> io::Result<()> {
    Writer::for_test(spool).append(batch)
}
