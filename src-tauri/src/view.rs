//! The contents of the window and the tray menu, computed from the agent's
//! status without Tauri, so they are tested without a display.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use webwarden::{age_text, AgentStatus, TraySection};
use webwarden_system::sysproxy::ProxyState;
use webwarden_tray_state::{assess, Health, ListHealth, RecentBlocks, SinkHealth};

/// The agent's lifecycle, as the tray app sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Phase {
    /// The agent is loading its lists and CA.
    #[default]
    Starting,
    /// The agent serves requests.
    Running,
    /// The agent stopped or failed to start, with the reason when it failed.
    Stopped(Option<String>),
}

/// The employee's own notification setting and whether the policy
/// overrides it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// Notifications are shown.
    pub enabled: bool,
    /// The policy forces them on, so the employee cannot turn them off.
    pub forced: bool,
}

/// One blocked request in the window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockView {
    /// When, RFC 3339.
    pub time: String,
    /// The blocked host.
    pub host: String,
    /// The category of the rule that blocked it.
    pub category: String,
}

/// Everything the window shows; sent to it as the `state` event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// `filtering`, `degraded` or `stopped`.
    pub state: &'static str,
    /// The tray menu's first line.
    pub status_line: String,
    /// Each problem, most important first.
    pub problems: Vec<String>,
    /// The reason the agent stopped, when it failed.
    pub error: Option<String>,
    /// The agent's status, once it runs.
    pub agent: Option<AgentStatus>,
    /// Events waiting for the SIEM, over all sinks.
    pub queued: u64,
    /// The most recent blocked requests, newest first.
    pub recent: Vec<BlockView>,
    /// The notification setting.
    pub notifications: NotificationView,
    /// The policy offers pausing.
    pub can_pause: bool,
    /// The policy offers quitting.
    pub can_quit: bool,
    /// The link for requesting access to a blocked site.
    pub request_access_url: Option<String>,
    /// The app starts at login.
    pub autostart: bool,
}

/// The inputs of [`View`].
#[derive(Debug)]
pub struct ViewInput<'a> {
    /// Whether the agent runs.
    pub phase: &'a Phase,
    /// The agent's status, when it runs.
    pub status: Option<AgentStatus>,
    /// The `[tray]` settings; defaults before the agent started.
    pub policy: &'a TraySection,
    /// The recent blocks.
    pub recent: &'a RecentBlocks,
    /// The employee's notification setting.
    pub notifications: bool,
    /// Whether the autostart entry exists.
    pub autostart: bool,
}

/// Builds the view.
pub fn build(input: ViewInput<'_>) -> View {
    let running = *input.phase == Phase::Running;
    let health = match (&input.status, running) {
        (Some(status), true) => health_of(status),
        _ => Health::default(),
    };
    let assessment = assess(&health);
    let state = assessment.state.as_str();
    let status_line = match input.phase {
        Phase::Starting => "Starting webwarden…".to_owned(),
        _ => assessment.status_line,
    };
    let error = match input.phase {
        Phase::Stopped(reason) => reason.clone(),
        _ => None,
    };
    let queued = input
        .status
        .iter()
        .flat_map(|status| &status.sinks)
        .map(|sink| sink.pending)
        .sum();
    View {
        state,
        status_line,
        problems: assessment
            .problems
            .iter()
            .map(ToString::to_string)
            .collect(),
        error,
        agent: input.status.filter(|_| running),
        queued,
        recent: input
            .recent
            .newest_first()
            .map(|block| BlockView {
                time: block.time.clone(),
                host: block.host.clone(),
                category: block.category.clone(),
            })
            .collect(),
        notifications: NotificationView {
            enabled: input.notifications || input.policy.force_notifications,
            forced: input.policy.force_notifications,
        },
        can_pause: input.policy.allow_pause && running,
        // Quitting a stopped agent weakens nothing, so it is always offered
        // then. While the agent starts the policy is not known yet.
        can_quit: match input.phase {
            Phase::Starting => false,
            Phase::Running => input.policy.allow_quit,
            Phase::Stopped(_) => true,
        },
        request_access_url: input.policy.request_access_url.clone(),
        autostart: input.autostart,
    }
}

/// Maps the agent's status to the tray's health model.
pub fn health_of(status: &AgentStatus) -> Health {
    let managed: Vec<_> = status
        .system_proxy
        .iter()
        .filter(|backend| backend.state != ProxyState::Unavailable)
        .collect();
    Health {
        running: true,
        paused_until: status.paused_until.as_deref().map(clock_time),
        lists: status
            .lists
            .iter()
            .map(|list| ListHealth {
                name: list.source.clone(),
                rules: list.rules,
                stale: list.stale,
                last_error: list.last_error.clone(),
            })
            .collect(),
        sinks: status
            .sinks
            .iter()
            .map(|sink| SinkHealth {
                name: sink.name.clone(),
                healthy: sink.healthy,
                pending: sink.pending,
            })
            .collect(),
        ca_trusted: status.ca.as_ref().map(|ca| ca.trusted),
        system_proxy_set: (!managed.is_empty())
            .then(|| managed.iter().all(|b| b.state == ProxyState::Webwarden)),
    }
}

/// The tray menu's text lines under the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuLines {
    /// The first line: the state in words.
    pub status: String,
    /// The list version and when the lists were last confirmed current.
    pub lists: String,
    /// Events waiting for the SIEM.
    pub queued: String,
    /// The pause entry's label, when pausing is offered.
    pub pause: Option<&'static str>,
    /// Whether "Quit" is offered.
    pub quit: bool,
}

/// The label of the pause entry while filtering.
pub const PAUSE_LABEL: &str = "Pause filtering for 15 minutes";

/// The label of the pause entry while paused.
pub const RESUME_LABEL: &str = "Resume filtering";

/// Computes the tray menu's lines from the view, at time `now`.
pub fn menu_lines(view: &View, now: OffsetDateTime) -> MenuLines {
    let lists = match &view.agent {
        Some(status) => {
            let checked = status
                .lists
                .iter()
                .map(|list| list.checked_at.as_deref().or(list.loaded_at.as_deref()))
                .min()
                .flatten()
                .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok());
            let age = match checked {
                Some(at) => format!("checked {}", age_text((now - at).whole_seconds())),
                None => "never checked".to_owned(),
            };
            format!("Lists: version {}, {age}", status.list_version)
        }
        None => "Lists: not loaded".to_owned(),
    };
    let paused = view
        .agent
        .as_ref()
        .is_some_and(|status| status.paused_until.is_some());
    MenuLines {
        status: view.status_line.clone(),
        lists,
        queued: format!("Events waiting for the SIEM: {}", view.queued),
        pause: view
            .can_pause
            .then_some(if paused { RESUME_LABEL } else { PAUSE_LABEL }),
        quit: view.can_quit,
    }
}

/// The local time zone's offset, read once at startup while the process has
/// one thread (the `time` crate refuses to read it later on Linux).
static LOCAL_OFFSET: std::sync::OnceLock<Option<UtcOffset>> = std::sync::OnceLock::new();

/// Reads the local time zone's offset; call before starting threads.
pub fn read_local_offset() {
    LOCAL_OFFSET.get_or_init(|| UtcOffset::current_local_offset().ok());
}

/// Renders an RFC 3339 time as the local `HH:MM`, as `HH:MM UTC` when the
/// local offset is unknown, or the text itself when it does not parse.
pub fn clock_time(text: &str) -> String {
    let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) else {
        return text.to_owned();
    };
    match LOCAL_OFFSET.get().copied().flatten() {
        Some(offset) => {
            let local = at.to_offset(offset);
            format!("{:02}:{:02}", local.hour(), local.minute())
        }
        None => {
            let utc = at.to_offset(UtcOffset::UTC);
            format!("{:02}:{:02} UTC", utc.hour(), utc.minute())
        }
    }
}

#[cfg(test)]
mod tests;
