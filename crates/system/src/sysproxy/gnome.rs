//! GNOME's proxy settings through `gsettings`, schema
//! `org.gnome.system.proxy`, which GNOME and the programs that follow its
//! proxy settings read.
//!
//! Applying sets `autoconfig-url` to the PAC URL and `mode` to `'auto'`.
//! Only those two keys change, so only they are saved: the manual proxy
//! hosts and ports and `ignore-hosts` keep whatever the user sets. Restoring
//! writes the saved values back as the user's values, even where they were
//! the schema's defaults.
//!
//! `gsettings set` exits with 0 even when dconf cannot store the value (it
//! only prints a warning when there is no session bus), so every write is
//! checked by reading the keys back.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{is_webwarden_pac_url, ProxySettingsBackend, ProxyTarget, Snapshot, SysProxyError};
use crate::command::Tool;

/// The backend's name.
pub(crate) const NAME: &str = "gnome";

const GSETTINGS: Tool = Tool {
    program: "gsettings",
    provided_by: "the libglib2.0-bin package",
};
const SCHEMA: &str = "org.gnome.system.proxy";
const MODE: &str = "mode";
const AUTOCONFIG_URL: &str = "autoconfig-url";

/// The GNOME backend, which runs `gsettings` with the process environment
/// (`DBUS_SESSION_BUS_ADDRESS`, `XDG_CONFIG_HOME`, `XDG_RUNTIME_DIR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GnomeBackend;

/// Both keys as `gsettings get` prints them, in GVariant text form such as
/// `'manual'`, which `gsettings set` takes back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GnomeSettings {
    mode: String,
    autoconfig_url: String,
}

impl GnomeSettings {
    fn has_auto_mode(&self) -> bool {
        parse_gvariant_string(&self.mode).as_deref() == Some("auto")
    }

    fn has_webwarden_url(&self) -> bool {
        parse_gvariant_string(&self.autoconfig_url).is_some_and(|url| is_webwarden_pac_url(&url))
    }

    fn for_target(target: &ProxyTarget) -> GnomeSettings {
        GnomeSettings {
            mode: gvariant_string("auto"),
            autoconfig_url: gvariant_string(&target.pac_url),
        }
    }
}

impl ProxySettingsBackend for GnomeBackend {
    fn name(&self) -> &str {
        NAME
    }

    /// Available when a session bus is set, `gsettings` is installed and
    /// the schema exists. Without a bus, dconf cannot store values.
    fn is_available(&self) -> bool {
        has_session_bus()
            && GSETTINGS.is_installed()
            && GSETTINGS.run(["writable", SCHEMA, MODE]).is_ok()
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        Ok(Snapshot::new(NAME, &read_settings()?))
    }

    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        for key in [MODE, AUTOCONFIG_URL] {
            check_writable(key)?;
        }
        write_settings(&GnomeSettings::for_target(target), WriteOrder::UrlFirst)
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        write_settings(&snapshot.decode(NAME)?, WriteOrder::ModeFirst)
    }

    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: GnomeSettings = snapshot.decode(NAME)?;
        let mode = parse_gvariant_string(&current.mode);
        let url = parse_gvariant_string(&current.autoconfig_url);
        Ok(mode.as_deref() == Some("auto") && url.as_deref() == Some(target.pac_url.as_str()))
    }

    /// True for a webwarden PAC URL of any port, in any mode. A mode other
    /// than `'auto'` with such a URL is what a write interrupted between
    /// the two keys leaves behind.
    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: GnomeSettings = snapshot.decode(NAME)?;
        Ok(current.has_webwarden_url())
    }

    /// Clears the PAC URL, and turns the mode `'auto'` into `'none'`. Any
    /// other mode is the user's and stays.
    fn proxy_off(&self, snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        let current: GnomeSettings = snapshot.decode(NAME)?;
        let mode = if current.has_auto_mode() {
            gvariant_string("none")
        } else {
            current.mode
        };
        let off = GnomeSettings {
            mode,
            autoconfig_url: gvariant_string(""),
        };
        Ok(Snapshot::new(NAME, &off))
    }

    fn restore_unless_changed(
        &self,
        saved: &Snapshot,
        current: &Snapshot,
    ) -> Result<bool, SysProxyError> {
        let plan = restore_plan(
            &saved.decode(NAME)?,
            &current.decode(NAME)?,
            saved.restore_started,
        );
        match plan {
            Some(settings) => {
                write_settings(&settings, WriteOrder::ModeFirst)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Checks for a session bus where GLib looks for one (`gdbusaddress.c`):
/// the address variable, else the `bus` socket in `XDG_RUNTIME_DIR`.
fn has_session_bus() -> bool {
    let address = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty());
    address
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| !dir.is_empty() && Path::new(&dir).join("bus").exists())
}

fn get(key: &str) -> Result<String, SysProxyError> {
    let output = GSETTINGS.run(["get", SCHEMA, key])?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

fn read_settings() -> Result<GnomeSettings, SysProxyError> {
    Ok(GnomeSettings {
        mode: get(MODE)?,
        autoconfig_url: get(AUTOCONFIG_URL)?,
    })
}

/// The order of the two `gsettings set` calls, which decides what a kill
/// between them leaves.
#[derive(Debug, Clone, Copy)]
enum WriteOrder {
    /// Applying sets the URL first, so the mode never selects a PAC file
    /// that is not set yet.
    UrlFirst,
    /// Restoring sets the mode first, so webwarden's URL stays until the
    /// end and the next attempt still recognises the settings as webwarden's.
    ModeFirst,
}

/// Decides what restoring writes, or returns `None` when the user changed
/// the settings since webwarden applied its own.
///
/// Webwarden's mode `'auto'` with a webwarden PAC URL means no one changed
/// them. After a restore began, the saved mode with a webwarden URL is what
/// a kill between the restore's two writes leaves (the mode is written
/// first), so the restore finishes. Before that, the same mix means the
/// user chose that mode, and it stays.
fn restore_plan(
    saved: &GnomeSettings,
    current: &GnomeSettings,
    restore_started: bool,
) -> Option<GnomeSettings> {
    if !current.has_webwarden_url() {
        return None;
    }
    let half_restored = restore_started && current.mode == saved.mode;
    (current.has_auto_mode() || half_restored).then(|| saved.clone())
}

/// Sets both keys in `order`, and then reads them back.
fn write_settings(settings: &GnomeSettings, order: WriteOrder) -> Result<(), SysProxyError> {
    let url = [AUTOCONFIG_URL, settings.autoconfig_url.as_str()];
    let mode = [MODE, settings.mode.as_str()];
    let keys = match order {
        WriteOrder::UrlFirst => [url, mode],
        WriteOrder::ModeFirst => [mode, url],
    };
    for [key, value] in keys {
        GSETTINGS.run(["set", SCHEMA, key, value])?;
    }
    let stored = read_settings()?;
    if stored == *settings {
        return Ok(());
    }
    Err(SysProxyError::NotStored {
        backend: NAME.to_owned(),
        message: format!(
            "gsettings did not store the values (set mode {} and autoconfig-url {}, read back {} \
             and {}); check that the dconf service runs on the session bus",
            settings.mode, settings.autoconfig_url, stored.mode, stored.autoconfig_url
        ),
    })
}

/// Fails when an administrator locked `key` (a dconf lock), since writes to
/// it would be ignored.
fn check_writable(key: &str) -> Result<(), SysProxyError> {
    let output = GSETTINGS.run(["writable", SCHEMA, key])?;
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match answer.as_str() {
        "true" => Ok(()),
        "false" => Err(SysProxyError::NotStored {
            backend: NAME.to_owned(),
            message: format!("{SCHEMA} {key} is locked by the administrator"),
        }),
        _ => Err(SysProxyError::UnexpectedOutput {
            command: format!("gsettings writable {SCHEMA} {key}"),
            output: answer,
        }),
    }
}

/// Quotes `text` as a GVariant string literal: single quotes, with
/// backslashes and single quotes escaped.
fn gvariant_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if c == '\\' || c == '\'' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// Parses a GVariant string literal as `gsettings get` prints it: in
/// single quotes, or in double quotes when the text contains a single
/// quote, with backslash escapes. Returns `None` for anything else.
fn parse_gvariant_string(literal: &str) -> Option<String> {
    let literal = literal.trim();
    let quote = literal.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = literal.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next()? {
            'n' => text.push('\n'),
            't' => text.push('\t'),
            'r' => text.push('\r'),
            'u' => text.push(parse_hex_char(&mut chars, 4)?),
            'U' => text.push(parse_hex_char(&mut chars, 8)?),
            other => text.push(other),
        }
    }
    Some(text)
}

fn parse_hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.by_ref().take(digits).collect();
    if hex.len() != digits {
        return None;
    }
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
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
    fn gvariant_strings_round_trip() {
        for text in [
            "",
            "auto",
            "it's",
            r"back\slash",
            "http://[::1]:8898/proxy.pac",
        ] {
            let quoted = gvariant_string(text);
            assert_eq!(
                parse_gvariant_string(&quoted).as_deref(),
                Some(text),
                "{quoted}"
            );
        }
    }

    #[test]
    fn gsettings_output_forms_parse() {
        assert_eq!(
            parse_gvariant_string("'manual'\n").as_deref(),
            Some("manual")
        );
        assert_eq!(parse_gvariant_string("\"it's\"").as_deref(), Some("it's"));
        assert_eq!(
            parse_gvariant_string(r"'caf\u00e9'").as_deref(),
            Some("café")
        );
        assert_eq!(parse_gvariant_string("@as []"), None);
        assert_eq!(parse_gvariant_string("'unterminated"), None);
    }

    fn settings(mode: &str, url: &str) -> GnomeSettings {
        GnomeSettings {
            mode: gvariant_string(mode),
            autoconfig_url: gvariant_string(url),
        }
    }

    #[test]
    fn restore_plan_finishes_half_restore() {
        let corp = "http://wpad.corp.test/wpad.dat";
        let ours = "http://127.0.0.1:41234/proxy.pac";
        let saved = settings("manual", corp);
        let half_restored = settings("manual", ours);

        // Applied by webwarden, on any port.
        for started in [false, true] {
            assert_eq!(
                restore_plan(&saved, &settings("auto", ours), started),
                Some(saved.clone())
            );
        }
        // A restore killed after it wrote the mode and before the URL.
        assert_eq!(
            restore_plan(&saved, &half_restored, true),
            Some(saved.clone())
        );
        // The same values before any restore: the user chose the mode.
        assert_eq!(restore_plan(&saved, &half_restored, false), None);
        // Another mode, or another PAC file, is the user's.
        assert_eq!(restore_plan(&saved, &settings("none", ours), true), None);
        let user_pac = settings("auto", "http://pac.user.test/p.pac");
        assert_eq!(restore_plan(&saved, &user_pac, true), None);
        assert_eq!(restore_plan(&saved, &saved, true), None);
    }

    #[test]
    fn proxy_off_keeps_user_mode() {
        let backend = GnomeBackend;
        let ours = "http://127.0.0.1:41234/proxy.pac";
        for (mode, expected) in [("auto", "none"), ("manual", "manual")] {
            let snapshot = Snapshot::new(NAME, &settings(mode, ours));
            let off: GnomeSettings = backend.proxy_off(&snapshot).unwrap().decode(NAME).unwrap();
            assert_eq!(off, settings(expected, ""), "from mode {mode}");
        }
    }

    #[test]
    fn points_at_needs_auto_mode_and_our_url() {
        let backend = GnomeBackend;
        let ours = Snapshot::new(NAME, &GnomeSettings::for_target(&target()));
        assert!(backend.points_at(&ours, &target()).unwrap());

        let manual = Snapshot::new(
            NAME,
            &GnomeSettings {
                mode: "'manual'".to_owned(),
                autoconfig_url: gvariant_string(&target().pac_url),
            },
        );
        assert!(!backend.points_at(&manual, &target()).unwrap());

        let other_url = Snapshot::new(
            NAME,
            &GnomeSettings {
                mode: "'auto'".to_owned(),
                autoconfig_url: "'http://wpad.corp.test/wpad.dat'".to_owned(),
            },
        );
        assert!(!backend.points_at(&other_url, &target()).unwrap());
    }
}
