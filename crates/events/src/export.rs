//! The exporter: the spool, its writer thread, and one delivery task per
//! sink that retries with exponential backoff and jitter until the sink
//! accepts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::sink::{Sink, SinkConfig, SinkError};
use crate::spool::{spawn_writer, PendingGauge, Spool, SpoolReader, WriterHandle};
use crate::{event_channel, AgentEvent, EventSender, Identity, IdentityHandle, SiemEvent};

/// Bytes read from the spool for one delivery, about.
const BATCH_BYTES: usize = 1024 * 1024;

/// How long a sink waits after delivering a small batch, so that at low
/// rates it sends a few batches a second instead of one per event.
const LINGER: Duration = Duration::from_millis(100);

/// The exporter's settings.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The spool directory.
    pub spool_dir: PathBuf,
    /// The spool's byte limit.
    pub max_bytes: u64,
    /// Events held in memory before the writer takes them.
    pub queue_capacity: usize,
    /// The sinks that receive the events.
    pub sinks: Vec<SinkConfig>,
    /// The retry timing of failed deliveries.
    pub retry: RetryPolicy,
}

/// Exponential backoff with jitter between delivery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The maximum delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

/// A sink's state, for logs, `webwarden status` and the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    /// The sink's name, as in [`SinkConfig::name`].
    pub name: String,
    /// Spooled events it has not delivered.
    pub pending: u64,
    /// Events delivered since start.
    pub delivered: u64,
    /// False after a failed delivery, until one succeeds.
    pub healthy: bool,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it last delivered.
    pub last_delivery: Option<SystemTime>,
}

/// How often a sink that keeps failing is logged again at warning level.
const STILL_FAILING_LOG_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Monitor {
    gauge: PendingGauge,
    status: Mutex<SinkStatus>,
    outage: Mutex<Option<Outage>>,
}

/// A run of failed deliveries, for the log.
#[derive(Debug)]
struct Outage {
    since: Instant,
    last_warning: Instant,
}

impl Monitor {
    fn new(name: String, gauge: PendingGauge) -> Monitor {
        Monitor {
            gauge,
            status: Mutex::new(SinkStatus {
                name,
                pending: 0,
                delivered: 0,
                healthy: true,
                last_error: None,
                last_delivery: None,
            }),
            outage: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> SinkStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        status.pending = self.gauge.pending();
        status
    }

    fn delivered(&self, count: usize) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let outage = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(outage) = outage {
            tracing::info!(
                sink = %status.name,
                failing_for = ?Duration::from_secs(outage.since.elapsed().as_secs()),
                pending = self.gauge.pending(),
                "SIEM sink accepts events again; sending the events queued meanwhile"
            );
        }
        status.healthy = true;
        status.delivered += count as u64;
        status.last_delivery = Some(SystemTime::now());
    }

    fn failed(&self, error: &str, retry_in: Duration) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let changed = status.last_error.as_deref() != Some(error);
        match outage.as_mut() {
            None => {
                tracing::warn!(
                    sink = %status.name,
                    error,
                    pending = self.gauge.pending(),
                    retry_in = ?retry_in,
                    "SIEM delivery failed; events stay in the spool and are retried"
                );
                *outage = Some(Outage {
                    since: now,
                    last_warning: now,
                });
            }
            Some(run) if changed || now - run.last_warning >= STILL_FAILING_LOG_INTERVAL => {
                tracing::warn!(
                    sink = %status.name,
                    error,
                    pending = self.gauge.pending(),
                    failing_for = ?Duration::from_secs(run.since.elapsed().as_secs()),
                    retry_in = ?retry_in,
                    "SIEM delivery still failing; events stay in the spool"
                );
                run.last_warning = now;
            }
            Some(_) => tracing::debug!(sink = %status.name, error, "SIEM delivery failed again"),
        }
        status.healthy = false;
        status.last_error = Some(error.to_owned());
    }
}

/// Reads the sinks' state without the exporter.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    monitors: Vec<Arc<Monitor>>,
}

impl StatusHandle {
    /// Returns each sink's state.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.monitors.iter().map(|m| m.snapshot()).collect()
    }
}

/// The running exporter.
#[derive(Debug)]
pub struct Exporter {
    spool: Spool,
    writer: Option<WriterHandle>,
    stop: watch::Sender<bool>,
    /// The thread that runs the delivery tasks, and the sender that makes
    /// it abort them.
    delivery: Option<(std::thread::JoinHandle<()>, oneshot::Sender<()>)>,
    /// Completes when every delivery task has ended.
    finished: Option<oneshot::Receiver<()>>,
    monitors: Vec<Arc<Monitor>>,
}

impl Exporter {
    /// Opens the spool, starts its writer and the delivery thread with one
    /// task per sink, and returns the sender the proxy puts events into.
    ///
    /// The delivery tasks run on their own thread and runtime, so their
    /// file and network work never takes a turn from the proxy's tasks.
    ///
    /// # Errors
    ///
    /// Returns [`SinkError::Config`] for sink settings that cannot work
    /// (unreadable certificate files, no URL), [`SinkError::Spool`] when the
    /// spool cannot be opened, and [`SinkError::Start`] when a thread or
    /// the runtime cannot start.
    pub fn start(
        config: &ExportConfig,
        identity: IdentityHandle,
    ) -> Result<(Exporter, EventSender), SinkError> {
        let sinks = config
            .sinks
            .iter()
            .map(|sink| Ok((sink.name(), build_sink(sink)?)))
            .collect::<Result<Vec<_>, SinkError>>()?;
        let spool = Spool::open(&config.spool_dir, config.max_bytes, identity)?;
        let readers = sinks
            .iter()
            .map(|(name, _)| spool.reader(name))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (sender, receiver) = event_channel(config.queue_capacity);
        let writer = spawn_writer(&spool, receiver)?;
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut monitors = Vec::new();
        for ((name, sink), reader) in sinks.into_iter().zip(readers) {
            let monitor = Arc::new(Monitor::new(name, reader.pending_gauge()));
            monitors.push(Arc::clone(&monitor));
            tasks.push(deliver_forever(
                reader,
                sink,
                monitor,
                stop.subscribe(),
                config.retry,
            ));
        }
        let (abort, aborted) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("siem-delivery".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
                    let all = futures_util::future::join_all(handles);
                    tokio::select! {
                        _ = all => {}
                        _ = aborted => {}
                    }
                });
                // Dropping the runtime cancels the tasks that are left.
                drop(runtime);
                let _ = done.send(());
            })?;
        Ok((
            Exporter {
                spool,
                writer: Some(writer),
                stop,
                delivery: Some((thread, abort)),
                finished: Some(finished),
                monitors,
            },
            sender,
        ))
    }

    /// Returns the spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Returns each sink's state.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.monitors.iter().map(|m| m.snapshot()).collect()
    }

    /// Returns a handle that reads the sinks' state from another task.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle {
            monitors: self.monitors.clone(),
        }
    }

    /// Writes the queued events to the spool, gives the sinks up to `grace`
    /// to deliver what is pending, and stops. What is not delivered stays
    /// in the spool for the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.stop()).await;
        }
        self.stop.send_replace(true);
        let Some((thread, abort)) = self.delivery.take() else {
            return;
        };
        let finished = self.finished.take().expect("set with the thread");
        if tokio::time::timeout(grace, finished).await.is_err() {
            let _ = abort.send(());
            let pending: u64 = self.monitors.iter().map(|m| m.gauge.pending()).sum();
            tracing::info!(
                pending,
                "stopped with events not yet delivered; they are sent after the next start"
            );
        }
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

impl Drop for Exporter {
    /// Ends the delivery thread without waiting, when [`Exporter::shutdown`]
    /// was not called.
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some((_, abort)) = self.delivery.take() {
            let _ = abort.send(());
        }
    }
}

/// Delivers a sink's events until the exporter stops.
async fn deliver_forever(
    mut reader: SpoolReader,
    mut sink: Sink,
    monitor: Arc<Monitor>,
    mut stop: watch::Receiver<bool>,
    retry: RetryPolicy,
) {
    let mut backoff = Backoff::new(retry);
    loop {
        let batch = match reader
            .next_batch(sink.batch_limit(), BATCH_BYTES, &mut stop)
            .await
        {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(err) => {
                let delay = backoff.next_delay();
                monitor.failed(&format!("reading the spool failed: {err}"), delay);
                if !pause(delay, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            // Only damaged lines, already reported: move past them.
            if let Err(err) = reader.commit(&batch, 0) {
                tracing::warn!(sink = reader.name(), error = %err, "failed to save the sink's spool position");
            }
            tokio::task::yield_now().await;
            continue;
        }
        let (delivered, failure) = match sink.deliver(&batch.records).await {
            Ok(_) => (batch.records.len(), None),
            Err(failure) => (failure.delivered, Some(failure.error)),
        };
        if delivered > 0 {
            if let Err(err) = reader.commit(&batch, delivered) {
                tracing::warn!(sink = reader.name(), error = %err, "failed to save the sink's spool position; events may be sent twice after a restart");
            }
            monitor.delivered(delivered);
        }
        match failure {
            None => {
                backoff.reset();
                // A small batch means the sink has caught up with a slow
                // trickle of events: wait for more rather than pay a
                // delivery and a position write per event.
                if batch.records.len() < sink.batch_limit() / 4 {
                    linger(&mut stop).await;
                }
            }
            Some(error) => {
                let delay = backoff.next_delay();
                monitor.failed(&error, delay);
                if !pause(delay, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Waits [`LINGER`], or less when the exporter stops, so that the last
/// events still go out at shutdown.
async fn linger(stop: &mut watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(LINGER) => {}
        _ = stop.changed() => {}
    }
}

/// Sleeps for `delay`; returns false when the exporter stops first.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = stop.changed() => false,
    }
}

/// Doubling delays with "equal jitter": half the delay is fixed and half is
/// random, so a fleet of agents does not retry in step.
#[derive(Debug)]
struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let full = self
            .policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Checks that a sink can be set up: its certificate files are readable
/// and its URLs are usable. Nothing is sent.
///
/// # Errors
///
/// Returns [`SinkError::Config`] naming the sink and the problem.
pub fn check_sink(config: &SinkConfig) -> Result<(), SinkError> {
    build_sink(config).map(drop)
}

fn build_sink(config: &SinkConfig) -> Result<Sink, SinkError> {
    Sink::new(config).map_err(|err| match err {
        SinkError::Config(text) => SinkError::Config(format!("sink {}: {text}", config.name())),
        other => other,
    })
}

/// Sends one `SiemTest` event straight to a sink, bypassing the spool, and
/// returns what the sink reported.
///
/// # Errors
///
/// Returns the setup or delivery failure as text.
pub async fn test_sink(config: &SinkConfig, identity: &Identity) -> Result<String, String> {
    let mut sink = Sink::new(config).map_err(|err| err.to_string())?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|err| err.to_string())?;
    let event_id = format!("test-{}", crate::identity::hex(&nonce));
    let event = AgentEvent::now(
        crate::SIEM_TEST_EVENT_NAME,
        format!("test event from webwarden on {}", identity.host_name),
    );
    let mut json = Vec::new();
    crate::spool::encode_record(
        &mut json,
        &event_id,
        &identity.json_members(),
        &SiemEvent::Agent(event),
    );
    json.pop();
    let record = crate::spool::Record::detached(String::from_utf8(json).expect("JSON is UTF-8"));
    let limit = crate::sink::DEFAULT_TIMEOUT * 3;
    match tokio::time::timeout(limit, sink.deliver(std::slice::from_ref(&record))).await {
        Ok(Ok(report)) => Ok(format!("{report}; eventId {event_id}")),
        Ok(Err(failure)) => Err(failure.error),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_limit() {
        let mut backoff = Backoff::new(RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        });
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (n, delay) in delays.iter().enumerate() {
            let full = (Duration::from_millis(100) * (1 << n)).min(Duration::from_secs(1));
            assert!(
                *delay >= full / 2 && *delay <= full,
                "delay {n} is {delay:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
