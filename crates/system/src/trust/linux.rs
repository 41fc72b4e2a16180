//! The Linux system trust store: an anchor file in the distribution's
//! directory for local CAs, and the tool that rebuilds the bundle most
//! programs read (OpenSSL, GnuTLS, curl, Python, Go).
//!
//! Debian and Ubuntu read `/usr/local/share/ca-certificates/*.crt` and
//! rebuild `/etc/ssl/certs` with `update-ca-certificates`. Fedora and RHEL
//! read `/etc/pki/ca-trust/source/anchors/` and rebuild with
//! `update-ca-trust extract`. Chromium 156 on Debian 12 does not trust a CA
//! that is only here, so browsers get their own stores in [`super::nss`].

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::certificate::bundle_contains;
use super::tool::shell_word;
use super::{
    run_tool, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore, Unavailable,
};
use crate::command::Tool;

/// The paths and refresh tool of one distribution's system store.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory of locally added CA files.
    pub anchor_dir: PathBuf,
    /// The extension the refresh tool picks up, without the dot.
    pub extension: &'static str,
    /// The PEM bundle the refresh tool writes.
    pub bundle: PathBuf,
    /// The tool that rebuilds the bundle.
    pub refresh: Tool,
    /// Its arguments after adding a file.
    pub refresh_after_add: Vec<&'static str>,
    /// Its arguments after removing a file: they must also drop the
    /// removed CA's links and bundle entry.
    pub refresh_after_remove: Vec<&'static str>,
}

impl Layout {
    /// Returns the layout of Debian and Ubuntu (package `ca-certificates`).
    ///
    /// Plain `update-ca-certificates` rebuilds the bundle but keeps the
    /// dangling `/etc/ssl/certs/webwarden-<id>.pem` link and its hash link
    /// after a removal. `--fresh` first clears the links that point into the
    /// CA directories, then recreates those still backed by a file
    /// (checked with ca-certificates 20250419~deb12u2 on Debian 12).
    pub fn debian() -> Layout {
        Layout {
            anchor_dir: PathBuf::from("/usr/local/share/ca-certificates"),
            extension: "crt",
            bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            refresh: Tool {
                program: "update-ca-certificates",
                provided_by: "the ca-certificates package",
            },
            refresh_after_add: vec![],
            refresh_after_remove: vec!["--fresh"],
        }
    }

    /// Returns the layout of Fedora, RHEL and their derivatives (package
    /// `ca-certificates`, which `update-ca-trust` comes with).
    pub fn fedora() -> Layout {
        Layout {
            anchor_dir: PathBuf::from("/etc/pki/ca-trust/source/anchors"),
            extension: "pem",
            bundle: PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt"),
            refresh: Tool {
                program: "update-ca-trust",
                provided_by: "the ca-certificates package",
            },
            refresh_after_add: vec!["extract"],
            refresh_after_remove: vec!["extract"],
        }
    }

    /// Returns the layout of this machine, chosen by which anchor
    /// directory exists, or `None` when neither does.
    pub fn detect() -> Option<Layout> {
        [Layout::debian(), Layout::fedora()]
            .into_iter()
            .find(|layout| layout.anchor_dir.is_dir())
    }

    /// Returns the path of the anchor file for `ca`.
    pub fn anchor_path(&self, ca: &CaCertificate) -> PathBuf {
        self.anchor_dir
            .join(format!("{}.{}", ca.file_stem(), self.extension))
    }
}

/// The system store of one [`Layout`].
#[derive(Debug, Clone)]
pub struct SystemStore {
    layout: Layout,
}

/// Returns the system store of this machine, or a store that reports why
/// there is none.
pub fn system_store() -> Box<dyn TrustStore> {
    match Layout::detect() {
        Some(layout) => Box::new(SystemStore::new(layout)),
        None => Box::new(Unavailable {
            name: "system".to_owned(),
            kind: StoreKind::System,
            location: "-".to_owned(),
            reason: format!(
                "no supported system trust store: neither {} (Debian, Ubuntu) nor {} \
                 (Fedora, RHEL) exists",
                Layout::debian().anchor_dir.display(),
                Layout::fedora().anchor_dir.display()
            ),
        }),
    }
}

impl SystemStore {
    /// Creates the store of `layout`.
    pub fn new(layout: Layout) -> SystemStore {
        SystemStore { layout }
    }

    /// Checks whether the bundle contains `ca`. A missing bundle contains
    /// nothing.
    fn bundle_contains(&self, ca: &CaCertificate) -> Result<bool, TrustError> {
        let bundle = match fs::read_to_string(&self.layout.bundle) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(TrustError::Io {
                    action: "read",
                    path: self.layout.bundle.clone(),
                    source,
                })
            }
        };
        Ok(bundle_contains(&bundle, ca.der()))
    }

    /// Checks whether the anchor file exists and contains `ca`.
    fn anchor_contains(&self, ca: &CaCertificate) -> Result<bool, TrustError> {
        let path = self.layout.anchor_path(ca);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(bundle_contains(&text, ca.der())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(TrustError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    fn refresh(&self, args: &[&str]) -> Result<(), TrustError> {
        run_tool(&self.layout.refresh, args)?;
        Ok(())
    }

    fn check_bundle_after_add(&self, ca: &CaCertificate, anchor: &Path) -> Result<(), TrustError> {
        if self.bundle_contains(ca)? {
            return Ok(());
        }
        Err(TrustError::Unexpected(format!(
            "{} did not add {} to {}",
            self.layout.refresh.program,
            anchor.display(),
            self.layout.bundle.display()
        )))
    }

    /// Removes the anchor file that a failed install wrote, and returns
    /// `err`, extended when the file could not be removed.
    fn remove_anchor_after_failure(&self, anchor: &Path, err: TrustError) -> TrustError {
        match fs::remove_file(anchor) {
            Ok(()) => err,
            Err(remove_err) if remove_err.kind() == io::ErrorKind::NotFound => err,
            Err(remove_err) => {
                tracing::warn!(
                    anchor = %anchor.display(),
                    error = %remove_err,
                    "failed to remove the anchor file of a failed install"
                );
                TrustError::Unexpected(format!(
                    "{err}; removing {} again failed ({remove_err}), so the next run of {} \
                     trusts the CA unless you remove the file",
                    anchor.display(),
                    self.layout.refresh.program
                ))
            }
        }
    }

    /// Returns the command line that rebuilds the bundle after a removal.
    fn refresh_after_remove_command(&self) -> String {
        let mut words = vec![shell_word(self.layout.refresh.program)];
        words.extend(
            self.layout
                .refresh_after_remove
                .iter()
                .map(|arg| shell_word(arg)),
        );
        words.join(" ")
    }
}

impl TrustStore for SystemStore {
    fn name(&self) -> String {
        "system".to_owned()
    }

    fn location(&self) -> String {
        self.layout.anchor_dir.display().to_string()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::System
    }

    fn install(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        if self.anchor_contains(ca)? && self.bundle_contains(ca)? {
            return Ok(Change::AlreadyInstalled);
        }
        let path = self.layout.anchor_path(ca);
        if let Err(source) = write_anchor(&path, ca.pem()) {
            // A denied write changed nothing, and keeps its AdminRequired
            // error. Any other failure may have left part of the file.
            let denied = source.kind() == io::ErrorKind::PermissionDenied;
            let err = TrustError::io("write", &path, &self.location(), source);
            return Err(if denied {
                err
            } else {
                self.remove_anchor_after_failure(&path, err)
            });
        }
        // Any later run of the refresh tool, such as a package upgrade's,
        // would trust an anchor left behind, so a failed install removes it.
        let refreshed = self
            .refresh(&self.layout.refresh_after_add)
            .and_then(|()| self.check_bundle_after_add(ca, &path));
        if let Err(err) = refreshed {
            return Err(self.remove_anchor_after_failure(&path, err));
        }
        Ok(Change::Installed)
    }

    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        let path = self.layout.anchor_path(ca);
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(TrustError::io("remove", &path, &self.location(), source)),
        };
        // Without the file, a bundle that still contains the CA is stale:
        // the file was removed by hand and the bundle never rebuilt.
        if !removed && !self.bundle_contains(ca)? {
            return Ok(Change::NotPresent);
        }
        self.refresh(&self.layout.refresh_after_remove)?;
        if self.bundle_contains(ca)? {
            return Err(TrustError::Unexpected(format!(
                "{} still contains the CA after {} ran; another file in {} or the \
                 distribution's CA directory contains it",
                self.layout.bundle.display(),
                self.layout.refresh.program,
                self.layout.anchor_dir.display()
            )));
        }
        Ok(Change::Removed)
    }

    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError> {
        // Programs read the bundle, not the anchor directory, so the bundle
        // decides whether the CA is trusted now.
        let bundled = self.bundle_contains(ca)?;
        let anchor = self.anchor_contains(ca)?;
        let path = self.layout.anchor_path(ca);
        Ok(match (bundled, anchor) {
            (true, true) => TrustState::Trusted,
            (true, false) => TrustState::Incomplete(format!(
                "still trusted until the bundle is rebuilt: {} contains the CA but {} is \
                 missing; run `{}` to finish removing it, or install again to keep it",
                self.layout.bundle.display(),
                path.display(),
                self.refresh_after_remove_command()
            )),
            (false, true) => TrustState::not_trusted_yet(
                format!(
                    "{} exists but {} does not contain it; run {} {}",
                    path.display(),
                    self.layout.bundle.display(),
                    self.layout.refresh.program,
                    self.layout.refresh_after_add.join(" ")
                )
                .trim_end(),
            ),
            (false, false) => TrustState::Absent,
        })
    }
}

/// Writes the anchor file with mode 0644, so every user's programs can
/// read it, and replaces any file of the same name.
fn write_anchor(path: &Path, pem: &str) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    // The mode above applies only to a new file, and the umask may narrow it.
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::certificate::tests::TEST_CA;

    /// Creates a layout in a temporary directory whose refresh tool
    /// rebuilds the bundle from the anchor files, as the real tools do,
    /// unless `script` replaces it.
    fn temp_layout(dir: &Path, script: Option<&str>) -> Layout {
        fs::create_dir_all(dir.join("anchors")).unwrap();
        let rebuild = "cd \"$0\" && cat anchors/*.crt > bundle.crt 2>/dev/null || : > bundle.crt";
        let script = script.unwrap_or(rebuild).to_owned();
        let dir = dir.display().to_string();
        // Layout arguments are static strings; a few leaked bytes per test
        // are fine.
        let args = vec!["-c", &*script.leak(), &*dir.leak()];
        Layout {
            anchor_dir: PathBuf::from(args[2]).join("anchors"),
            extension: "crt",
            bundle: PathBuf::from(args[2]).join("bundle.crt"),
            refresh: Tool {
                program: "sh",
                provided_by: "a POSIX shell",
            },
            refresh_after_add: args.clone(),
            refresh_after_remove: args,
        }
    }

    #[test]
    fn install_and_uninstall_rebuild_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let store = SystemStore::new(temp_layout(dir.path(), None));
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let anchor = store.layout.anchor_path(&ca);

        assert_eq!(store.install(&ca).unwrap(), Change::Installed);
        assert_eq!(fs::read_to_string(&anchor).unwrap(), ca.pem());
        assert_eq!(store.status(&ca).unwrap(), TrustState::Trusted);
        assert_eq!(store.install(&ca).unwrap(), Change::AlreadyInstalled);

        assert_eq!(store.uninstall(&ca).unwrap(), Change::Removed);
        assert!(!anchor.exists());
        assert_eq!(store.status(&ca).unwrap(), TrustState::Absent);
        assert_eq!(store.uninstall(&ca).unwrap(), Change::NotPresent);
    }

    #[test]
    fn stale_bundle_is_rebuilt_on_uninstall() {
        let dir = tempfile::tempdir().unwrap();
        let store = SystemStore::new(temp_layout(dir.path(), None));
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        fs::write(&store.layout.bundle, ca.pem()).unwrap();

        assert_eq!(store.uninstall(&ca).unwrap(), Change::Removed);
        assert_eq!(store.status(&ca).unwrap(), TrustState::Absent);
    }

    #[test]
    fn refresh_that_skips_the_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SystemStore::new(temp_layout(dir.path(), Some("true")));
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let err = store.install(&ca).unwrap_err().to_string();
        assert!(err.contains("sh did not add"), "{err}");
        assert!(!store.layout.anchor_path(&ca).exists());

        fs::write(&store.layout.bundle, ca.pem()).unwrap();
        let err = store.uninstall(&ca).unwrap_err().to_string();
        assert!(err.contains("still contains the CA"), "{err}");
    }

    #[test]
    fn failing_refresh_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let store = SystemStore::new(temp_layout(dir.path(), Some("echo broken >&2; exit 4")));
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let err = store.install(&ca).unwrap_err().to_string();
        assert!(
            err.starts_with("`sh -c 'echo broken >&2; exit 4' "),
            "{err}"
        );
        assert!(err.ends_with(": broken"), "{err}");
    }

    #[test]
    fn failed_refresh_on_install_removes_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = temp_layout(dir.path(), Some("exit 4"));
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let anchor = layout.anchor_path(&ca);
        let store = SystemStore::new(layout.clone());
        assert!(store.install(&ca).is_err());
        assert!(
            !anchor.exists(),
            "the failed install left {}",
            anchor.display()
        );
        assert_eq!(store.status(&ca).unwrap(), TrustState::Absent);

        layout.refresh = Tool {
            program: "webwarden-no-such-refresh-tool",
            provided_by: "nothing",
        };
        let store = SystemStore::new(layout);
        let err = store.install(&ca).unwrap_err().to_string();
        assert!(err.contains("was not found in PATH"), "{err}");
        assert!(
            !anchor.exists(),
            "the failed install left {}",
            anchor.display()
        );
    }

    #[test]
    fn failed_refresh_on_uninstall_is_still_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = temp_layout(dir.path(), None);
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        assert_eq!(
            SystemStore::new(layout.clone()).install(&ca).unwrap(),
            Change::Installed
        );

        layout.refresh_after_remove = vec!["-c", "exit 4"];
        let store = SystemStore::new(layout);
        assert!(store.uninstall(&ca).is_err());
        assert!(!store.layout.anchor_path(&ca).exists());
        let state = store.status(&ca).unwrap();
        assert!(!state.is_trusted());
        let text = state.to_string();
        assert!(
            text.starts_with("still trusted until the bundle is rebuilt: "),
            "{text}"
        );
        assert!(text.contains("sh -c 'exit 4'"), "{text}");
    }

    #[test]
    fn anchor_path_uses_id_and_extension() {
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let path = Layout::debian().anchor_path(&ca);
        assert_eq!(
            path,
            PathBuf::from(format!(
                "/usr/local/share/ca-certificates/webwarden-{}.crt",
                ca.id()
            ))
        );
        let path = Layout::fedora().anchor_path(&ca);
        assert!(path.starts_with("/etc/pki/ca-trust/source/anchors"));
        assert_eq!(path.extension().unwrap(), "pem");
    }

    #[test]
    fn anchor_without_rebuild_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let layout = temp_layout(dir.path(), None);
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let store = SystemStore::new(layout.clone());
        assert_eq!(store.status(&ca).unwrap(), TrustState::Absent);

        write_anchor(&layout.anchor_path(&ca), ca.pem()).unwrap();
        let state = store.status(&ca).unwrap();
        let TrustState::Incomplete(reason) = state else {
            panic!("expected incomplete, got {state:?}");
        };
        assert!(reason.contains("does not contain it"), "{reason}");

        fs::write(&layout.bundle, ca.pem()).unwrap();
        assert_eq!(store.status(&ca).unwrap(), TrustState::Trusted);

        fs::remove_file(layout.anchor_path(&ca)).unwrap();
        let state = store.status(&ca).unwrap();
        assert!(matches!(state, TrustState::Incomplete(_)), "{state:?}");
    }

    #[test]
    fn anchor_file_is_world_readable() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchor.crt");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_anchor(&path, "new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn unwritable_directory_needs_admin() {
        let err = TrustError::io(
            "write",
            "/x",
            "/usr/local/share/ca-certificates",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            err.to_string(),
            "administrator rights are needed to change /usr/local/share/ca-certificates"
        );
        let err = TrustError::io(
            "write",
            "/x",
            "/y",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(err.to_string().starts_with("failed to write /x"), "{err}");
    }
}
