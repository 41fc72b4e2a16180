//! The employee's own tray settings, kept in `DATA_DIR/tray-settings.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The settings file's name in the data directory.
pub const SETTINGS_FILE: &str = "tray-settings.json";

/// What the employee chose in the window.
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
    /// The settings file of `data_dir`.
    pub fn in_dir(data_dir: &Path) -> SettingsFile {
        SettingsFile {
            path: data_dir.join(SETTINGS_FILE),
        }
    }

    /// Reads the settings; a missing file gives the defaults, and a damaged
    /// one is reported and gives the defaults, so notifications stay on.
    pub fn load(&self) -> UserSettings {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
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
                "the tray settings file is not valid JSON; using the defaults until a setting is changed in the window"
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
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .with_context(|| format!("failed to write {}", self.path.display()))
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
    fn damaged_file_keeps_notifications_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), "{not json").unwrap();
        assert!(SettingsFile::in_dir(dir.path()).load().notifications);
    }
}
