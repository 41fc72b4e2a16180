//! KDE's proxy settings: the `[Proxy Settings]` group of
//! `$XDG_CONFIG_HOME/kioslaverc`.
//!
//! Applying sets `ProxyType=2` (use a PAC file) and `Proxy Config Script`
//! to the PAC URL. Every other line of the file stays as it was, and
//! restoring puts back the two keys' earlier values, or removes the keys,
//! and the group, where they did not exist. KDE programs that are already
//! running may keep the old settings until they restart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{read_optional, remove_if_exists, write_through_links};
use super::{
    config_home, is_webwarden_pac_url, ProxySettingsBackend, ProxyTarget, Snapshot, SysProxyError,
};

/// The backend's name.
pub(crate) const NAME: &str = "kde";

const FILE_NAME: &str = "kioslaverc";
const GROUP: &str = "[Proxy Settings]";
const PROXY_TYPE: &str = "ProxyType";
const CONFIG_SCRIPT: &str = "Proxy Config Script";

/// The `ProxyType` value that makes KDE use the PAC file.
const PAC_PROXY_TYPE: &str = "2";

/// KConfig's immutable flag, after a key, a group name or alone on the
/// first line. KConfig ignores later values of an immutable entry, and
/// KDE's settings dialog does not change it.
const IMMUTABLE_FLAG: &str = "[$i]";

/// The `ProxyType` value for no proxy.
const NO_PROXY_TYPE: &str = "0";

/// The `kioslaverc` backend.
#[derive(Debug, Clone)]
pub struct KdeBackend {
    path: Option<PathBuf>,
    kde_desktop: bool,
}

/// The two keys' values as written in the file, `None` where a key is
/// missing, and which parts of the file existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KdeSettings {
    file_existed: bool,
    group_existed: bool,
    proxy_type: Option<String>,
    config_script: Option<String>,
    /// True when the file's last line had no line break. Applying adds one
    /// so that new keys start on a line of their own, and restoring removes
    /// it again. Restore files from before this field read as false.
    #[serde(default)]
    missing_final_newline: bool,
    /// True when KConfig's immutable flag `[$i]` covers either key: on the
    /// key, on the `[Proxy Settings]` group or on the whole file. KConfig
    /// then ignores the value that webwarden would write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    immutable: bool,
}

impl KdeBackend {
    /// Creates the backend for `config_dir/kioslaverc`. `kde_desktop` makes
    /// it available even before the file exists.
    pub fn new(config_dir: &Path, kde_desktop: bool) -> KdeBackend {
        KdeBackend {
            path: Some(config_dir.join(FILE_NAME)),
            kde_desktop,
        }
    }

    /// Creates the backend for the user's configuration directory, for a
    /// KDE desktop when `XDG_CURRENT_DESKTOP` names KDE.
    pub fn from_env() -> KdeBackend {
        let kde_desktop = std::env::var("XDG_CURRENT_DESKTOP").is_ok_and(|desktops| {
            desktops
                .split(':')
                .any(|desktop| desktop.eq_ignore_ascii_case("KDE"))
        });
        KdeBackend {
            path: config_home().map(|dir| dir.join(FILE_NAME)),
            kde_desktop,
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

impl ProxySettingsBackend for KdeBackend {
    fn name(&self) -> &str {
        NAME
    }

    /// Available on a KDE desktop, or wherever `kioslaverc` exists.
    fn is_available(&self) -> bool {
        self.path
            .as_deref()
            .is_some_and(|path| self.kde_desktop || path.is_file())
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        let settings = match read_optional(self.path()?)? {
            Some(text) => find_settings(&text),
            None => KdeSettings {
                file_existed: false,
                group_existed: false,
                proxy_type: None,
                config_script: None,
                missing_final_newline: false,
                immutable: false,
            },
        };
        Ok(Snapshot::new(NAME, &settings))
    }

    /// Fails without changing the file when KConfig's immutable flag
    /// covers the keys.
    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        let path = self.path()?;
        let text = read_optional(path)?.unwrap_or_default();
        if find_settings(&text).immutable {
            return Err(locked_error(path));
        }
        let text = set_keys(&text, Some(PAC_PROXY_TYPE), Some(&target.pac_url));
        write_through_links(path, text.as_bytes())
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        let saved: KdeSettings = snapshot.decode(NAME)?;
        let path = self.path()?;
        let text = read_optional(path)?.unwrap_or_default();
        let mut text = set_keys(
            &text,
            saved.proxy_type.as_deref(),
            saved.config_script.as_deref(),
        );
        if !saved.group_existed {
            text = remove_empty_group(&text);
        }
        if !saved.file_existed && text.trim().is_empty() {
            return remove_if_exists(path);
        }
        if saved.missing_final_newline && text.ends_with('\n') {
            text.pop();
        }
        write_through_links(path, text.as_bytes())
    }

    /// Fails when KConfig's immutable flag covers the keys, since KDE then
    /// uses values that the file may not show.
    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: KdeSettings = snapshot.decode(NAME)?;
        if current.immutable {
            return Err(locked_error(self.path()?));
        }
        Ok(current.proxy_type.as_deref() == Some(PAC_PROXY_TYPE)
            && current.config_script.as_deref() == Some(target.pac_url.as_str()))
    }

    /// True for `ProxyType=2` with a webwarden PAC URL of any port.
    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: KdeSettings = snapshot.decode(NAME)?;
        Ok(current.proxy_type.as_deref() == Some(PAC_PROXY_TYPE)
            && current
                .config_script
                .as_deref()
                .is_some_and(is_webwarden_pac_url))
    }

    fn proxy_off(&self, snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        let saved: KdeSettings = snapshot.decode(NAME)?;
        let off = KdeSettings {
            proxy_type: Some(NO_PROXY_TYPE.to_owned()),
            config_script: None,
            ..saved
        };
        Ok(Snapshot::new(NAME, &off))
    }
}

fn locked_error(path: &Path) -> SysProxyError {
    SysProxyError::Locked {
        backend: NAME.to_owned(),
        reason: format!(
            "{} marks ProxyType or Proxy Config Script of [Proxy Settings] immutable with \
             [$i], so KDE ignores a new value; webwarden left the file unchanged. Ask the \
             administrator to remove the flag, or remove \"kde\" from [system_proxy] backends",
            path.display()
        ),
    }
}

/// One line of a KDE configuration file, with its line break.
struct Line<'a> {
    text: &'a str,
}

impl<'a> Line<'a> {
    /// Returns the group name line such as `[Proxy Settings]`, trimmed.
    fn group(&self) -> Option<&'a str> {
        let trimmed = self.text.trim();
        trimmed.starts_with('[').then_some(trimmed)
    }

    /// Returns the key and value of a `key=value` line. Comments and
    /// group lines have none.
    fn entry(&self) -> Option<(&'a str, &'a str)> {
        let trimmed = self.text.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with('[') {
            return None;
        }
        let (key, value) = trimmed.split_once('=')?;
        Some((key.trim_end(), value.trim_end_matches(['\r', '\n'])))
    }
}

fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.split_inclusive('\n').map(|text| Line { text })
}

/// Reads the two keys from the `[Proxy Settings]` group. When a key
/// appears twice, the last one counts, as in KDE's own reader.
fn find_settings(text: &str) -> KdeSettings {
    let mut settings = KdeSettings {
        file_existed: true,
        group_existed: false,
        proxy_type: None,
        config_script: None,
        missing_final_newline: !text.is_empty() && !text.ends_with('\n'),
        immutable: false,
    };
    let mut in_group = false;
    let mut before_groups = true;
    for line in lines(text) {
        if let Some(group) = line.group() {
            // KConfig reads a `[$i]` line before the first group as the
            // whole file's immutable flag.
            if before_groups && group == IMMUTABLE_FLAG {
                settings.immutable = true;
                continue;
            }
            before_groups = false;
            let flagged = group.strip_suffix(IMMUTABLE_FLAG);
            in_group = group == GROUP || flagged == Some(GROUP);
            settings.group_existed |= in_group;
            settings.immutable |= in_group && flagged.is_some();
            continue;
        }
        let immutable_key = line
            .entry()
            .and_then(|(key, _)| key.strip_suffix(IMMUTABLE_FLAG))
            .is_some_and(|key| key == PROXY_TYPE || key == CONFIG_SCRIPT);
        settings.immutable |= in_group && immutable_key;
        match line.entry() {
            Some((PROXY_TYPE, value)) if in_group => settings.proxy_type = Some(value.to_owned()),
            Some((CONFIG_SCRIPT, value)) if in_group => {
                settings.config_script = Some(value.to_owned());
            }
            _ => {}
        }
    }
    settings
}

/// Sets both keys of the `[Proxy Settings]` group, or removes a key whose
/// value is `None`, and leaves every other line as it was. A missing key is
/// added after the group's last entry, and a missing group at the end of
/// the file. A last line without a line break gets one, so that no key is
/// appended to it.
fn set_keys(text: &str, proxy_type: Option<&str>, config_script: Option<&str>) -> String {
    let terminated;
    let text = if text.is_empty() || text.ends_with('\n') {
        text
    } else {
        terminated = format!("{text}\n");
        terminated.as_str()
    };
    let updates = [(PROXY_TYPE, proxy_type), (CONFIG_SCRIPT, config_script)];
    let mut written = [false, false];
    let mut output: Vec<String> = Vec::new();
    let mut in_group = false;
    // Where the group's missing keys go: after its last entry.
    let mut insert_at = None;
    for line in lines(text) {
        if let Some(group) = line.group() {
            in_group = group == GROUP;
            output.push(line.text.to_owned());
            if in_group {
                insert_at = Some(output.len());
            }
            continue;
        }
        let key = line.entry().map(|(key, _)| key).filter(|_| in_group);
        match updates.iter().position(|(name, _)| Some(*name) == key) {
            Some(index) => {
                if let Some(value) = updates[index].1 {
                    output.push(format!("{}={value}\n", updates[index].0));
                    written[index] = true;
                }
            }
            None => output.push(line.text.to_owned()),
        }
        if in_group && key.is_some() {
            insert_at = Some(output.len());
        }
    }

    let missing: Vec<String> = updates
        .iter()
        .zip(written)
        .filter_map(|((name, value), done)| {
            value.filter(|_| !done).map(|v| format!("{name}={v}\n"))
        })
        .collect();
    if missing.is_empty() {
        return output.concat();
    }
    match insert_at {
        Some(index) => {
            output.splice(index..index, missing);
        }
        None => {
            if let Some(last) = output.last_mut() {
                if !last.ends_with('\n') {
                    last.push('\n');
                }
                output.push("\n".to_owned());
            }
            output.push(format!("{GROUP}\n"));
            output.extend(missing);
        }
    }
    output.concat()
}

/// Removes the `[Proxy Settings]` group when it has no entries left, with
/// the blank line that [`set_keys`] put before it.
fn remove_empty_group(text: &str) -> String {
    let all: Vec<Line<'_>> = lines(text).collect();
    let Some(start) = all.iter().position(|line| line.group() == Some(GROUP)) else {
        return text.to_owned();
    };
    let end = all[start + 1..]
        .iter()
        .position(|line| line.group().is_some())
        .map_or(all.len(), |offset| start + 1 + offset);
    if all[start + 1..end]
        .iter()
        .any(|line| !line.text.trim().is_empty())
    {
        return text.to_owned();
    }
    let blank_before = start > 0 && all[start - 1].text.trim().is_empty();
    let from = if blank_before { start - 1 } else { start };
    all[..from]
        .iter()
        .chain(&all[end..])
        .map(|line| line.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAC: &str = "http://127.0.0.1:8898/proxy.pac";

    fn target() -> ProxyTarget {
        ProxyTarget {
            pac_url: PAC.to_owned(),
            proxy: "127.0.0.1:8899".parse().unwrap(),
        }
    }

    /// Applies and restores with a backend on a file that starts as
    /// `original` (missing when `None`), and returns the file after apply.
    fn round_trip(original: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        if let Some(text) = original {
            std::fs::write(&path, text).unwrap();
        }
        let backend = KdeBackend::new(dir.path(), true);
        let before = backend.read().unwrap();
        backend.apply(&target()).unwrap();
        let applied = std::fs::read_to_string(&path).unwrap();
        assert!(backend
            .points_at(&backend.read().unwrap(), &target())
            .unwrap());

        backend.restore(&before).unwrap();
        match original {
            Some(text) => assert_eq!(std::fs::read_to_string(&path).unwrap(), text),
            None => assert!(!path.exists(), "the file webwarden created is deleted"),
        }
        applied
    }

    #[test]
    fn existing_keys_change_in_place() {
        let original = "[Cache]\nMaxCacheSize=5120\n\n[Proxy Settings]\n\
                        NoProxyFor=corp.test\nProxyType=1\nhttpProxy=http://proxy.corp.test 3128\n\
                        Proxy Config Script=http://wpad.corp.test/wpad.dat\n\n[Other]\nKey=1\n";
        let applied = round_trip(Some(original));
        let expected = "[Cache]\nMaxCacheSize=5120\n\n[Proxy Settings]\n\
                        NoProxyFor=corp.test\nProxyType=2\nhttpProxy=http://proxy.corp.test 3128\n\
                        Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n\n[Other]\nKey=1\n";
        assert_eq!(applied, expected);
    }

    #[test]
    fn missing_keys_join_existing_group() {
        let original = "[Proxy Settings]\nNoProxyFor=corp.test\n\n[Other]\nProxyType=7\n";
        let applied = round_trip(Some(original));
        let expected = "[Proxy Settings]\nNoProxyFor=corp.test\nProxyType=2\n\
                        Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n\n[Other]\nProxyType=7\n";
        assert_eq!(applied, expected, "the key of another group is not ours");
    }

    #[test]
    fn missing_group_is_added_and_removed() {
        let original = "# comment\n[General]\nName=value\n";
        let applied = round_trip(Some(original));
        let expected = "# comment\n[General]\nName=value\n\n[Proxy Settings]\nProxyType=2\n\
                        Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n";
        assert_eq!(applied, expected);
    }

    #[test]
    fn missing_file_is_created_and_deleted() {
        let applied = round_trip(None);
        assert_eq!(
            applied,
            "[Proxy Settings]\nProxyType=2\nProxy Config Script=http://127.0.0.1:8898/proxy.pac\n"
        );
    }

    #[test]
    fn file_without_final_newline_round_trips() {
        let cases = [
            (
                "[Proxy Settings]\nProxyType=1\nhttpProxy=http://proxy.corp.test 3128",
                "[Proxy Settings]\nProxyType=2\nhttpProxy=http://proxy.corp.test 3128\n\
                 Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n",
            ),
            (
                "[General]\nName=value\n[Proxy Settings]",
                "[General]\nName=value\n[Proxy Settings]\nProxyType=2\n\
                 Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n",
            ),
            (
                "[General]\nName=value",
                "[General]\nName=value\n\n[Proxy Settings]\nProxyType=2\n\
                 Proxy Config Script=http://127.0.0.1:8898/proxy.pac\n",
            ),
        ];
        for (original, expected) in cases {
            let applied = round_trip(Some(original));
            assert_eq!(applied, expected, "applied to {original:?}");
        }
    }

    #[test]
    fn immutable_entries_block_apply() {
        let cases = [
            "[Proxy Settings]\nProxyType[$i]=1\n",
            "[Proxy Settings]\nProxy Config Script[$i]=http://wpad.corp.test/wpad.dat\n",
            "[Proxy Settings][$i]\nProxyType=1\n",
            "[$i]\n[Proxy Settings]\nProxyType=1\n",
        ];
        for original in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FILE_NAME);
            std::fs::write(&path, original).unwrap();
            let backend = KdeBackend::new(dir.path(), true);

            let err = backend.apply(&target()).unwrap_err().to_string();
            assert!(err.contains("locked by the administrator"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
            let status = backend.points_at(&backend.read().unwrap(), &target());
            assert!(status.is_err(), "status of {original:?}");
        }
    }

    #[test]
    fn immutable_flag_elsewhere_is_ignored() {
        let original = "[Other][$i]\nProxyType=1\n[Proxy Settings]\nNoProxyFor[$i]=corp.test\n";
        let settings = find_settings(original);
        assert!(!settings.immutable);
        round_trip(Some(original));
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_file_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let original = "[Proxy Settings]\nProxyType=1\n";
        let target_file = dir.path().join("dotfiles-kioslaverc");
        std::fs::write(&target_file, original).unwrap();
        let link = dir.path().join(FILE_NAME);
        std::os::unix::fs::symlink(&target_file, &link).unwrap();
        let backend = KdeBackend::new(dir.path(), true);

        let before = backend.read().unwrap();
        backend.apply(&target()).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(std::fs::read_to_string(&target_file)
            .unwrap()
            .contains("ProxyType=2"));

        backend.restore(&before).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&target_file).unwrap(), original);
    }

    #[test]
    fn settings_read_last_value_of_group() {
        let text = "[Proxy Settings]\nProxyType=1\nProxyType=4\n[Other]\nProxyType=9\n";
        let settings = find_settings(text);
        assert_eq!(settings.proxy_type.as_deref(), Some("4"));
        assert_eq!(settings.config_script, None);
        assert!(settings.group_existed);
    }

    #[test]
    fn user_change_keeps_other_keys_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "[Proxy Settings]\nProxyType=0\n").unwrap();
        let backend = KdeBackend::new(dir.path(), false);
        let before = backend.read().unwrap();
        backend.apply(&target()).unwrap();

        // A key that KDE adds while webwarden's settings are in force.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("NoProxyFor=intranet.test\n");
        std::fs::write(&path, &text).unwrap();

        backend.restore(&before).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[Proxy Settings]\nProxyType=0\nNoProxyFor=intranet.test\n"
        );
    }

    #[test]
    fn availability_needs_kde_or_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!KdeBackend::new(dir.path(), false).is_available());
        assert!(KdeBackend::new(dir.path(), true).is_available());
        std::fs::write(dir.path().join(FILE_NAME), "").unwrap();
        assert!(KdeBackend::new(dir.path(), false).is_available());
    }

    #[test]
    fn proxy_off_turns_pac_off() {
        let dir = tempfile::tempdir().unwrap();
        let backend = KdeBackend::new(dir.path(), true);
        backend.apply(&target()).unwrap();
        let ours = backend.read().unwrap();
        let off = backend.proxy_off(&ours).unwrap();
        backend.restore(&off).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "[Proxy Settings]\nProxyType=0\n"
        );
    }
}
