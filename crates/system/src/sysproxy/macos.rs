//! macOS proxy settings through `networksetup`: the automatic proxy
//! configuration URL of every enabled network service.
//!
//! NOTE: this backend is written against the `networksetup` manual page and
//! has never been built or run; the output parsing in particular is untested.

use serde::{Deserialize, Serialize};

use super::{is_webwarden_pac_url, ProxySettingsBackend, ProxyTarget, Snapshot, SysProxyError};
use crate::command::Tool;

/// The backend's name.
pub(crate) const NAME: &str = "networksetup";

const NETWORKSETUP: Tool = Tool {
    program: "/usr/sbin/networksetup",
    provided_by: "the macOS system files",
};

/// The `networksetup` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkSetupBackend;

/// The automatic proxy setting of each enabled network service.
#[derive(Debug, Serialize, Deserialize)]
struct NetworkSetupSettings {
    services: Vec<ServiceSettings>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSettings {
    service: String,
    /// The PAC URL, `None` when `networksetup` prints `(null)`.
    url: Option<String>,
    enabled: bool,
}

impl ProxySettingsBackend for NetworkSetupBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn is_available(&self) -> bool {
        NETWORKSETUP.is_installed()
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        let services = enabled_services()?
            .into_iter()
            .map(|service| read_service(&service))
            .collect::<Result<_, _>>()?;
        Ok(Snapshot::new(NAME, &NetworkSetupSettings { services }))
    }

    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        for service in enabled_services()? {
            NETWORKSETUP.run(["-setautoproxyurl", &service, &target.pac_url])?;
            NETWORKSETUP.run(["-setautoproxystate", &service, "on"])?;
        }
        Ok(())
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        let saved: NetworkSetupSettings = snapshot.decode(NAME)?;
        for service in &saved.services {
            // Setting a URL also turns the automatic proxy on, so the state
            // is set afterwards. A service that had no URL keeps webwarden's
            // URL, switched off.
            if let Some(url) = &service.url {
                NETWORKSETUP.run(["-setautoproxyurl", &service.service, url])?;
            }
            let state = if service.enabled { "on" } else { "off" };
            NETWORKSETUP.run(["-setautoproxystate", &service.service, state])?;
        }
        Ok(())
    }

    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: NetworkSetupSettings = snapshot.decode(NAME)?;
        Ok(!current.services.is_empty()
            && current.services.iter().all(|service| {
                service.enabled && service.url.as_deref() == Some(target.pac_url.as_str())
            }))
    }

    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: NetworkSetupSettings = snapshot.decode(NAME)?;
        Ok(!current.services.is_empty()
            && current.services.iter().all(|service| {
                service.enabled && service.url.as_deref().is_some_and(is_webwarden_pac_url)
            }))
    }

    fn proxy_off(&self, snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        let mut settings: NetworkSetupSettings = snapshot.decode(NAME)?;
        for service in &mut settings.services {
            service.enabled = false;
        }
        Ok(Snapshot::new(NAME, &settings))
    }
}

/// Lists the network services. The first line of the output explains that
/// an asterisk marks a disabled service, and those services are skipped.
fn enabled_services() -> Result<Vec<String>, SysProxyError> {
    let output = NETWORKSETUP.run(["-listallnetworkservices"])?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty() && !line.starts_with('*'))
        .map(str::to_owned)
        .collect())
}

/// Reads `URL: ...` and `Enabled: Yes|No` from `-getautoproxyurl`.
fn read_service(service: &str) -> Result<ServiceSettings, SysProxyError> {
    let output = NETWORKSETUP.run(["-getautoproxyurl", service])?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    let (Some(url), Some(enabled)) = (field("URL:"), field("Enabled:")) else {
        return Err(SysProxyError::UnexpectedOutput {
            command: format!("networksetup -getautoproxyurl {service}"),
            output: text.into_owned(),
        });
    };
    Ok(ServiceSettings {
        service: service.to_owned(),
        url: (url != "(null)" && !url.is_empty()).then(|| url.to_owned()),
        enabled: enabled.eq_ignore_ascii_case("yes"),
    })
}
