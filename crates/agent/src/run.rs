//! `webwarden run`: loads the lists and the CA, starts the proxy, the
//! event export and the list updater, and runs until SIGINT or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use arc_swap::ArcSwap;
use clap::Args;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use webwarden_events::{AgentEvent, Event, EventCategory, AGENT_STOPPED_EVENT_NAME};
use webwarden_proxy::{InspectionMode, ProxySettings, SharedCa};

use crate::ca_store::{CaStore, CaStoreError, KeyStorage, Keychain, OpenedCa, CA_CERT_FILE};
use crate::config::TraySection;
use crate::pause::{PauseError, PauseSwitch};
use crate::siem::SinkArgs;
use crate::status::{AgentStatus, StatusWriter};
use crate::updates::{self, ListSet};
use crate::{ca_watch, config, lists, siem, system_proxy, CliError, ListSpec};

/// How long sinks may take to deliver pending events at shutdown; the rest
/// stays in the spool for the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Arguments of `webwarden run`, which the tray app takes too.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file; without it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Proxy listen address; must be a loopback address [default: 127.0.0.1:8899].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A list to load (repeatable), as for `webwarden check`; replaces the
    /// configured lists.
    #[arg(long = "list", value_name = "LIST")]
    lists: Vec<ListSpec>,
    /// Reject lists with any bad row.
    #[arg(long)]
    strict: bool,
    /// Seconds between list checks, before 20% jitter either way
    /// [default: [updates] refresh_seconds, else 900].
    #[arg(long, value_name = "SECONDS")]
    list_refresh: Option<u64>,
    /// Directory for the CA and other state.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    sinks: SinkArgs,
    /// The allowed HTTPS tunnels to decrypt: all or blocked-only.
    #[arg(long, value_name = "MODE")]
    inspection: Option<InspectionMode>,
    /// A domain whose tunnels are never decrypted unless the lists block it
    /// (repeatable; adds to the configured bypass list).
    #[arg(long = "bypass", value_name = "DOMAIN")]
    bypass: Vec<String>,
    #[command(flatten)]
    system_proxy: system_proxy::SystemProxyArgs,
}

/// Runs the agent until a shutdown signal.
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        Agent::start(args).await?.wait().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// A blocked request, as the tray app's notifications and window show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockNotice {
    /// When the request arrived, UTC, RFC 3339.
    pub time: String,
    /// The blocked host.
    pub host: String,
    /// The category of the rule that blocked it.
    pub category: String,
    /// The request URL (`host:port` for a tunnel).
    pub url: String,
}

/// How many block notices wait for a slow reader before the oldest are
/// skipped.
const BLOCK_NOTICE_BACKLOG: usize = 256;

/// A running agent: the proxy, the event export, the list updater and the
/// CA watcher, as `webwarden run` starts them. The tray app runs one in its
/// own process.
#[derive(Debug)]
pub struct Agent {
    handle: AgentHandle,
    task: tokio::task::JoinHandle<Result<(), CliError>>,
}

/// Reads and controls a running [`Agent`]; cheap to clone.
#[derive(Clone)]
pub struct AgentHandle {
    status: StatusWriter,
    blocks: broadcast::Sender<BlockNotice>,
    pause: PauseSwitch,
    tray: TraySection,
    data_dir: PathBuf,
    stop: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    /// Returns the agent's current state, as the status file shows it.
    pub fn status(&self) -> AgentStatus {
        self.status.snapshot()
    }

    /// Receives every blocked request from now on.
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<BlockNotice> {
        self.blocks.subscribe()
    }

    /// Pauses filtering for `duration` and returns when the pause ends.
    ///
    /// # Errors
    ///
    /// Fails when the `[tray]` settings forbid pausing or the duration is
    /// zero or longer than an hour.
    pub fn pause(&self, duration: Duration) -> Result<OffsetDateTime, PauseError> {
        let until = self.pause.pause(duration)?;
        self.status.write();
        Ok(until)
    }

    /// Returns when the current pause ends, or `None` while filtering.
    pub fn paused_until(&self) -> Option<OffsetDateTime> {
        self.pause.paused_until()
    }

    /// Ends a pause now.
    pub fn resume(&self) {
        self.pause.resume();
        self.status.write();
    }

    /// Returns the `[tray]` settings: what the tray app may offer.
    pub fn tray_settings(&self) -> &TraySection {
        &self.tray
    }

    /// Returns the agent's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Asks the agent to stop, as SIGTERM does; [`Agent::wait`] returns
    /// once it has.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Agent {
    /// Reads the configuration, loads the lists and the CA, binds the
    /// proxy and starts serving. The agent stops on SIGINT, SIGTERM, SIGHUP
    /// or SIGQUIT, or when [`AgentHandle::stop`] is called.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for a mistake in the configuration, the flags or
    /// the lists, [`CliError::Failed`] when the CA, the listen address or
    /// the OS refuse.
    pub async fn start(args: &RunArgs) -> Result<Agent, CliError> {
        start(args).await
    }

    /// Returns the handle that reads and controls the agent.
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Waits until the agent has stopped and restored the OS proxy settings.
    ///
    /// # Errors
    ///
    /// Fails when the proxy stopped with an error.
    pub async fn wait(self) -> Result<(), CliError> {
        match self.task.await {
            Ok(result) => result,
            Err(err) => Err(CliError::Failed(err.into())),
        }
    }
}

async fn start(args: &RunArgs) -> Result<Agent, CliError> {
    let (file, config_path) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    if let Some(path) = &config_path {
        tracing::info!(path = %path.display(), "read configuration");
    }
    file.tray.validate().map_err(|err| {
        let place = config_path
            .as_deref()
            .unwrap_or(Path::new("the configuration"));
        CliError::Usage(err.context(format!("invalid config file {}", place.display())))
    })?;
    let data_dir = config::data_dir(args.data_dir.as_deref(), &file)?;
    // Before the spool opens: a second agent must not touch it.
    let agent_lock = crate::agent_lock::acquire(&data_dir)?;

    let specs = if args.lists.is_empty() {
        let path = config_path.clone().unwrap_or_default();
        file.list_specs(&path).map_err(CliError::Usage)?
    } else {
        args.lists.clone()
    };
    let update_settings = updates::settings(&file.updates, args.list_refresh, args.strict)
        .map_err(|err| CliError::Usage(err.context("invalid [updates] settings")))?;
    let settings = settings(args, &file).map_err(CliError::Usage)?;
    // The SIEM settings are checked before the CA is made, so a mistake
    // there leaves nothing behind.
    let (exporter, events, identity) =
        siem::start_export(&args.sinks, &file, config_path.as_deref(), &data_dir)?;
    let lists = ListSet::open(&specs, update_settings, &data_dir, &events)
        .await
        .map_err(CliError::Usage)?;
    log_policy(&lists);
    identity.set_list_version(lists.version());
    siem::log_identity(&identity);

    let (ca, ca_store) = open_ca(&data_dir, file.ca.key_storage).await?;
    let ca_key_location = ca.key_location.clone();
    let shared_ca: SharedCa = Arc::new(ArcSwap::from_pointee(ca.ca));

    let listen = args.listen.or(file.listen).unwrap_or_else(|| {
        webwarden_proxy::DEFAULT_LISTEN
            .parse()
            .expect("valid default")
    });
    let listener = webwarden_proxy::bind(listen)
        .await
        .map_err(|err| CliError::Usage(err.into()))?;
    let local = listener.local_addr()?;

    let pause = PauseSwitch::new(lists.policy(), events.clone(), file.tray.allow_pause);
    let status = StatusWriter::new(&data_dir, local.to_string(), exporter.status_handle())
        .with_pause(pause.clone());
    status.set_lists(lists.version(), lists.status());
    let status_task = tokio::spawn(status.clone().run());

    // The signal listeners start before the OS proxy settings change, so a
    // signal that arrives after the change still restores them.
    let (stop, mut stop_rx) = watch::channel(false);
    let signal = shutdown_signal();
    let shutdown = async move {
        tokio::select! {
            () = signal => {}
            _ = stop_rx.wait_for(|stop| *stop) => tracing::info!("stop requested, stopping"),
        }
    };
    // The PAC server and the OS proxy settings, restored after serve returns.
    let system_proxy =
        system_proxy::start(&args.system_proxy, &file, &data_dir, local, &status).await?;

    let (blocks, _) = broadcast::channel(BLOCK_NOTICE_BACKLOG);
    let notices = blocks.clone();
    let events = events.observed(Arc::new(move |event: &Event| {
        if event.event_category == EventCategory::Blocked && notices.receiver_count() > 0 {
            let _ = notices.send(BlockNotice {
                time: event.timestamp.clone(),
                host: event.destination_host.clone(),
                category: event.event_name.clone(),
                url: event.url.clone(),
            });
        }
    }));

    let (stop_updates, stop_updates_rx) = watch::channel(false);
    let updater_status = status.clone();
    let updater_pause = pause.clone();
    let updater =
        tokio::spawn(
            lists.run(events.clone(), identity, stop_updates_rx, move |lists| {
                updater_pause.lists_changed();
                updater_status.set_lists(lists.version(), lists.status());
            }),
        );
    let ca_watch = tokio::spawn(ca_watch::run(
        ca_store,
        Arc::clone(&shared_ca),
        ca_key_location,
        status.clone(),
        file.ca.auto_trust,
        stop_updates.subscribe(),
    ));
    tracing::info!(addr = %local, "proxy listening on {local}");

    let policy = pause.proxy_policy();
    let stop_status = status.clone();
    let stop_pause = pause.clone();
    let task = tokio::spawn(async move {
        let served = webwarden_proxy::serve(
            listener,
            shared_ca,
            policy,
            events.clone(),
            settings,
            shutdown,
        )
        .await;
        system_proxy.stop().await;
        let paused = if stop_pause.paused_until().is_some() {
            " while filtering was paused"
        } else {
            ""
        };
        events.send(AgentEvent::now(
            AGENT_STOPPED_EVENT_NAME,
            format!(
                "the webwarden agent stopped{paused}; requests are no longer filtered or reported"
            ),
        ));
        stop_updates.send_replace(true);
        let _ = updater.await;
        let _ = ca_watch.await;
        status_task.abort();
        exporter.shutdown(SHUTDOWN_GRACE).await;
        stop_status.mark_stopped();
        drop(agent_lock);
        if let Err(err) = served {
            tracing::error!(error = %err, "proxy stopped with an error");
            return Err(CliError::Failed(err.into()));
        }
        tracing::info!("stopped");
        Ok(())
    });
    let handle = AgentHandle {
        status,
        blocks,
        pause,
        tray: file.tray.clone(),
        data_dir,
        stop: Arc::new(stop),
    };
    Ok(Agent { handle, task })
}

/// Opens or creates the CA on a blocking thread, because the keychain
/// may respond over D-Bus.
async fn open_ca(data_dir: &Path, storage: KeyStorage) -> Result<(OpenedCa, CaStore), CliError> {
    let dir = data_dir.to_owned();
    let (opened, store) = tokio::task::spawn_blocking(move || {
        let store = CaStore::new(&dir, Keychain::open(storage)?).moving_key_file_to_keychain();
        Ok::<_, CaStoreError>((store.open_or_create()?, store))
    })
    .await
    .map_err(|err| CliError::Failed(err.into()))?
    .map_err(|err| CliError::Failed(err.into()))?;
    tracing::info!(
        path = %data_dir.join(CA_CERT_FILE).display(),
        created = opened.created,
        key = %opened.key_location,
        expires = %opened.ca.not_after(),
        "root CA ready"
    );
    Ok((opened, store))
}

/// Logs each loaded list and prints the bad rows as warnings.
fn log_policy(lists: &ListSet) {
    let policy = lists.policy().load_full();
    lists::print_bad_rows(policy.bad_rows(), policy.bad_row_count(), "warning");
    for source in policy.sources() {
        tracing::info!(
            list = %source.name,
            format = %source.format,
            rules = source.rules.total(),
            bad_rows = source.bad_rows,
            "loaded list"
        );
    }
    if policy.rule_counts().total() == 0 {
        tracing::warn!("the loaded lists contain no rules, so nothing is blocked");
    }
}

fn settings(args: &RunArgs, file: &config::FileConfig) -> anyhow::Result<ProxySettings> {
    let mut settings = ProxySettings::default();
    if let Some(mode) = args.inspection.or(file.inspection_mode()?) {
        settings.inspection = mode;
    }
    if let Some(contact) = &file.contact {
        settings.contact = contact.clone();
    }
    if let Some(size) = file.leaf_cache_size {
        settings.leaf_cache_size = size;
    }
    for domain in file.bypass.iter().chain(&args.bypass) {
        let host = webwarden_policy::Host::parse(domain)
            .map_err(|err| anyhow!("invalid bypass domain {domain:?}: {err}"))?;
        settings.bypass.push(host.as_str().to_owned());
    }
    Ok(settings)
}

/// Starts listening for SIGINT (Ctrl-C), SIGTERM, SIGHUP (the terminal
/// closed) and SIGQUIT, and returns a future that completes on the first
/// of them.
///
/// The listeners exist when this returns, so a signal that arrives before
/// the future is first polled still stops the agent in order, with the OS
/// proxy settings restored, instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};

    let listeners = (|| {
        Ok::<_, std::io::Error>([
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::quit())?,
        ])
    })();
    async move {
        let [mut interrupt, mut terminate, mut hangup, mut quit] = match listeners {
            Ok(listeners) => listeners,
            Err(err) => {
                tracing::error!(error = %err, "failed to listen for stop signals");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
            _ = quit.recv() => "SIGQUIT",
        };
        tracing::info!("received {name}, stopping");
    }
}

/// Returns a future that completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("received Ctrl-C, stopping");
    }
}
