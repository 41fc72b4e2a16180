//! [`SystemProxy`]: points a set of backends at webwarden and restores
//! them, with the user's settings saved to a restore file first.
//!
//! The restore file (`DATA_DIR/proxy-restore.json`) exists exactly while
//! some backend may hold webwarden's settings. [`SystemProxy::enable`]
//! writes it before it changes anything, and [`SystemProxy::disable`]
//! deletes it once every backend is restored. A file that is still there at
//! the next enable means the last run stopped without restoring. Its saved
//! settings are then kept, never replaced by webwarden's own.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::files::{io_error, read_optional, remove_if_exists, write_private};
use super::{
    BackendStatus, ProxySettingsBackend, ProxyState, ProxyTarget, Snapshot, SysProxyError,
};

/// The restore file's name in the data directory.
pub const RESTORE_FILE: &str = "proxy-restore.json";

/// The name of the file in the data directory whose exclusive lock
/// serializes every change to the restore file and the settings.
pub const LOCK_FILE: &str = "proxy-restore.lock";

/// The restore file's format version.
const FORMAT_VERSION: u32 = 1;

/// The restore file's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoreFile {
    version: u32,
    /// The settings last applied. Restoring does not compare with them,
    /// because any webwarden PAC URL counts as webwarden's, whatever its
    /// port, so the field only records what the last run set.
    target: ProxyTarget,
    /// Each backend's settings from before webwarden changed them.
    saved: Vec<Snapshot>,
}

/// A set of backends and the restore file that keeps their earlier
/// settings.
pub struct SystemProxy {
    backends: Vec<Box<dyn ProxySettingsBackend>>,
    restore_path: PathBuf,
}

/// The result of [`SystemProxy::enable`].
#[derive(Debug)]
pub struct EnableReport {
    /// True when the restore file of an earlier run existed, so its saved
    /// settings were kept.
    pub kept_earlier: bool,
    /// One outcome per backend, in the configured order.
    pub backends: Vec<(String, EnableOutcome)>,
}

/// The result of [`SystemProxy::enable`] for one backend.
#[derive(Debug)]
pub enum EnableOutcome {
    /// The settings point at webwarden now.
    Applied,
    /// The backend does not exist here, so nothing changed.
    Unavailable,
    /// Saving or applying the settings failed.
    Failed(SysProxyError),
}

/// The result of [`SystemProxy::disable`].
#[derive(Debug)]
pub struct DisableReport {
    /// One outcome per saved backend, in the restore file's order.
    pub backends: Vec<(String, RestoreOutcome)>,
    /// True when some backend failed, so the restore file keeps its saved
    /// settings for the next attempt.
    pub file_kept: bool,
}

/// The result of [`SystemProxy::disable`] for one backend.
#[derive(Debug)]
pub enum RestoreOutcome {
    /// The saved settings are back.
    Restored,
    /// The settings no longer pointed at webwarden, so someone changed them
    /// after webwarden applied its own. Their values stay.
    ChangedByUser,
    /// Restoring failed, so the saved settings stay in the restore file.
    Failed(SysProxyError),
}

impl EnableOutcome {
    /// Returns the error of a failed backend.
    pub fn error(&self) -> Option<&SysProxyError> {
        match self {
            EnableOutcome::Failed(err) => Some(err),
            _ => None,
        }
    }
}

impl SystemProxy {
    /// Creates the manager of `backends`, with its restore file in
    /// `data_dir`.
    pub fn new(backends: Vec<Box<dyn ProxySettingsBackend>>, data_dir: &Path) -> SystemProxy {
        SystemProxy {
            backends,
            restore_path: data_dir.join(RESTORE_FILE),
        }
    }

    /// Returns the restore file's path.
    pub fn restore_path(&self) -> &Path {
        &self.restore_path
    }

    /// Checks whether the restore file exists, that is whether some
    /// backend may still hold webwarden's settings.
    pub fn has_saved_settings(&self) -> bool {
        self.restore_path.exists()
    }

    /// Points every available backend at `target`. First it writes each
    /// one's current settings to the restore file, and only after that
    /// write succeeded does it change any of them. Settings already in the
    /// restore file are kept, so enabling twice, or after a crash, never
    /// saves webwarden's own settings as the user's.
    ///
    /// # Errors
    ///
    /// Fails without changing any setting when the lock file cannot be
    /// locked or the restore file cannot be read, parsed or written. A
    /// failure of one backend is reported in
    /// the [`EnableReport`] instead.
    pub fn enable(&self, target: &ProxyTarget) -> Result<EnableReport, SysProxyError> {
        let _lock = self.lock()?;
        let earlier = self.load()?;
        let kept_earlier = earlier.is_some();
        if kept_earlier {
            tracing::warn!(
                path = %self.restore_path.display(),
                "proxy settings saved by an earlier run were not restored; keeping them, and \
                 they will be restored when webwarden stops"
            );
        }
        let mut saved = earlier.map(|file| file.saved).unwrap_or_default();
        let plan: Vec<Result<bool, SysProxyError>> = self
            .backends
            .iter()
            .map(|backend| self.save_backend(backend.as_ref(), &mut saved))
            .collect();
        if !saved.is_empty() {
            self.save(target, saved)?;
        }

        let mut outcomes = Vec::with_capacity(self.backends.len());
        for (backend, step) in self.backends.iter().zip(plan) {
            let outcome = match step {
                Ok(true) => apply_backend(backend.as_ref(), target),
                Ok(false) => EnableOutcome::Unavailable,
                Err(err) => EnableOutcome::Failed(err),
            };
            outcomes.push((backend.name().to_owned(), outcome));
        }
        Ok(EnableReport {
            kept_earlier,
            backends: outcomes,
        })
    }

    /// Restores every backend in the restore file and then deletes the
    /// file, or returns `None` when there is no file and so nothing to
    /// restore. A backend whose settings no longer point at webwarden keeps
    /// them, since the user changed them after webwarden applied its own.
    /// When a backend fails, the file keeps just the failed backends'
    /// settings for the next attempt.
    ///
    /// # Errors
    ///
    /// Fails when the lock file cannot be locked or the restore file cannot
    /// be read, parsed, rewritten or deleted.
    pub fn disable(&self) -> Result<Option<DisableReport>, SysProxyError> {
        let _lock = self.lock()?;
        let Some(file) = self.load()? else {
            return Ok(None);
        };
        // Recorded before the first write, so that the attempt after a kill
        // in the middle of a backend's restore finishes it. The backends
        // read the flag to learn whether an earlier attempt began.
        let started: Vec<Snapshot> = file
            .saved
            .iter()
            .map(|snapshot| Snapshot {
                restore_started: true,
                ..snapshot.clone()
            })
            .collect();
        if started != file.saved {
            self.save(&file.target, started.clone())?;
        }
        let mut left = Vec::new();
        let mut outcomes = Vec::with_capacity(file.saved.len());
        for (snapshot, started) in file.saved.into_iter().zip(started) {
            let outcome = self.restore_backend(&snapshot);
            if matches!(outcome, RestoreOutcome::Failed(_)) {
                left.push(started);
            }
            outcomes.push((snapshot.backend, outcome));
        }

        let file_kept = !left.is_empty();
        if file_kept {
            self.save(&file.target, left)?;
        } else {
            remove_if_exists(&self.restore_path)?;
        }
        Ok(Some(DisableReport {
            backends: outcomes,
            file_kept,
        }))
    }

    /// Reports for each backend whether its settings point at `target`.
    pub fn status(&self, target: &ProxyTarget) -> Vec<BackendStatus> {
        self.backends
            .iter()
            .map(|backend| backend_status(backend.as_ref(), target))
            .collect()
    }

    /// Adds the backend's current settings to `saved` unless the restore
    /// file already has some, and returns whether to apply the backend.
    fn save_backend(
        &self,
        backend: &dyn ProxySettingsBackend,
        saved: &mut Vec<Snapshot>,
    ) -> Result<bool, SysProxyError> {
        if !backend.is_available() {
            return Ok(false);
        }
        if saved
            .iter()
            .any(|snapshot| snapshot.backend == backend.name())
        {
            return Ok(true);
        }
        let mut current = backend.read()?;
        if backend.is_webwarden(&current)? {
            // Another webwarden, with another data directory or a restore
            // file that was deleted, set these values. Saving them would
            // make a later restore point at a stopped agent.
            tracing::warn!(
                backend = backend.name(),
                settings = %current.settings,
                "the proxy settings already point at a webwarden PAC file, but no earlier \
                 settings are saved here; saving them as off, so restoring turns the proxy off"
            );
            current = backend.proxy_off(&current)?;
        }
        saved.push(current);
        Ok(true)
    }

    fn restore_backend(&self, snapshot: &Snapshot) -> RestoreOutcome {
        let name = snapshot.backend.as_str();
        let Some(backend) = self.backends.iter().find(|b| b.name() == name) else {
            return RestoreOutcome::Failed(SysProxyError::NotConfigured {
                backend: name.to_owned(),
            });
        };
        if !backend.is_available() {
            return RestoreOutcome::Failed(SysProxyError::Unavailable {
                backend: name.to_owned(),
            });
        }
        let restored = backend
            .read()
            .and_then(|current| backend.restore_unless_changed(snapshot, &current));
        match restored {
            Ok(true) => RestoreOutcome::Restored,
            Ok(false) => {
                tracing::warn!(
                    backend = name,
                    "the proxy settings changed after webwarden applied its own; keeping the new \
                     values"
                );
                RestoreOutcome::ChangedByUser
            }
            Err(err) => RestoreOutcome::Failed(err),
        }
    }

    /// Takes the exclusive lock on [`LOCK_FILE`], waiting while another
    /// webwarden process holds it, so that concurrent `proxy enable`,
    /// `proxy disable` and agents on one data directory each see the
    /// restore file that the previous one left. The lock ends when the
    /// returned file is dropped or the process exits.
    fn lock(&self) -> Result<File, SysProxyError> {
        let dir = self.restore_path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| io_error("create", dir, source))?;
        let path = dir.join(LOCK_FILE);
        let file = open_lock_file(&path).map_err(|source| io_error("open", &path, source))?;
        file.lock()
            .map_err(|source| io_error("lock", &path, source))?;
        Ok(file)
    }

    /// Reads the restore file, or returns `None` when there is none. An
    /// empty file, which a crash during the first write can leave, contains
    /// nothing to restore, so it is moved aside with a warning.
    fn load(&self) -> Result<Option<RestoreFile>, SysProxyError> {
        let path = &self.restore_path;
        let invalid = |reason: String| SysProxyError::InvalidRestoreFile {
            path: path.clone(),
            reason,
        };
        if path.is_dir() {
            return Err(invalid("it is a directory, not a file".to_owned()));
        }
        let Some(text) = read_optional(path)? else {
            return Ok(None);
        };
        if text.trim().is_empty() {
            self.move_aside_empty()?;
            return Ok(None);
        }
        let file: RestoreFile = serde_json::from_str(&text).map_err(|err| {
            invalid(format!(
                "it is not a valid restore file ({err}), so it may have been cut short or edited"
            ))
        })?;
        if file.version != FORMAT_VERSION {
            return Err(invalid(format!(
                "its format version {} is not supported, because this webwarden reads version \
                 {FORMAT_VERSION}; a newer webwarden's `proxy disable` may read it",
                file.version
            )));
        }
        Ok(Some(file))
    }

    /// Renames the empty restore file to `proxy-restore.json.damaged-SECONDS`,
    /// with the Unix time, so the next write does not replace it silently.
    fn move_aside_empty(&self) -> Result<(), SysProxyError> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let aside = self
            .restore_path
            .with_file_name(format!("{RESTORE_FILE}.damaged-{seconds}"));
        fs::rename(&self.restore_path, &aside)
            .map_err(|source| io_error("rename", &self.restore_path, source))?;
        tracing::warn!(
            path = %self.restore_path.display(),
            moved_to = %aside.display(),
            "the restore file was empty, so it contained no saved proxy settings; moved it aside \
             and continuing as if there were none"
        );
        Ok(())
    }

    fn save(&self, target: &ProxyTarget, saved: Vec<Snapshot>) -> Result<(), SysProxyError> {
        let file = RestoreFile {
            version: FORMAT_VERSION,
            target: target.clone(),
            saved,
        };
        let mut text = serde_json::to_vec_pretty(&file)
            .map_err(|err| io_error("encode", &self.restore_path, std::io::Error::other(err)))?;
        text.push(b'\n');
        write_private(&self.restore_path, &text)
    }
}

/// Opens or creates the lock file. A symbolic link is rejected, because
/// creating through it would let the link's owner make webwarden create or
/// lock a file elsewhere.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(std::io::Error::other(
                "it is a symbolic link; delete it, and webwarden creates a regular file there",
            ));
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Closes the gap between the check above and the open.
        options.custom_flags(libc::O_NOFOLLOW).mode(0o600);
    }
    options.open(path)
}

fn apply_backend(backend: &dyn ProxySettingsBackend, target: &ProxyTarget) -> EnableOutcome {
    match backend.apply(target) {
        Ok(()) => EnableOutcome::Applied,
        Err(err) => EnableOutcome::Failed(err),
    }
}

fn backend_status(backend: &dyn ProxySettingsBackend, target: &ProxyTarget) -> BackendStatus {
    let status = |state, detail: String| BackendStatus {
        backend: backend.name().to_owned(),
        state,
        detail,
    };
    if !backend.is_available() {
        return status(ProxyState::Unavailable, "not available here".to_owned());
    }
    let current = match backend.read() {
        Ok(current) => current,
        Err(err) => return status(ProxyState::Error, error_chain(&err)),
    };
    let detail = current.settings.to_string();
    match backend.points_at(&current, target) {
        Ok(true) => status(ProxyState::Webwarden, detail),
        Ok(false) => status(ProxyState::Other, detail),
        Err(err) => status(ProxyState::Error, error_chain(&err)),
    }
}

/// Renders an error with its causes, as `error: cause: cause`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
