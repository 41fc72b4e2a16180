//! The agent's configuration file (TOML) and its defaults.
//!
//! The file lives in the OS configuration directory
//! (`~/.config/webwarden/config.toml` on Linux) unless `--config` names
//! another. Every field is optional; command-line flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use directories::ProjectDirs;
use serde::Deserialize;
use webwarden_policy::{Action, Format, SourceOptions};
use webwarden_proxy::InspectionMode;

use crate::ca_store::KeyStorage;
use crate::lists::ListSpec;

/// The configuration file's contents.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Proxy listen address, a loopback address and port.
    pub listen: Option<SocketAddr>,
    /// Directory for the CA, events and other state.
    pub data_dir: Option<PathBuf>,
    /// JSON-lines file that receives one event per request.
    pub events_file: Option<PathBuf>,
    /// `all` (default) or `blocked-only`.
    pub inspection: Option<String>,
    /// Domains whose tunnels are never decrypted unless blocked.
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Contact text on the block page.
    pub contact: Option<String>,
    /// How many hosts' leaf certificates are cached.
    pub leaf_cache_size: Option<u64>,
    /// Lists to load, in order; without any, the built-in list.
    #[serde(default)]
    pub lists: Vec<ListEntry>,
    /// The on-disk queue toward the SIEM.
    #[serde(default)]
    pub spool: SpoolSection,
    /// The SIEM sinks, besides `events_file`.
    #[serde(default)]
    pub siem: Vec<SiemEntry>,
    /// The refresh and check settings of downloaded and local lists.
    #[serde(default)]
    pub updates: UpdatesSection,
    /// The storage of the root CA's key.
    #[serde(default)]
    pub ca: CaSection,
    /// The OS proxy settings and the PAC file that they point at.
    #[serde(default)]
    pub system_proxy: SystemProxySection,
    /// The tray app's options for the employee.
    #[serde(default)]
    pub tray: TraySection,
    /// The administrator's policy file laid over this configuration, if any.
    #[serde(skip)]
    pub policy: Option<crate::policy_file::Policy>,
}

/// The `[tray]` table: what the tray app offers the employee.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TraySection {
    /// Offer "Pause filtering for 15 minutes" (default true).
    #[serde(default = "yes")]
    pub allow_pause: bool,
    /// Offer "Quit", which stops filtering until the app starts again
    /// (default true).
    #[serde(default = "yes")]
    pub allow_quit: bool,
    /// Show a notification for every block, overriding the employee's own
    /// setting (default false).
    #[serde(default)]
    pub force_notifications: bool,
    /// The link for requesting access to a blocked site, an `https://`,
    /// `http://` or `mailto:` URL shown in the tray window.
    pub request_access_url: Option<String>,
}

impl Default for TraySection {
    fn default() -> Self {
        TraySection {
            allow_pause: true,
            allow_quit: true,
            force_notifications: false,
            request_access_url: None,
        }
    }
}

fn yes() -> bool {
    true
}

impl TraySection {
    /// Checks the request-access link.
    ///
    /// # Errors
    ///
    /// Fails when the link is not an absolute `https://`, `http://` or
    /// `mailto:` URL.
    pub fn validate(&self) -> anyhow::Result<()> {
        let Some(link) = &self.request_access_url else {
            return Ok(());
        };
        let url = url::Url::parse(link).map_err(|err| {
            anyhow!("[tray] request_access_url {link:?} is not a URL ({err}); write it as https://host/path or mailto:address")
        })?;
        if !matches!(url.scheme(), "https" | "http" | "mailto") {
            anyhow::bail!(
                "[tray] request_access_url {link:?} uses the scheme {:?}; use https://, http:// or mailto:",
                url.scheme()
            );
        }
        Ok(())
    }
}

/// The `[ca]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// `auto` (default): the OS keychain, or an owner-only file where none
    /// works; `keychain`: the keychain only; `file`: the file only.
    #[serde(default)]
    pub key_storage: KeyStorage,
    /// Add the CA to every trust store that does not trust it yet, at start
    /// and every few minutes: the browsers' stores directly, and the system
    /// store through `sudo -n /usr/bin/webwarden ca trust-user`, which the
    /// Linux package allows (default false).
    #[serde(default)]
    pub auto_trust: bool,
}

/// The `[system_proxy]` table.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SystemProxySection {
    /// Point the OS proxy settings at webwarden while `webwarden run` runs,
    /// and restore them when it stops (default false).
    #[serde(default)]
    pub enable: bool,
    /// PAC server listen address, a loopback address and port (default
    /// 127.0.0.1:8898).
    pub pac_listen: Option<SocketAddr>,
    /// The settings to change, by backend name (default: every backend of
    /// this OS).
    pub backends: Option<Vec<String>>,
}

/// The `[updates]` table.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdatesSection {
    /// Seconds between checks, before 20% jitter either way (default 900).
    pub refresh_seconds: Option<u64>,
    /// Bound on one download, in seconds (default 30).
    pub timeout_seconds: Option<u64>,
    /// Largest accepted list in bytes (default 64 MiB).
    pub max_bytes: Option<u64>,
    /// A new copy with fewer rules than this fraction of the last good one
    /// is rejected (default 0.5).
    pub min_fraction: Option<f64>,
    /// Accept the next copy however much it shrank.
    #[serde(default)]
    pub allow_shrink: bool,
    /// Minisign public key; when set, lists must carry a valid signature.
    pub public_key: Option<String>,
    /// Allow `http://` lists on hosts other than loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// Seconds after which a list not confirmed current is reported stale
    /// (default 86400).
    pub stale_after_seconds: Option<u64>,
    /// PEM roots trusted for list servers besides the OS store.
    pub ca_file: Option<PathBuf>,
}

/// The `[spool]` table: the on-disk event queue and its retry timing.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Byte limit; past it the oldest events are dropped and reported.
    pub max_bytes: Option<u64>,
    /// Delay after the first failed delivery, in milliseconds.
    pub retry_initial_ms: Option<u64>,
    /// Maximum delay between delivery attempts, in seconds.
    pub retry_max_seconds: Option<u64>,
}

/// One `[[siem]]` entry, selected by `kind`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SiemEntry {
    /// `kind = "qradar-http"`: the QRadar HTTP Receiver.
    QradarHttp {
        /// Collectors in failover order.
        urls: Vec<String>,
        /// Several events per POST, one per line.
        #[serde(default)]
        batch: bool,
        /// PEM roots trusted besides the OS store.
        ca_file: Option<PathBuf>,
        /// PEM client certificate.
        client_cert: Option<PathBuf>,
        /// PEM client key.
        client_key: Option<PathBuf>,
        /// Bound on connecting and on each POST.
        timeout_seconds: Option<u64>,
    },
    /// `kind = "syslog"`: LEEF over `tcp://`, `tls://` or `udp://`.
    Syslog {
        /// The receiver.
        url: String,
        /// PEM roots trusted besides the OS store.
        ca_file: Option<PathBuf>,
        /// PEM client certificate.
        client_cert: Option<PathBuf>,
        /// PEM client key.
        client_key: Option<PathBuf>,
        /// Bound on connecting and on each write.
        timeout_seconds: Option<u64>,
    },
    /// `kind = "file"`: JSON lines appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
}

impl SiemEntry {
    /// Describes the sink in one line, such as `syslog tls://siem.corp:6514`.
    pub fn describe(&self) -> String {
        match self {
            SiemEntry::QradarHttp { urls, .. } => format!("qradar-http {}", urls.join(",")),
            SiemEntry::Syslog { url, .. } => format!("syslog {url}"),
            SiemEntry::File { path } => format!("file {}", path.display()),
        }
    }
}

/// One `[[lists]]` entry.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// A file path, or `builtin`.
    pub path: String,
    /// `csv`, `hosts`, `domains` or `ips`; detected when absent.
    pub format: Option<String>,
    /// Category for rows without one.
    pub category: Option<String>,
    /// `block` (default) or `allow`, for rows without one.
    pub action: Option<String>,
}

impl ListEntry {
    fn to_spec(&self, config_path: &Path) -> anyhow::Result<ListSpec> {
        let context = || {
            format!(
                "invalid [[lists]] entry {:?} in {}",
                self.path,
                config_path.display()
            )
        };
        let mut spec: ListSpec = self
            .path
            .parse()
            .map_err(|e: String| anyhow!(e))
            .with_context(context)?;
        let mut options = SourceOptions::default();
        if let Some(format) = &self.format {
            options.format = Some(
                format
                    .parse::<Format>()
                    .map_err(|e| anyhow!(e))
                    .with_context(context)?,
            );
        }
        options.category = self.category.clone();
        if let Some(action) = &self.action {
            options.action = action
                .parse::<Action>()
                .map_err(|e| anyhow!(e))
                .with_context(context)?;
        }
        spec.options = options;
        Ok(spec)
    }
}

/// Returns the default configuration file path.
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().join("config.toml"))
}

/// Returns the data directory (the flag's, else the file's, else the OS
/// default) after creating it.
///
/// # Errors
///
/// Fails when there is no home directory for the default or the directory
/// cannot be created.
pub fn data_dir(flag: Option<&Path>, file: &FileConfig) -> Result<PathBuf, crate::CliError> {
    let dir = data_dir_path(flag, file)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create data directory {}", dir.display()))
        .map_err(crate::CliError::Failed)?;
    Ok(dir)
}

/// Returns the data directory as [`data_dir`] does, without creating it.
pub fn data_dir_path(flag: Option<&Path>, file: &FileConfig) -> Result<PathBuf, crate::CliError> {
    match flag.or(file.data_dir.as_deref()) {
        Some(dir) => Ok(dir.to_owned()),
        None => default_data_dir().map_err(crate::CliError::Usage),
    }
}

/// Returns the default data directory.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    project_dirs()
        .map(|dirs| dirs.data_dir().to_owned())
        .ok_or_else(|| anyhow!("no home directory found for the data directory; pass --data-dir"))
}

fn project_dirs() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "webwarden")
}

/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads the configuration: the given file (which must exist), else the
/// default file if it exists, else defaults; then lays the administrator's
/// policy file over it.
///
/// # Errors
///
/// Fails when either file cannot be read or is not valid, naming the file
/// and the line of the mistake.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(path) => Some(path.to_owned()),
        None => default_config_path().filter(|path| path.exists()),
    };
    let mut table = toml::Table::new();
    if let Some(path) = &path {
        // Bounded and without blocking on a FIFO: root reads users' files
        // when the package is removed.
        let bytes = webwarden_system::file::read_regular_file(path, MAX_CONFIG_BYTES)
            .map_err(|err| anyhow!("{err}"))
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        let invalid = || format!("invalid config file {}", path.display());
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("not UTF-8 text"))
            .with_context(invalid)?;
        // Parsed as a configuration first, so a mistake names its line.
        parse(&text).with_context(invalid)?;
        table = toml::from_str(&text).with_context(invalid)?;
    }
    let policy = crate::policy_file::read(&crate::policy_file::policy_path())?;
    if let Some(policy) = &policy {
        crate::policy_file::merge(&mut table, &policy.table);
    }
    let mut config: FileConfig = toml::Value::Table(table).try_into().with_context(|| {
        let policy = policy.as_ref().map(|p| p.path.display().to_string());
        format!(
            "the policy file {} and the configuration do not combine",
            policy.unwrap_or_default()
        )
    })?;
    config.policy = policy;
    Ok((config, path))
}

/// Parses configuration text.
///
/// # Errors
///
/// Returns the TOML error, which names the line, column and field.
pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
    toml::from_str(text).map_err(|err: toml::de::Error| {
        let message = err.to_string();
        if message.contains("expected a sequence") {
            // `[siem]` where `[[siem]]` was meant: TOML's own message does
            // not say so.
            anyhow!("{message}\nhint: write each entry of `lists` and `siem` as [[lists]] or [[siem]], with double brackets")
        } else {
            anyhow::Error::new(err)
        }
    })
}

impl FileConfig {
    /// Converts the lists to `--list` specs.
    ///
    /// # Errors
    ///
    /// Fails on an invalid format, action or path in a `[[lists]]` entry.
    pub fn list_specs(&self, config_path: &Path) -> anyhow::Result<Vec<ListSpec>> {
        self.lists
            .iter()
            .map(|entry| entry.to_spec(config_path))
            .collect()
    }

    /// Parses the inspection mode.
    ///
    /// # Errors
    ///
    /// Fails on a value other than `all` or `blocked-only`.
    pub fn inspection_mode(&self) -> anyhow::Result<Option<InspectionMode>> {
        self.inspection
            .as_deref()
            .map(|mode| mode.parse().map_err(|e: String| anyhow!(e)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let config = parse(
            r#"
listen = "127.0.0.1:9000"
data_dir = "/var/lib/webwarden"
inspection = "blocked-only"
bypass = ["bank.example"]
contact = "Call the help desk."

[[lists]]
path = "builtin"

[[lists]]
path = "/etc/webwarden/allow.txt"
format = "domains"
category = "Company"
action = "allow"
"#,
        )
        .unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(
            config.inspection_mode().unwrap(),
            Some(InspectionMode::BlockedOnly)
        );
        let specs = config.list_specs(Path::new("config.toml")).unwrap();
        assert_eq!(specs[0], ListSpec::builtin());
        assert_eq!(specs[1].options.action, Action::Allow);
        assert_eq!(specs[1].options.format, Some(Format::Domains));
    }

    #[test]
    fn system_proxy_section_parses() {
        let config = parse(
            "[system_proxy]\nenable = true\npac_listen = \"127.0.0.1:9898\"\n\
             backends = [\"gnome\"]\n",
        )
        .unwrap();
        let section = config.system_proxy;
        assert!(section.enable);
        assert_eq!(section.pac_listen, Some("127.0.0.1:9898".parse().unwrap()));
        assert_eq!(section.backends, Some(vec!["gnome".to_owned()]));
        assert!(!parse("").unwrap().system_proxy.enable, "off by default");
    }

    #[test]
    fn single_bracket_table_gets_a_hint() {
        let err = parse("[siem]\nkind = \"file\"\npath = \"/x\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("[[siem]]"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn unknown_field_names_line() {
        let err = parse("listen = \"127.0.0.1:1\"\nlisten_port = 5\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("listen_port"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn bad_list_entry_names_entry_and_file() {
        let config = parse("[[lists]]\npath = \"x.txt\"\nformat = \"xml\"\n").unwrap();
        let err = config.list_specs(Path::new("/etc/w.toml")).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("\"x.txt\"") && text.contains("/etc/w.toml"),
            "{text}"
        );
        assert!(text.contains("invalid list format"), "{text}");
    }

    #[test]
    fn tray_defaults_allow_pause_and_quit() {
        let tray = parse("").unwrap().tray;
        assert!(tray.allow_pause);
        assert!(tray.allow_quit);
        assert!(!tray.force_notifications);
        let tray = parse("[tray]\nallow_pause = false\nforce_notifications = true\n")
            .unwrap()
            .tray;
        assert!(!tray.allow_pause);
        assert!(tray.allow_quit);
        assert!(tray.force_notifications);
    }

    #[test]
    fn request_access_link_scheme_checked() {
        for good in ["https://it.example/access", "mailto:it@example.com"] {
            let text = format!("[tray]\nrequest_access_url = \"{good}\"\n");
            parse(&text).unwrap().tray.validate().unwrap();
        }
        for (bad, says) in [
            ("javascript:alert(1)", "scheme \"javascript\""),
            ("it.example/access", "is not a URL"),
        ] {
            let text = format!("[tray]\nrequest_access_url = \"{bad}\"\n");
            let err = parse(&text).unwrap().tray.validate().unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(bad), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }
}
