//! The employee's own tray settings, kept in `DATA_DIR/tray-settings.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The settings file's name in the data directory.
pub const SETTINGS_FILE: &str = "tray-settings.json";

/// The largest settings file read; the app writes a few dozen bytes.
pub const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// The employee's choices in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserSettings {
    /// Show a notification when a request is blocked.
    pub notifications: bool,
}

impl Default for UserSettings {
    fn default() -> Self {
        UserSettings {
            notifications: true,
        }
    }
}

/// Reads and writes [`UserSettings`] in one data directory.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    path: PathBuf,
}

impl SettingsFile {
    /// Returns the settings file of `data_dir`.
    pub fn in_dir(data_dir: &Path) -> SettingsFile {
        SettingsFile {
            path: data_dir.join(SETTINGS_FILE),
        }
    }

    /// Reads the settings; a missing file gives the defaults, and a damaged
    /// one is reported and gives the defaults, so notifications stay on.
    /// Only a regular file of at most [`MAX_SETTINGS_BYTES`] is read, so a
    /// FIFO or a device cannot block or exhaust the app.
    pub fn load(&self) -> UserSettings {
        use webwarden_system::file::{read_regular_file, ReadFileError};

        let text = match read_regular_file(&self.path, MAX_SETTINGS_BYTES) {
            Ok(text) => text,
            Err(ReadFileError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                return UserSettings::default()
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "failed to read the tray settings; using the defaults");
                return UserSettings::default();
            }
        };
        serde_json::from_slice(&text).unwrap_or_else(|err| {
            tracing::warn!(
                path = %self.path.display(),
                error = %err,
                "invalid tray settings file; using the defaults until a setting is changed in the window"
            );
            UserSettings::default()
        })
    }

    /// Writes the settings through a temporary file, so a crash leaves the
    /// old or the new file.
    ///
    /// # Errors
    ///
    /// Returns the I/O error, naming the file.
    pub fn save(&self, settings: UserSettings) -> anyhow::Result<()> {
        use anyhow::Context;

        let text = serde_json::to_vec_pretty(&settings).expect("settings serialize");
        let tmp = self.path.with_extension("json.tmp");
        let saved = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if saved.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        saved.with_context(|| format!("failed to write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = SettingsFile::in_dir(dir.path());
        assert!(file.load().notifications, "on until turned off");
        file.save(UserSettings {
            notifications: false,
        })
        .unwrap();
        assert!(!file.load().notifications);
    }

    #[test]
    fn fifo_or_huge_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SETTINGS_FILE);
        let mkfifo = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(mkfifo.success());
        assert!(
            SettingsFile::in_dir(dir.path()).load().notifications,
            "a FIFO does not block"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![b' '; MAX_SETTINGS_BYTES as usize + 1]).unwrap();
        assert!(SettingsFile::in_dir(dir.path()).load().notifications);
    }

    #[test]
    fn damaged_file_keeps_notifications_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), "{not json").unwrap();
        assert!(SettingsFile::in_dir(dir.path()).load().notifications);
    }
}
