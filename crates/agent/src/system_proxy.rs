//! The OS proxy settings while `webwarden run` runs: the PAC server, and
//! a guard that points the OS settings at it after the proxy is bound and
//! restores the user's settings after the proxy stops.
//!
//! Both are off unless `--system-proxy` or `[system_proxy] enable = true`
//! turns them on, so a developer who runs the agent by hand keeps their
//! desktop's proxy settings. The PAC server also runs when a PAC listen
//! address is set, for settings that `webwarden proxy enable` made.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webwarden_system::sysproxy::{
    self, BackendStatus, EnableOutcome, EnableReport, ProxySettingsBackend, ProxyState,
    ProxyTarget, RestoreOutcome, SystemProxy,
};

use crate::config::{FileConfig, SystemProxySection};
use crate::status::StatusWriter;
use crate::CliError;

/// How often the running agent checks whether the OS settings still point
/// at it, for the status file.
const CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The system proxy flags of `webwarden run`.
#[derive(Debug, Args)]
pub struct SystemProxyArgs {
    /// Point the OS proxy settings at webwarden's PAC file while it runs, and
    /// restore them when it stops [default: `[system_proxy] enable`, else off].
    #[arg(long, overrides_with = "no_system_proxy")]
    system_proxy: bool,
    /// Leave the OS proxy settings alone even when the configuration enables
    /// the system proxy.
    #[arg(long)]
    no_system_proxy: bool,
    /// PAC server listen address; must be a loopback address
    /// [default: `[system_proxy] pac_listen`, else 127.0.0.1:8898].
    #[arg(long, value_name = "ADDR")]
    pac_listen: Option<SocketAddr>,
}

/// Returns the PAC listen address: the flag's, else the configured one,
/// else the default.
pub fn pac_listen(flag: Option<SocketAddr>, section: &SystemProxySection) -> SocketAddr {
    flag.or(section.pac_listen).unwrap_or_else(|| {
        webwarden_proxy::pac::DEFAULT_PAC_LISTEN
            .parse()
            .expect("valid default")
    })
}

/// Creates the manager of the configured backends, with its restore file
/// in `data_dir`.
///
/// # Errors
///
/// Fails on a backend name that this OS does not have.
pub fn manager(section: &SystemProxySection, data_dir: &Path) -> anyhow::Result<SystemProxy> {
    let names: Vec<String> = match &section.backends {
        Some(names) => names.clone(),
        None => sysproxy::backend_names()
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
    };
    let backends = names
        .iter()
        .map(|name| {
            sysproxy::backend_by_name(name).ok_or_else(|| {
                anyhow!(
                    "invalid [system_proxy] backend {name:?}; this OS has {}",
                    sysproxy::backend_names().join(", ")
                )
            })
        })
        .collect::<anyhow::Result<Vec<Box<dyn ProxySettingsBackend>>>>()?;
    Ok(SystemProxy::new(backends, data_dir))
}

/// Logs what enabling did to each backend.
pub fn log_enable(report: &EnableReport, target: &ProxyTarget) {
    for (backend, outcome) in &report.backends {
        match outcome {
            EnableOutcome::Applied => {
                tracing::info!(backend, pac_url = %target.pac_url, "system proxy set to webwarden");
            }
            EnableOutcome::Unavailable => {
                tracing::info!(backend, "system proxy backend not available here");
            }
            EnableOutcome::Failed(err) => {
                tracing::warn!(backend, error = %error_chain(err), "failed to set the system proxy");
            }
        }
    }
}

/// The PAC server and the applied OS settings of a running agent.
pub struct SystemProxyGuard {
    pac: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    applied: Option<Applied>,
}

/// The OS settings that the agent pointed at itself.
struct Applied {
    manager: Arc<SystemProxy>,
    checker: JoinHandle<()>,
}

/// Starts the PAC server and points the OS settings at it, when the flags
/// or the configuration ask for them. `proxy` is the bound proxy address.
///
/// # Errors
///
/// Fails when the PAC address is not loopback or cannot be bound, or when
/// a backend name is invalid. A restore file that cannot be read or
/// written is logged instead, and no setting changes.
pub async fn start(
    args: &SystemProxyArgs,
    file: &FileConfig,
    data_dir: &Path,
    proxy: SocketAddr,
    status: &StatusWriter,
) -> Result<SystemProxyGuard, CliError> {
    let section = &file.system_proxy;
    let enabled = match (args.system_proxy, args.no_system_proxy) {
        (true, _) => true,
        (_, true) => false,
        _ => section.enable,
    };
    let manager = Arc::new(manager(section, data_dir).map_err(CliError::Usage)?);
    let pac_set = args.pac_listen.is_some() || section.pac_listen.is_some();
    if !enabled {
        warn_about_saved_settings(&manager);
        if !pac_set {
            return Ok(SystemProxyGuard {
                pac: None,
                applied: None,
            });
        }
    }

    let (pac_addr, pac) = start_pac(pac_listen(args.pac_listen, section), proxy).await?;
    let mut guard = SystemProxyGuard {
        pac: Some(pac),
        applied: None,
    };
    if enabled {
        let target = ProxyTarget {
            pac_url: webwarden_proxy::pac::pac_url(pac_addr),
            proxy,
        };
        guard.applied = apply(manager, target, status.clone()).await?;
    }
    Ok(guard)
}

impl SystemProxyGuard {
    /// Restores the OS settings, when the agent changed them, and then stops
    /// the PAC server, so clients can fetch the PAC file until the settings
    /// no longer name it.
    pub async fn stop(self) {
        if let Some(applied) = self.applied {
            applied.checker.abort();
            let manager = Arc::clone(&applied.manager);
            match tokio::task::spawn_blocking(move || manager.disable()).await {
                Ok(result) => log_disable(&applied.manager, result),
                Err(err) => tracing::error!(error = %err, "restoring the system proxy panicked"),
            }
        }
        if let Some((stop, task)) = self.pac {
            stop.send_replace(true);
            let _ = task.await;
        }
    }
}

/// Binds the PAC address and serves the PAC file for `proxy` on it.
async fn start_pac(
    listen: SocketAddr,
    proxy: SocketAddr,
) -> Result<(SocketAddr, (watch::Sender<bool>, JoinHandle<()>)), CliError> {
    let listener = webwarden_proxy::bind(listen).await.map_err(|err| {
        CliError::Usage(anyhow::Error::new(err).context("invalid PAC listen address"))
    })?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(webwarden_proxy::pac::serve_pac(
        listener,
        proxy,
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    ));
    let url = webwarden_proxy::pac::pac_url(addr);
    tracing::info!(%url, "serving the PAC file at {url}");
    Ok((addr, (stop, task)))
}

/// Points the OS settings at `target` and starts the task that reports
/// their state in the status file. When the restore file or its lock
/// cannot be used, nothing was changed: the error is logged and the agent
/// keeps filtering without the OS settings, so `None` is returned.
async fn apply(
    manager: Arc<SystemProxy>,
    target: ProxyTarget,
    status: StatusWriter,
) -> Result<Option<Applied>, CliError> {
    let enabling = Arc::clone(&manager);
    let enable_target = target.clone();
    let result = tokio::task::spawn_blocking(move || enabling.enable(&enable_target))
        .await
        .map_err(|err| CliError::Failed(anyhow!("setting the system proxy panicked: {err}")))?;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            tracing::error!(
                error = %error_chain(&err),
                "failed to set the system proxy, so the OS proxy settings are unchanged; \
                 webwarden keeps filtering for programs configured to use it"
            );
            return Ok(None);
        }
    };
    log_enable(&report, &target);
    let checker = tokio::spawn(check_periodically(Arc::clone(&manager), target, status));
    Ok(Some(Applied { manager, checker }))
}

/// Records the backends' state in the status file now and every
/// [`CHECK_INTERVAL`], and warns when a setting stops pointing at
/// webwarden.
async fn check_periodically(manager: Arc<SystemProxy>, target: ProxyTarget, status: StatusWriter) {
    let mut previous: Vec<BackendStatus> = Vec::new();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let checking = Arc::clone(&manager);
        let check_target = target.clone();
        let Ok(current) = tokio::task::spawn_blocking(move || checking.status(&check_target)).await
        else {
            return;
        };
        for backend in &current {
            let was_ours = previous
                .iter()
                .any(|p| p.backend == backend.backend && p.state == ProxyState::Webwarden);
            if was_ours && backend.state != ProxyState::Webwarden {
                tracing::warn!(
                    backend = %backend.backend,
                    state = backend.state.as_str(),
                    settings = %backend.detail,
                    "the system proxy setting no longer points at webwarden"
                );
            }
        }
        status.set_system_proxy(current.clone());
        previous = current;
    }
}

/// Warns when an earlier run left its settings in place, since this run
/// will not restore them.
fn warn_about_saved_settings(manager: &SystemProxy) {
    if manager.has_saved_settings() {
        tracing::warn!(
            path = %manager.restore_path().display(),
            "the system proxy settings of an earlier run are still in place; `webwarden proxy \
             disable` restores the saved ones"
        );
    }
}

fn log_disable(
    manager: &SystemProxy,
    result: Result<Option<sysproxy::DisableReport>, sysproxy::SysProxyError>,
) {
    let report = match result {
        Ok(Some(report)) => report,
        Ok(None) => {
            tracing::warn!("no saved system proxy settings to restore");
            return;
        }
        Err(err) => {
            tracing::error!(error = %error_chain(&err), "failed to restore the system proxy");
            return;
        }
    };
    for (backend, outcome) in &report.backends {
        match outcome {
            RestoreOutcome::Restored => tracing::info!(backend, "system proxy restored"),
            RestoreOutcome::ChangedByUser => tracing::info!(
                backend,
                "system proxy changed after webwarden set it; kept the current settings"
            ),
            RestoreOutcome::Failed(err) => tracing::error!(
                backend,
                error = %error_chain(err),
                "failed to restore the system proxy"
            ),
        }
    }
    if report.file_kept {
        tracing::error!(
            path = %manager.restore_path().display(),
            "some system proxy settings were not restored; they stay saved for the next start \
             or `webwarden proxy disable`"
        );
    }
}

/// Renders an error with its causes, as `error: cause: cause`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
