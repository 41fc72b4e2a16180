//! The proxy variables for programs that read `http_proxy` and friends
//! rather than the desktop settings: a systemd `environment.d` file,
//! `$XDG_CONFIG_HOME/environment.d/90-webwarden-proxy.conf`.
//!
//! The systemd user manager reads these files when it starts or reloads, and
//! passes the variables to the services it starts. Programs
//! that are already running keep their variables, and systems without the
//! systemd user manager ignore the file. No shell profile snippet is
//! written: that would mean editing `~/.profile` or `~/.bashrc`, which the
//! user owns, or a file in `/etc/profile.d`, which every user's shells read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{read_optional, remove_if_exists, write_through_links};
use super::{config_home, ProxySettingsBackend, ProxyTarget, Snapshot, SysProxyError};

/// The backend's name.
pub(crate) const NAME: &str = "environment";

/// The file's name in `environment.d`. Where several files set a variable,
/// the file whose name sorts last wins (`environment.d(5)`), so the high
/// number makes these values win over most others.
pub const ENV_FILE_NAME: &str = "90-webwarden-proxy.conf";

/// The first lines of every file that webwarden writes, which mark the
/// file as webwarden's for any proxy address.
const HEADER: &str =
    "# Written by webwarden, the web filter, while it runs; it deletes this file\n\
                      # or puts back the earlier one when it stops.\n";

/// Hosts that programs reach without the proxy.
const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The `environment.d` file backend.
#[derive(Debug, Clone)]
pub struct EnvFileBackend {
    path: Option<PathBuf>,
}

/// The file's contents, `None` when it does not exist.
#[derive(Debug, Serialize, Deserialize)]
struct EnvFileSettings {
    contents: Option<String>,
}

impl EnvFileBackend {
    /// Creates the backend for the file in `config_dir/environment.d`.
    pub fn new(config_dir: &Path) -> EnvFileBackend {
        EnvFileBackend {
            path: Some(config_dir.join("environment.d").join(ENV_FILE_NAME)),
        }
    }

    /// Creates the backend for the user's configuration directory
    /// (`XDG_CONFIG_HOME`, else `~/.config`). Without either, the backend
    /// is not available.
    pub fn from_env() -> EnvFileBackend {
        EnvFileBackend {
            path: config_home().map(|dir| dir.join("environment.d").join(ENV_FILE_NAME)),
        }
    }

    fn path(&self) -> Result<&Path, SysProxyError> {
        self.path
            .as_deref()
            .ok_or_else(|| SysProxyError::Unavailable {
                backend: NAME.to_owned(),
            })
    }
}

impl ProxySettingsBackend for EnvFileBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn is_available(&self) -> bool {
        self.path.is_some()
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        let contents = read_optional(self.path()?)?;
        Ok(Snapshot::new(NAME, &EnvFileSettings { contents }))
    }

    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        write_through_links(self.path()?, render(target).as_bytes())
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        let saved: EnvFileSettings = snapshot.decode(NAME)?;
        match saved.contents {
            Some(contents) => write_through_links(self.path()?, contents.as_bytes()),
            None => remove_if_exists(self.path()?),
        }
    }

    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: EnvFileSettings = snapshot.decode(NAME)?;
        Ok(current.contents.as_deref() == Some(render(target).as_str()))
    }

    /// True for a file that starts with the header that `render` writes,
    /// whatever proxy address it names.
    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: EnvFileSettings = snapshot.decode(NAME)?;
        Ok(current
            .contents
            .as_deref()
            .is_some_and(|contents| contents.starts_with(HEADER)))
    }

    fn proxy_off(&self, _snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        Ok(Snapshot::new(NAME, &EnvFileSettings { contents: None }))
    }
}

/// Renders the file for `target`, in the `KEY=VALUE` lines that
/// `environment.d(5)` describes.
fn render(target: &ProxyTarget) -> String {
    let proxy = target.proxy_url();
    let mut text = String::from(HEADER);
    for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
        text.push_str(&format!("{name}={proxy}\n"));
    }
    for name in ["no_proxy", "NO_PROXY"] {
        text.push_str(&format!("{name}={NO_PROXY}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ProxyTarget {
        ProxyTarget {
            pac_url: "http://127.0.0.1:8898/proxy.pac".to_owned(),
            proxy: "127.0.0.1:8899".parse().unwrap(),
        }
    }

    #[test]
    fn apply_writes_variables_and_restore_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EnvFileBackend::new(dir.path());
        let path = dir.path().join("environment.d").join(ENV_FILE_NAME);

        let before = backend.read().unwrap();
        assert!(!backend.points_at(&before, &target()).unwrap());
        backend.apply(&target()).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        for line in [
            "http_proxy=http://127.0.0.1:8899",
            "https_proxy=http://127.0.0.1:8899",
            "HTTP_PROXY=http://127.0.0.1:8899",
            "HTTPS_PROXY=http://127.0.0.1:8899",
            "no_proxy=localhost,127.0.0.1,::1",
            "NO_PROXY=localhost,127.0.0.1,::1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in {text}"
            );
        }
        assert!(backend
            .points_at(&backend.read().unwrap(), &target())
            .unwrap());

        backend.restore(&before).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn restore_puts_back_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EnvFileBackend::new(dir.path());
        let path = dir.path().join("environment.d").join(ENV_FILE_NAME);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "EDITOR=vi\n").unwrap();

        let before = backend.read().unwrap();
        backend.apply(&target()).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), "EDITOR=vi\n");
        backend.restore(&before).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "EDITOR=vi\n");
    }

    #[test]
    fn file_for_any_port_is_webwarden() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EnvFileBackend::new(dir.path());
        let other = ProxyTarget {
            proxy: "127.0.0.1:9999".parse().unwrap(),
            ..target()
        };
        backend.apply(&other).unwrap();
        assert!(backend.is_webwarden(&backend.read().unwrap()).unwrap());

        std::fs::write(
            dir.path().join("environment.d").join(ENV_FILE_NAME),
            "http_proxy=http://proxy.corp.test:3128\n",
        )
        .unwrap();
        assert!(!backend.is_webwarden(&backend.read().unwrap()).unwrap());
    }

    #[test]
    fn file_for_other_port_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EnvFileBackend::new(dir.path());
        backend.apply(&target()).unwrap();
        let other = ProxyTarget {
            proxy: "127.0.0.1:9999".parse().unwrap(),
            ..target()
        };
        assert!(!backend.points_at(&backend.read().unwrap(), &other).unwrap());
    }
}
