//! The administrator's policy file, which has the same form as the
//! configuration file and takes priority over it.
//!
//! Installers put it at [`default_policy_path`]. Each top-level key it sets
//! replaces the user's value. Inside a table such as `[tray]`, each key it
//! sets replaces the user's key of that table. Lists and SIEM sinks, when
//! the policy has any, replace the user's entirely.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use toml::Table;

/// The environment variable that names another policy file, for tests and
/// for checking a policy before rolling it out.
pub const POLICY_ENV: &str = "WEBWARDEN_POLICY_FILE";

/// The largest policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Returns the system-wide policy file of this OS.
pub fn default_policy_path() -> PathBuf {
    #[cfg(target_os = "macos")]
    {
        PathBuf::from("/Library/Application Support/webwarden/policy.toml")
    }
    #[cfg(windows)]
    {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(base).join("webwarden").join("policy.toml")
    }
    #[cfg(not(any(target_os = "macos", windows)))]
    {
        PathBuf::from("/etc/webwarden/policy.toml")
    }
}

/// Returns the policy file in effect: [`POLICY_ENV`] when set, else
/// [`default_policy_path`].
pub fn policy_path() -> PathBuf {
    match std::env::var_os(POLICY_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default_policy_path(),
    }
}

/// A policy file that was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its settings.
    pub table: Table,
}

/// Reads the policy file, or returns `None` when there is none.
///
/// # Errors
///
/// Fails when the file exists but cannot be read or is not valid, naming
/// the file and the line of the mistake. The agent then does not start,
/// since running without the administrator's settings could weaken
/// filtering.
pub fn read(path: &Path) -> anyhow::Result<Option<Policy>> {
    use webwarden_system::file::{read_regular_file, ReadFileError};

    let bytes = match read_regular_file(path, MAX_POLICY_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadFileError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!(
                "failed to read the policy file {}; fix its permissions or ask the administrator",
                path.display()
            )))
        }
    };
    let invalid = || format!("invalid policy file {}", path.display());
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("not UTF-8 text"))
        .with_context(invalid)?;
    // Parsed as a configuration first, so a mistake names its line and field.
    crate::config::parse(&text).with_context(invalid)?;
    let table: Table = toml::from_str(&text).with_context(invalid)?;
    check_list_paths(&table).with_context(invalid)?;
    Ok(Some(Policy {
        path: path.to_owned(),
        table,
    }))
}

/// Rejects relative list paths, which would otherwise be read relative to
/// each user's configuration file.
fn check_list_paths(table: &Table) -> anyhow::Result<()> {
    let entries = table.get("lists").and_then(|lists| lists.as_array());
    for entry in entries.into_iter().flatten() {
        let Some(path) = entry.get("path").and_then(|path| path.as_str()) else {
            continue;
        };
        let is_url = path.contains("://");
        if !is_url && path != "builtin" && !Path::new(path).is_absolute() {
            anyhow::bail!(
                "[[lists]] path {path:?} is relative; write an absolute path or a URL in the policy file"
            );
        }
    }
    Ok(())
}

/// Lays `policy` over `user`: the policy's keys win, one table level deep.
pub fn merge(user: &mut Table, policy: &Table) {
    for (key, value) in policy {
        match (user.get_mut(key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
                for (inner, value) in theirs {
                    mine.insert(inner.clone(), value.clone());
                }
            }
            _ => {
                user.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn policy_keys_win_one_level_deep() {
        let mut user = table(
            "contact = \"me\"\nlisten = \"127.0.0.1:9000\"\n\
             [tray]\nallow_pause = true\nrequest_access_url = \"https://mine.test/\"\n",
        );
        let policy = table("contact = \"IT desk\"\n[tray]\nallow_pause = false\n");
        merge(&mut user, &policy);
        assert_eq!(user["contact"].as_str(), Some("IT desk"));
        assert_eq!(user["listen"].as_str(), Some("127.0.0.1:9000"));
        assert_eq!(user["tray"]["allow_pause"].as_bool(), Some(false));
        assert_eq!(
            user["tray"]["request_access_url"].as_str(),
            Some("https://mine.test/")
        );
    }

    #[test]
    fn policy_lists_replace_user_lists() {
        let mut user = table("[[lists]]\npath = \"mine.txt\"\n[[lists]]\npath = \"builtin\"\n");
        let policy = table("[[lists]]\npath = \"https://lists.corp.test/list.csv\"\n");
        merge(&mut user, &policy);
        let lists = user["lists"].as_array().unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(
            lists[0]["path"].as_str(),
            Some("https://lists.corp.test/list.csv")
        );
    }

    #[test]
    fn missing_policy_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("policy.toml")).unwrap(), None);
    }

    #[test]
    fn bad_policy_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "contact = \"IT\"\n[tray]\nallow_pause = \"no\"\n").unwrap();
        let text = format!("{:#}", read(&path).unwrap_err());
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn relative_list_path_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[[lists]]\npath = \"lists/company.csv\"\n").unwrap();
        let text = format!("{:#}", read(&path).unwrap_err());
        assert!(text.contains("\"lists/company.csv\" is relative"), "{text}");
    }
}
