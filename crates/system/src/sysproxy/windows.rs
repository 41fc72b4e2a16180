//! Windows proxy settings: the current user's WinINet values under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`,
//! which Windows' Internet Options dialog shows.
//!
//! Applying sets `AutoConfigURL` to the PAC URL, and also `ProxyEnable` to 1
//! and `ProxyServer` to the proxy, for programs that read only the manual
//! proxy. Then WinINet is notified to reload its settings.
//!
//! NOTE: this backend is written against the winreg and WinINet
//! documentation and has never been built or run on Windows.

// `InternetSetOptionW` is a C function with no safe wrapper. The one unsafe
// block calls it with the null handle and null buffer that its two options
// take.
#![allow(unsafe_code)]

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use windows_sys::Win32::Networking::WinInet::{
    InternetSetOptionW, INTERNET_OPTION_REFRESH, INTERNET_OPTION_SETTINGS_CHANGED,
};
use winreg::enums::{HKEY_CURRENT_USER, KEY_READ, KEY_WRITE};
use winreg::RegKey;

use super::{is_webwarden_pac_url, ProxySettingsBackend, ProxyTarget, Snapshot, SysProxyError};

/// The backend's name.
pub(crate) const NAME: &str = "wininet";

const KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const AUTO_CONFIG_URL: &str = "AutoConfigURL";
const PROXY_ENABLE: &str = "ProxyEnable";
const PROXY_SERVER: &str = "ProxyServer";

/// The WinINet backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct WinInetBackend;

/// The three values, `None` where a value does not exist.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WinInetSettings {
    auto_config_url: Option<String>,
    proxy_enable: Option<u32>,
    proxy_server: Option<String>,
}

impl ProxySettingsBackend for WinInetBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn is_available(&self) -> bool {
        open(KEY_READ).is_ok()
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        let key = open(KEY_READ)?;
        let settings = WinInetSettings {
            auto_config_url: optional(key.get_value(AUTO_CONFIG_URL), AUTO_CONFIG_URL)?,
            proxy_enable: optional(key.get_value(PROXY_ENABLE), PROXY_ENABLE)?,
            proxy_server: optional(key.get_value(PROXY_SERVER), PROXY_SERVER)?,
        };
        Ok(Snapshot::new(NAME, &settings))
    }

    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        write(&WinInetSettings {
            auto_config_url: Some(target.pac_url.clone()),
            proxy_enable: Some(1),
            proxy_server: Some(target.proxy.to_string()),
        })
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        write(&snapshot.decode(NAME)?)
    }

    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: WinInetSettings = snapshot.decode(NAME)?;
        Ok(current.auto_config_url.as_deref() == Some(target.pac_url.as_str()))
    }

    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: WinInetSettings = snapshot.decode(NAME)?;
        Ok(current
            .auto_config_url
            .as_deref()
            .is_some_and(is_webwarden_pac_url))
    }

    fn proxy_off(&self, _snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        let off = WinInetSettings {
            auto_config_url: None,
            proxy_enable: Some(0),
            proxy_server: None,
        };
        Ok(Snapshot::new(NAME, &off))
    }
}

fn open(access: u32) -> Result<RegKey, SysProxyError> {
    RegKey::predef(HKEY_CURRENT_USER)
        .open_subkey_with_flags(KEY, access)
        .map_err(|source| registry_error("open", None, source))
}

fn write(settings: &WinInetSettings) -> Result<(), SysProxyError> {
    let key = open(KEY_READ | KEY_WRITE)?;
    set_or_delete(&key, AUTO_CONFIG_URL, settings.auto_config_url.as_ref())?;
    set_or_delete(&key, PROXY_ENABLE, settings.proxy_enable.as_ref())?;
    set_or_delete(&key, PROXY_SERVER, settings.proxy_server.as_ref())?;
    notify_wininet()
}

fn set_or_delete<T: winreg::types::ToRegValue>(
    key: &RegKey,
    name: &str,
    value: Option<&T>,
) -> Result<(), SysProxyError> {
    let result = match value {
        Some(value) => key.set_value(name, value),
        None => match key.delete_value(name) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    result.map_err(|source| registry_error("write", Some(name), source))
}

/// Tells WinINet, and the programs that use it, that the settings changed.
fn notify_wininet() -> Result<(), SysProxyError> {
    for option in [INTERNET_OPTION_SETTINGS_CHANGED, INTERNET_OPTION_REFRESH] {
        // SAFETY: both options take no handle and no buffer, which the
        // WinINet documentation allows for them.
        let ok = unsafe { InternetSetOptionW(std::ptr::null(), option, std::ptr::null(), 0) };
        if ok == 0 {
            return Err(SysProxyError::Io {
                action: "notify WinINet of",
                path: PathBuf::from(format!(r"HKCU\{KEY}")),
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

fn optional<T>(value: io::Result<T>, name: &str) -> Result<Option<T>, SysProxyError> {
    match value {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(registry_error("read", Some(name), source)),
    }
}

fn registry_error(action: &'static str, value: Option<&str>, source: io::Error) -> SysProxyError {
    let path = match value {
        Some(value) => format!(r"HKCU\{KEY}\{value}"),
        None => format!(r"HKCU\{KEY}"),
    };
    SysProxyError::Io {
        action,
        path: PathBuf::from(path),
        source,
    }
}
