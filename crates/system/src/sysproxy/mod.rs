//! The OS proxy settings: points them at webwarden's PAC file while the
//! agent runs, and puts the user's own settings back afterwards.
//!
//! Each place that stores proxy settings is a [`ProxySettingsBackend`]:
//! GNOME's gsettings, KDE's `kioslaverc` and a systemd `environment.d` file
//! on Linux and other Unix desktops, `networksetup` on macOS and the WinINet
//! registry values on Windows. [`SystemProxy`] writes every backend's
//! settings to a restore file before it changes any of them, so a crash
//! never loses the user's settings.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::CommandError;

mod env_file;
mod files;
mod gnome;
mod kde;
#[cfg(target_os = "macos")]
mod macos;
mod manager;
#[cfg(windows)]
mod windows;

pub use env_file::{EnvFileBackend, ENV_FILE_NAME};
pub use gnome::GnomeBackend;
pub use kde::KdeBackend;
#[cfg(target_os = "macos")]
pub use macos::NetworkSetupBackend;
pub use manager::{
    DisableReport, EnableOutcome, EnableReport, RestoreOutcome, SystemProxy, LOCK_FILE,
    RESTORE_FILE,
};
#[cfg(windows)]
pub use windows::WinInetBackend;

/// The PAC URL and proxy address that the OS proxy settings name while
/// webwarden runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTarget {
    /// The URL of the PAC file, such as `http://127.0.0.1:8898/proxy.pac`.
    pub pac_url: String,
    /// The filtering proxy's address, for settings that take a proxy
    /// rather than a PAC file.
    pub proxy: SocketAddr,
}

impl ProxyTarget {
    /// Returns the proxy as a URL, such as `http://127.0.0.1:8899`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }
}

/// One backend's proxy settings, with the value of every setting that
/// [`ProxySettingsBackend::apply`] writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The name of the backend that read the settings.
    pub backend: String,
    /// The values, in the backend's own JSON form.
    pub settings: serde_json::Value,
    /// True once a restore of these settings began, so the backend may
    /// hold a mix of webwarden's and these values, which a restore killed
    /// between two writes leaves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_started: bool,
}

impl Snapshot {
    /// Creates the snapshot of `backend` from its typed settings.
    pub fn new<T: Serialize>(backend: &str, settings: &T) -> Snapshot {
        // The settings types are plain structs of strings, numbers and
        // options, which always convert to JSON.
        let settings = serde_json::to_value(settings).expect("settings convert to JSON");
        Snapshot {
            backend: backend.to_owned(),
            settings,
            restore_started: false,
        }
    }

    /// Converts the settings back to the backend's type.
    ///
    /// # Errors
    ///
    /// Returns [`SysProxyError::InvalidSnapshot`] when the snapshot belongs
    /// to another backend or its values do not fit the type.
    pub fn decode<T: DeserializeOwned>(&self, backend: &str) -> Result<T, SysProxyError> {
        if self.backend != backend {
            return Err(SysProxyError::InvalidSnapshot {
                backend: backend.to_owned(),
                reason: format!("the settings belong to the {} backend", self.backend),
            });
        }
        serde_json::from_value(self.settings.clone()).map_err(|err| {
            SysProxyError::InvalidSnapshot {
                backend: backend.to_owned(),
                reason: err.to_string(),
            }
        })
    }
}

/// One place where the OS or the desktop keeps the proxy settings.
///
/// Implementations are synchronous and may run OS tools, so async callers
/// run them on a blocking thread.
pub trait ProxySettingsBackend: Send + Sync {
    /// Returns the short name used in configuration, logs and the restore
    /// file, such as `gnome`.
    fn name(&self) -> &str;

    /// Checks whether this backend can read and change settings here, for
    /// example whether GNOME's schema and a session bus exist.
    fn is_available(&self) -> bool;

    /// Reads the current values of every setting that [`apply`] changes.
    ///
    /// [`apply`]: ProxySettingsBackend::apply
    fn read(&self) -> Result<Snapshot, SysProxyError>;

    /// Points the settings at `target`.
    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError>;

    /// Writes back the values that `snapshot` holds.
    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError>;

    /// Checks whether `snapshot` contains the values that [`apply`] writes for
    /// `target`.
    ///
    /// [`apply`]: ProxySettingsBackend::apply
    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError>;

    /// Checks whether `snapshot` contains values that any webwarden writes,
    /// whatever its PAC address or data directory. Such values are never
    /// saved as the user's, and finding them at restore time shows that the
    /// user did not change the settings since.
    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError>;

    /// Returns `snapshot` with the proxy turned off. Used when the settings
    /// already pointed at webwarden before it saved them, so restoring them
    /// would leave the proxy pointing at a stopped agent.
    fn proxy_off(&self, snapshot: &Snapshot) -> Result<Snapshot, SysProxyError>;

    /// Writes back `saved` where `current`, the settings read just before,
    /// still contains webwarden's values, and returns false when the user
    /// changed them instead, so nothing was written. Backends whose keys
    /// are written one at a time override this to decide per key.
    fn restore_unless_changed(
        &self,
        saved: &Snapshot,
        current: &Snapshot,
    ) -> Result<bool, SysProxyError> {
        if !self.is_webwarden(current)? {
            return Ok(false);
        }
        self.restore(saved)?;
        Ok(true)
    }
}

/// The paths at which webwarden's PAC server serves the PAC file. They
/// match `PAC_PATH` and `WPAD_PATH` of the `webwarden-proxy` crate, which
/// this crate does not depend on.
const PAC_PATHS: [&str; 2] = ["/proxy.pac", "/wpad.dat"];

/// Checks whether `url` is a PAC URL that some webwarden writes: `http`, a
/// loopback IP address with a port, and one of the PAC server's paths.
/// Every webwarden PAC server listens on a loopback address, so a PAC file
/// on another host is never webwarden's.
pub fn is_webwarden_pac_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let Some(slash) = rest.find('/') else {
        return false;
    };
    let (authority, path) = rest.split_at(slash);
    authority
        .parse::<SocketAddr>()
        .is_ok_and(|addr| addr.ip().is_loopback())
        && PAC_PATHS.contains(&path)
}

/// Whether a backend's settings point at webwarden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyState {
    /// The settings point at webwarden's PAC file or proxy.
    Webwarden,
    /// The settings hold other values.
    Other,
    /// The backend does not exist here, such as GNOME without a session bus.
    Unavailable,
    /// The settings could not be read.
    Error,
}

impl ProxyState {
    /// Returns the lower-case name used in output, such as `webwarden`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyState::Webwarden => "webwarden",
            ProxyState::Other => "other",
            ProxyState::Unavailable => "unavailable",
            ProxyState::Error => "error",
        }
    }
}

/// The state of one backend, for status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// The backend's name.
    pub backend: String,
    /// Whether its settings point at webwarden.
    pub state: ProxyState,
    /// The current values as JSON, or the error.
    pub detail: String,
}

/// The reason proxy settings could not be read, changed or restored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SysProxyError {
    /// An OS tool failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A file could not be read or written.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// The operation, such as `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Saved settings do not fit their backend.
    #[error("invalid saved settings for the {backend} backend: {reason}")]
    InvalidSnapshot {
        /// The backend.
        backend: String,
        /// The reason.
        reason: String,
    },
    /// The restore file is damaged: not valid JSON, a directory, or of an
    /// unknown format version. It is kept, because it may contain the only
    /// copy of the user's settings.
    #[error(
        "invalid restore file {}: {reason}. It may contain the only copy of the proxy settings \
         from before webwarden changed them, so nothing was changed. Restore those settings by \
         hand from it where it is readable, then move it out of the data directory and run the \
         command again",
        path.display()
    )]
    InvalidRestoreFile {
        /// The file.
        path: PathBuf,
        /// The problem with it.
        reason: String,
    },
    /// An administrator locked the setting, so the desktop ignores a new
    /// value and nothing was changed.
    #[error("the {backend} proxy setting is locked by the administrator: {reason}")]
    Locked {
        /// The backend.
        backend: String,
        /// The lock's place and the fix.
        reason: String,
    },
    /// The backend cannot be used here.
    #[error("the {backend} backend is not available here")]
    Unavailable {
        /// The backend.
        backend: String,
    },
    /// The restore file names a backend that is not configured.
    #[error(
        "the restore file contains saved settings of the {backend} backend, which is not in \
         [system_proxy] backends; add it there and run `webwarden proxy disable` again, or \
         restore that backend's settings by hand"
    )]
    NotConfigured {
        /// The backend.
        backend: String,
    },
    /// The tool ran, but reading the settings back showed other values.
    #[error("{backend}: {message}")]
    NotStored {
        /// The backend.
        backend: String,
        /// The expected and the stored values.
        message: String,
    },
    /// A tool printed something this code does not understand.
    #[error("unexpected output from {command}: {output:?}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// The printed text.
        output: String,
    },
}

#[cfg(target_os = "macos")]
const BACKEND_NAMES: &[&str] = &[macos::NAME];
#[cfg(windows)]
const BACKEND_NAMES: &[&str] = &[windows::NAME];
#[cfg(not(any(target_os = "macos", windows)))]
const BACKEND_NAMES: &[&str] = &[gnome::NAME, kde::NAME, env_file::NAME];

/// Returns the names of this OS's backends, in the order they are applied.
pub fn backend_names() -> &'static [&'static str] {
    BACKEND_NAMES
}

/// Creates this OS's backend named `name`, set up from the environment
/// (`HOME`, `XDG_CONFIG_HOME`, `XDG_CURRENT_DESKTOP`), or returns `None`
/// for a name not in [`backend_names`].
pub fn backend_by_name(name: &str) -> Option<Box<dyn ProxySettingsBackend>> {
    if !backend_names().contains(&name) {
        return None;
    }
    let backend: Box<dyn ProxySettingsBackend> = match name {
        gnome::NAME => Box::new(GnomeBackend),
        kde::NAME => Box::new(KdeBackend::from_env()),
        env_file::NAME => Box::new(EnvFileBackend::from_env()),
        #[cfg(target_os = "macos")]
        macos::NAME => Box::new(NetworkSetupBackend),
        #[cfg(windows)]
        windows::NAME => Box::new(WinInetBackend),
        _ => return None,
    };
    Some(backend)
}

/// Returns the user's configuration directory: `XDG_CONFIG_HOME` when it
/// is an absolute path, else `~/.config`, as the XDG Base Directory
/// specification defines.
fn config_home() -> Option<PathBuf> {
    let from_xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    from_xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".config"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Values {
        mode: String,
        url: Option<String>,
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let values = Values {
            mode: "manual".to_owned(),
            url: None,
        };
        let snapshot = Snapshot::new("fake", &values);
        let text = serde_json::to_string(&snapshot).unwrap();
        let parsed: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, snapshot);
        assert_eq!(parsed.decode::<Values>("fake").unwrap(), values);
    }

    #[test]
    fn snapshot_of_other_backend_is_rejected() {
        let snapshot = Snapshot::new(
            "gnome",
            &Values {
                mode: "auto".to_owned(),
                url: None,
            },
        );
        let err = snapshot.decode::<Values>("kde").unwrap_err().to_string();
        assert!(err.contains("belong to the gnome backend"), "{err}");
    }

    #[test]
    fn webwarden_pac_urls_are_recognised() {
        for url in [
            "http://127.0.0.1:8898/proxy.pac",
            "http://127.0.0.1:41234/wpad.dat",
            "http://127.1.2.3:8898/proxy.pac",
            "http://[::1]:8898/proxy.pac",
        ] {
            assert!(is_webwarden_pac_url(url), "{url}");
        }
        for url in [
            "http://wpad.corp.test/wpad.dat",
            "http://10.0.0.1:8898/proxy.pac",
            "http://127.0.0.1:8898/other.pac",
            "http://127.0.0.1:8898/proxy.pac?x=1",
            "https://127.0.0.1:8898/proxy.pac",
            "http://127.0.0.1/proxy.pac",
            "",
        ] {
            assert!(!is_webwarden_pac_url(url), "{url}");
        }
    }

    #[test]
    fn every_backend_name_creates_a_backend() {
        for name in backend_names() {
            let backend = backend_by_name(name).expect("known name");
            assert_eq!(backend.name(), *name);
        }
        assert!(backend_by_name("no-such-backend").is_none());
    }
}
