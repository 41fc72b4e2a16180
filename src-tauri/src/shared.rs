//! The tray app's state, shared by the agent thread, the tray menu and the
//! window's commands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tauri::{AppHandle, Emitter, Runtime};
use webwarden::{AgentHandle, BlockNotice, TraySection};
use webwarden_tray_state::{BlockedRequest, Notification, NotificationLimiter, RecentBlocks};

use crate::settings::{SettingsFile, UserSettings};
use crate::view::{self, Phase, View, ViewInput};

/// How many blocked requests the window lists.
pub const RECENT_BLOCKS: usize = 50;

/// At most one notification per host in this time.
pub const NOTIFY_PER_HOST: Duration = Duration::from_secs(5 * 60);

/// At most this many notifications in any minute.
pub const NOTIFY_PER_MINUTE: usize = 4;

/// The window's event that carries a new [`View`].
pub const STATE_EVENT: &str = "state";

/// The tray app's state.
pub struct Shared {
    inner: Mutex<Inner>,
    quitting: AtomicBool,
}

struct Inner {
    phase: Phase,
    agent: Option<AgentHandle>,
    policy: TraySection,
    recent: RecentBlocks,
    limiter: NotificationLimiter,
    settings: UserSettings,
    settings_file: Option<SettingsFile>,
    autostart: bool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            inner: Mutex::new(Inner {
                phase: Phase::Starting,
                agent: None,
                policy: TraySection::default(),
                recent: RecentBlocks::new(RECENT_BLOCKS),
                limiter: NotificationLimiter::new(NOTIFY_PER_HOST, NOTIFY_PER_MINUTE),
                settings: UserSettings::default(),
                settings_file: None,
                autostart: false,
            }),
            quitting: AtomicBool::new(false),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the started agent and reads the employee's settings from its
    /// data directory.
    pub fn agent_started(&self, agent: AgentHandle) {
        let file = SettingsFile::in_dir(agent.data_dir());
        let settings = file.load();
        let mut inner = self.lock();
        inner.policy = agent.tray_settings().clone();
        inner.settings = settings;
        inner.settings_file = Some(file);
        inner.agent = Some(agent);
        inner.phase = Phase::Running;
    }

    /// Records that the agent stopped, with the reason when it failed.
    pub fn agent_stopped(&self, reason: Option<String>) {
        let mut inner = self.lock();
        inner.agent = None;
        inner.phase = Phase::Stopped(reason);
    }

    /// Returns the running agent.
    pub fn agent(&self) -> Option<AgentHandle> {
        self.lock().agent.clone()
    }

    /// Records a block for the window and returns the notification to
    /// show, if the limits and the settings allow one.
    pub fn blocked(&self, notice: &BlockNotice) -> Option<Notification> {
        let mut inner = self.lock();
        inner.recent.push(BlockedRequest {
            time: notice.time.clone(),
            host: notice.host.clone(),
            category: notice.category.clone(),
        });
        let enabled = webwarden_tray_state::limiter::notifications_enabled(
            inner.settings.notifications,
            inner.policy.force_notifications,
        );
        if !enabled {
            return None;
        }
        inner
            .limiter
            .offer(Instant::now(), &notice.host, &notice.category)
    }

    /// Changes the employee's notification setting and saves it.
    ///
    /// # Errors
    ///
    /// Fails when the agent has not started (the data directory is not
    /// known yet) or the file cannot be written.
    pub fn set_notifications(&self, enabled: bool) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let Some(file) = inner.settings_file.clone() else {
            anyhow::bail!("the setting can be changed once webwarden has started");
        };
        let settings = UserSettings {
            notifications: enabled,
        };
        if let Err(err) = file.save(settings) {
            tracing::warn!(error = %format!("{err:#}"), "failed to save the notification setting");
            return Err(err);
        }
        inner.settings = settings;
        Ok(())
    }

    /// Records whether the autostart entry exists.
    pub fn set_autostart(&self, enabled: bool) {
        self.lock().autostart = enabled;
    }

    /// Returns the request-access link from the policy.
    pub fn request_access_url(&self) -> Option<String> {
        self.lock().policy.request_access_url.clone()
    }

    /// Marks that the employee chose Quit.
    pub fn start_quitting(&self) {
        self.quitting.store(true, Ordering::SeqCst);
    }

    /// Returns whether the employee chose Quit.
    pub fn quitting(&self) -> bool {
        self.quitting.load(Ordering::SeqCst)
    }

    /// Builds what the window and the tray show now.
    pub fn view(&self) -> View {
        let inner = self.lock();
        let status = inner.agent.as_ref().map(AgentHandle::status);
        view::build(ViewInput {
            phase: &inner.phase,
            status,
            policy: &inner.policy,
            recent: &inner.recent,
            notifications: inner.settings.notifications,
            autostart: inner.autostart,
        })
    }
}

/// Shows the current view in the tray and sends it to the window.
///
/// The tray is changed on the GUI thread, in a task queued there: each
/// menu change waits for that thread, so changing the menu from the agent's
/// thread while a menu click holds the tray's lock would deadlock.
pub fn refresh<R: Runtime>(app: &AppHandle<R>, shared: &Shared) {
    let view = shared.view();
    if let Err(err) = app.emit(STATE_EVENT, &view) {
        tracing::debug!(error = %err, "failed to send the state to the window");
    }
    let handle = app.clone();
    let queued = app.run_on_main_thread(move || crate::tray::update(&handle, &view));
    if let Err(err) = queued {
        tracing::debug!(error = %err, "failed to queue the tray update");
    }
}
