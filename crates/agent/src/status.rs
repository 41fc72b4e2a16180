//! The status file of a running agent and `webwarden status`, which reads
//! it.
//!
//! `webwarden run` rewrites `DATA_DIR/status.json` every few seconds and
//! after each list check, so the file's age shows whether the agent runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use webwarden_events::{Event, StatusHandle};
use webwarden_system::sysproxy::{BackendStatus, ProxyState};

use crate::pause::PauseSwitch;
use crate::updates::ListStatus;
use crate::{config, CliError};

/// The status file's name in the data directory.
pub const STATUS_FILE: &str = "status.json";

/// How often the running agent rewrites the status file.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// A status file older than this means the agent is not running.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// The contents of the status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The agent's process ID.
    pub pid: u32,
    /// The proxy's listen address.
    pub listen: String,
    /// When the agent started, RFC 3339.
    pub started_at: String,
    /// When this file was written, RFC 3339.
    pub updated_at: String,
    /// The version of the lists in use.
    pub list_version: String,
    /// Each list.
    pub lists: Vec<ListStatus>,
    /// Each SIEM sink.
    pub sinks: Vec<SinkView>,
    /// Each OS proxy setting that the agent points at itself; empty unless
    /// the system proxy is enabled.
    #[serde(default)]
    pub system_proxy: Vec<BackendStatus>,
    /// The root CA and the trust stores that accept it, once checked.
    #[serde(default)]
    pub ca: Option<CaView>,
    /// While the employee has paused filtering, when the pause ends,
    /// RFC 3339.
    #[serde(default)]
    pub paused_until: Option<String>,
    /// When the agent stopped in order, RFC 3339; `None` while it runs.
    #[serde(default)]
    pub stopped_at: Option<String>,
}

/// The root CA in the status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaView {
    /// The certificate's SHA-256 fingerprint, in hex.
    pub sha256: String,
    /// When the certificate expires.
    pub not_after: String,
    /// The place of its key.
    pub key_location: String,
    /// True when every trust store found trusts it.
    pub trusted: bool,
    /// Each trust store.
    pub stores: Vec<TrustStoreView>,
}

/// One trust store in the status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustStoreView {
    /// The store's name, such as `system`.
    pub name: String,
    /// The file or database it changes.
    pub location: String,
    /// Its state: trusted, not present, or why it is not trusted.
    pub state: String,
}

/// One sink in the status file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkView {
    /// The sink's name.
    pub name: String,
    /// Spooled events it has not delivered.
    pub pending: u64,
    /// False after a failed delivery, until one succeeds.
    pub healthy: bool,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Keeps the status of a running agent and writes it to the status file.
#[derive(Debug, Clone)]
pub struct StatusWriter {
    path: PathBuf,
    status: Arc<Mutex<AgentStatus>>,
    sinks: StatusHandle,
    pause: Option<PauseSwitch>,
}

impl StatusWriter {
    /// Creates the writer for `data_dir`.
    pub fn new(data_dir: &Path, listen: String, sinks: StatusHandle) -> StatusWriter {
        let status = AgentStatus {
            pid: std::process::id(),
            listen,
            started_at: now_text(),
            ..AgentStatus::default()
        };
        StatusWriter {
            path: data_dir.join(STATUS_FILE),
            status: Arc::new(Mutex::new(status)),
            sinks,
            pause: None,
        }
    }

    /// Reports the pause state of `pause` too.
    pub fn with_pause(self, pause: PauseSwitch) -> StatusWriter {
        StatusWriter {
            pause: Some(pause),
            ..self
        }
    }

    /// Refreshes the sinks' and the pause's state and returns a copy.
    pub fn snapshot(&self) -> AgentStatus {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.updated_at = now_text();
        status.sinks = self
            .sinks
            .status()
            .into_iter()
            .map(|sink| SinkView {
                name: sink.name,
                pending: sink.pending,
                healthy: sink.healthy,
                last_error: sink.last_error,
            })
            .collect();
        status.paused_until = self
            .pause
            .as_ref()
            .and_then(PauseSwitch::paused_until)
            .map(Event::timestamp_of);
        status.clone()
    }

    /// Records the lists' state and writes the file.
    pub fn set_lists(&self, version: &str, lists: Vec<ListStatus>) {
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.list_version = version.to_owned();
            status.lists = lists;
        }
        self.write();
    }

    /// Records the CA's trust state and writes the file.
    pub fn set_ca(&self, ca: CaView) {
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.ca = Some(ca);
        }
        self.write();
    }

    /// Records the OS proxy settings' state and writes the file.
    pub fn set_system_proxy(&self, backends: Vec<BackendStatus>) {
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.system_proxy = backends;
        }
        self.write();
    }

    /// Refreshes the sinks' and the pause's state and writes the file.
    pub fn write(&self) {
        let text = serde_json::to_vec_pretty(&self.snapshot()).expect("status serializes");
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(err) = written {
            tracing::warn!(path = %self.path.display(), error = %err, "failed to write the status file");
        }
    }

    /// Records that the agent stopped and writes the file a last time, so
    /// `webwarden status` reports it at once.
    pub fn mark_stopped(&self) {
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.stopped_at = Some(now_text());
        }
        self.write();
    }

    /// Rewrites the file every [`WRITE_INTERVAL`] until the task is dropped.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(WRITE_INTERVAL);
        loop {
            tick.tick().await;
            self.write();
        }
    }
}

/// The largest status file read; the agent writes a few kilobytes.
const MAX_STATUS_BYTES: u64 = 1024 * 1024;

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_STATUS_BYTES)
        .read_to_end(&mut text)?;
    Ok(text)
}

/// Counts the lists, sinks and OS proxy settings that need attention.
fn problems(status: &AgentStatus) -> usize {
    let lists = status
        .lists
        .iter()
        .filter(|list| list.last_error.is_some() || list.stale || list.rules == 0)
        .count();
    let proxy_settings = status
        .system_proxy
        .iter()
        .filter(|backend| matches!(backend.state, ProxyState::Other | ProxyState::Error))
        .count();
    let paused = usize::from(status.paused_until.is_some());
    lists + status.sinks.iter().filter(|sink| !sink.healthy).count() + proxy_settings + paused
}

/// Prints the status for people and returns [`problems`].
fn print_status(status: &AgentStatus, running: bool, age: Duration) -> usize {
    if running {
        println!(
            "webwarden is running (pid {}, proxy {}, since {})",
            status.pid, status.listen, status.started_at
        );
    } else if let Some(stopped) = &status.stopped_at {
        println!("webwarden is not running: it stopped at {stopped}");
    } else {
        println!(
            "webwarden is not running: the status file was last written {} s ago ({})",
            age.as_secs(),
            status.updated_at
        );
    }
    if let Some(until) = &status.paused_until {
        println!("filtering is PAUSED until {until}: every request is let through");
    }
    println!("list version {}", status.list_version);
    for list in &status.lists {
        let state = match (&list.last_error, list.stale) {
            (_, true) => "STALE",
            (Some(_), false) => "ERROR",
            (None, false) if list.rules == 0 => "EMPTY",
            (None, false) => "ok",
        };
        println!(
            "  list {state:5} {}: {} rules, sha256 {}, loaded {}, checked {}",
            list.source,
            list.rules,
            list.sha256.get(..12).unwrap_or("-"),
            ago(list.loaded_at.as_deref()),
            ago(list.checked_at.as_deref()),
        );
        if let Some(error) = &list.last_error {
            println!("             last error: {error}");
        }
    }
    for sink in &status.sinks {
        let state = if sink.healthy { "ok" } else { "ERROR" };
        println!("  sink {state:5} {}: {} pending", sink.name, sink.pending);
        if let Some(error) = sink.last_error.as_ref().filter(|_| !sink.healthy) {
            println!("             last error: {error}");
        }
    }
    for backend in &status.system_proxy {
        println!(
            "  system proxy {:11} {}: {}",
            backend.state.as_str(),
            backend.backend,
            backend.detail
        );
    }
    if let Some(ca) = &status.ca {
        let state = if ca.trusted { "trusted" } else { "NOT TRUSTED" };
        println!(
            "  CA {state} sha256 {}, expires {}, key in {}",
            ca.sha256.get(..12).unwrap_or("-"),
            ca.not_after,
            ca.key_location
        );
        for store in ca.stores.iter().filter(|store| store.state != "trusted") {
            println!(
                "             {} {}: {}",
                store.name, store.location, store.state
            );
        }
    }
    problems(status)
}

/// Prints the administrator's policy file and the settings in effect that
/// it controls.
fn print_policy(file: &config::FileConfig) {
    let Some(policy) = &file.policy else {
        return;
    };
    println!(
        "policy {} (takes priority over the user's configuration)",
        policy.path.display()
    );
    let lists: Vec<&str> = file.lists.iter().map(|list| list.path.as_str()).collect();
    if !lists.is_empty() {
        println!("  lists: {}", lists.join(", "));
    }
    let sinks: Vec<String> = file.siem.iter().map(config::SiemEntry::describe).collect();
    if !sinks.is_empty() {
        println!("  SIEM: {}", sinks.join("; "));
    }
    if let Some(contact) = &file.contact {
        println!("  block page contact: {contact}");
    }
    let yes_no = |value: bool| if value { "yes" } else { "no" };
    println!(
        "  pause allowed: {}, quit allowed: {}, notifications forced: {}",
        yes_no(file.tray.allow_pause),
        yes_no(file.tray.allow_quit),
        yes_no(file.tray.force_notifications)
    );
    if let Some(link) = &file.tray.request_access_url {
        println!("  request access: {link}");
    }
}

/// Renders an RFC 3339 time as its age, such as `12 min ago`.
fn ago(time: Option<&str>) -> String {
    let Some(text) = time else {
        return "never".to_owned();
    };
    let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) else {
        return text.to_owned();
    };
    age_text((OffsetDateTime::now_utc() - at).whole_seconds())
}

/// Renders an age in seconds as `12 s ago`, `5 min ago`, `3 h ago` or
/// `2 days ago`; a negative age (clock skew) counts as 0.
pub fn age_text(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..=119 => format!("{seconds} s ago"),
        120..=7199 => format!("{} min ago", seconds / 60),
        7200..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

fn now_text() -> String {
    Event::timestamp_of(OffsetDateTime::now_utc())
}

/// Arguments of `webwarden status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Configuration file; without it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The agent's data directory [default: from the configuration, else the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the status file as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `webwarden status`: exit 0 when the agent runs and every list and
/// sink is well, 1 when something needs attention, 3 when it is not
/// running.
pub fn run(args: &StatusArgs) -> Result<ExitCode, CliError> {
    let (file, _) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    if !args.json {
        print_policy(&file);
    }
    let data_dir = match args.data_dir.clone().or_else(|| file.data_dir.clone()) {
        Some(dir) => dir,
        None => config::default_data_dir().map_err(CliError::Usage)?,
    };
    let path = data_dir.join(STATUS_FILE);
    let text = match read_limited(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "webwarden is not running: no status file at {}",
                path.display()
            );
            return Ok(ExitCode::from(3));
        }
        Err(err) => {
            return Err(CliError::Failed(
                anyhow::Error::new(err).context(format!("failed to read {}", path.display())),
            ))
        }
    };
    let status: AgentStatus = serde_json::from_slice(&text)
        .with_context(|| {
            format!(
                "invalid status file {}; the running agent rewrites it every few seconds, so restart the agent or delete the file",
                path.display()
            )
        })
        .map_err(CliError::Failed)?;
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::MAX);
    let running = age <= FRESH_FOR && status.stopped_at.is_none();
    let attention = if args.json {
        println!("{}", String::from_utf8_lossy(&text));
        problems(&status)
    } else {
        print_status(&status, running, age)
    };
    if !running {
        return Ok(ExitCode::from(3));
    }
    if attention > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age_text(-5), "0 s ago");
        assert_eq!(age_text(119), "119 s ago");
        assert_eq!(age_text(600), "10 min ago");
        assert_eq!(age_text(3 * 3600), "3 h ago");
        assert_eq!(age_text(3 * 86_400), "3 days ago");
    }
}
