//! SIEM sinks from the configuration file and flags, and `webwarden siem
//! test`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use webwarden_events::{
    EventSender, ExportConfig, Exporter, Identity, IdentityHandle, RetryPolicy, SinkConfig,
    SyslogTarget, SyslogTransport, TlsFiles, DEFAULT_TIMEOUT,
};

use crate::config::{self, FileConfig, SiemEntry};
use crate::{lists, CliError};

/// Events held in memory before the spool writer takes them.
const EVENT_QUEUE: usize = 100_000;

/// The sink flags shared by `webwarden run` and `webwarden siem test`.
#[derive(Debug, Args, Default)]
pub struct SinkArgs {
    /// A QRadar HTTP Receiver, `https://HOST:12469` (repeatable); several
    /// comma-separated URLs are collectors tried in order.
    #[arg(long = "siem-http", value_name = "URL[,URL...]")]
    http: Vec<String>,
    /// A syslog receiver for LEEF events (repeatable): `tls://HOST:6514`,
    /// `tcp://HOST:PORT` or `udp://HOST:PORT`.
    #[arg(long = "siem-syslog", value_name = "URL")]
    syslog: Vec<String>,
    /// PEM certificates that the TLS sinks given by flags trust besides the
    /// OS store.
    #[arg(long = "siem-ca", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate that the TLS sinks given by flags present,
    /// for receivers that require mutual TLS; needs --siem-client-key.
    #[arg(
        long = "siem-client-cert",
        value_name = "FILE",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// PEM private key of --siem-client-cert.
    #[arg(
        long = "siem-client-key",
        value_name = "FILE",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// JSON-lines file for events [default, when no other sink is set:
    /// DATA_DIR/events.jsonl].
    #[arg(long, value_name = "FILE")]
    events_file: Option<PathBuf>,
}

/// `webwarden siem ...`.
#[derive(Debug, Subcommand)]
pub enum SiemCommand {
    /// Send one test event to each configured sink and report the result.
    Test(TestArgs),
}

/// Arguments of `webwarden siem test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Configuration file; without it, the default file if it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the machine ID fallback [default: the OS data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    sinks: SinkArgs,
}

/// Collects the sinks: the configuration file's, then the flags'. Without
/// any, events go to `default_events_file`.
///
/// # Errors
///
/// Fails on a malformed URL, naming it and where it came from.
pub fn sink_configs(
    args: &SinkArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
    default_events_file: Option<PathBuf>,
) -> anyhow::Result<Vec<SinkConfig>> {
    let mut sinks = Vec::new();
    let origin = config_path.map_or_else(
        || "the configuration".to_owned(),
        |p| p.display().to_string(),
    );
    for (index, entry) in file.siem.iter().enumerate() {
        let sink = entry_config(entry)
            .with_context(|| format!("invalid [[siem]] entry {} in {origin}", index + 1))?;
        sinks.push(sink);
    }
    if let Some(path) = &file.events_file {
        sinks.push(SinkConfig::File { path: path.clone() });
    }
    let flag_tls = TlsFiles {
        ca_file: args.ca_file.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    for value in &args.http {
        sinks.push(
            SinkConfig::http_from_flag(value, flag_tls.clone())
                .map_err(|err| anyhow!("--siem-http: {err}"))?,
        );
    }
    for value in &args.syslog {
        sinks.push(
            SinkConfig::syslog_from_flag(value, flag_tls.clone())
                .map_err(|err| anyhow!("--siem-syslog: {err}"))?,
        );
    }
    if let Some(path) = &args.events_file {
        sinks.push(SinkConfig::File { path: path.clone() });
    }
    if sinks.is_empty() {
        if let Some(path) = default_events_file {
            sinks.push(SinkConfig::File { path });
        }
    }
    let mut names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(anyhow!(
            "the sink {} is configured twice; remove one, or events would be sent to it twice",
            pair[0]
        ));
    }
    Ok(sinks)
}

fn entry_config(entry: &SiemEntry) -> anyhow::Result<SinkConfig> {
    let timeout = |seconds: &Option<u64>| {
        match seconds {
        Some(0) => Err(anyhow!(
            "invalid timeout_seconds = 0: every attempt would time out at once; use at least 1 (the default is {})",
            DEFAULT_TIMEOUT.as_secs()
        )),
        Some(seconds) => Ok(Duration::from_secs(*seconds)),
        None => Ok(DEFAULT_TIMEOUT),
    }
    };
    Ok(match entry {
        SiemEntry::QradarHttp {
            urls,
            batch,
            ca_file,
            client_cert,
            client_key,
            timeout_seconds,
        } => {
            if urls.is_empty() {
                return Err(anyhow!("`urls` is empty; give at least one collector URL"));
            }
            SinkConfig::QradarHttp {
                urls: urls
                    .iter()
                    .map(|url| webwarden_events::parse_http_url(url).map_err(|e| anyhow!(e)))
                    .collect::<anyhow::Result<_>>()?,
                batch: *batch,
                tls: TlsFiles {
                    ca_file: ca_file.clone(),
                    client_cert: client_cert.clone(),
                    client_key: client_key.clone(),
                },
                timeout: timeout(timeout_seconds)?,
            }
        }
        SiemEntry::Syslog {
            url,
            ca_file,
            client_cert,
            client_key,
            timeout_seconds,
        } => {
            let target = SyslogTarget::parse(url).map_err(|e| anyhow!(e))?;
            let has_tls_files = ca_file.is_some() || client_cert.is_some() || client_key.is_some();
            if has_tls_files && target.transport != SyslogTransport::Tls {
                return Err(anyhow!(
                    "ca_file, client_cert and client_key apply only to tls:// URLs, and {url:?} is not one; use tls:// or remove them"
                ));
            }
            SinkConfig::Syslog {
                target,
                tls: TlsFiles {
                    ca_file: ca_file.clone(),
                    client_cert: client_cert.clone(),
                    client_key: client_key.clone(),
                },
                timeout: timeout(timeout_seconds)?,
            }
        }
        SiemEntry::File { path } => {
            if path.as_os_str().is_empty() {
                return Err(anyhow!("`path` is empty; give the events file's path"));
            }
            SinkConfig::File { path: path.clone() }
        }
    })
}

/// The smallest spool limit accepted from the configuration.
const MIN_SPOOL_BYTES: u64 = 1024 * 1024;

/// Builds the exporter settings for `webwarden run`.
///
/// # Errors
///
/// Fails on a `[spool]` value that cannot work, naming it and the fix.
pub fn export_config(
    file: &FileConfig,
    data_dir: &Path,
    sinks: Vec<SinkConfig>,
) -> anyhow::Result<ExportConfig> {
    let spool = &file.spool;
    let max_bytes = spool
        .max_bytes
        .unwrap_or(webwarden_events::spool::DEFAULT_MAX_BYTES);
    if max_bytes < MIN_SPOOL_BYTES {
        return Err(anyhow!(
            "invalid [spool] max_bytes = {max_bytes}: at least {MIN_SPOOL_BYTES} (1 MiB) is needed to hold a backlog; the default is {}",
            webwarden_events::spool::DEFAULT_MAX_BYTES
        ));
    }
    if spool.retry_initial_ms == Some(0) {
        return Err(anyhow!(
            "invalid [spool] retry_initial_ms = 0: retrying at once would flood a receiver that is down; use at least 1"
        ));
    }
    let defaults = RetryPolicy::default();
    let initial = spool
        .retry_initial_ms
        .map_or(defaults.initial, Duration::from_millis);
    let max = spool
        .retry_max_seconds
        .map_or(defaults.max, Duration::from_secs);
    if max < initial {
        return Err(anyhow!(
            "invalid [spool] retry_max_seconds = {}: it is shorter than the first retry delay of {initial:?}; raise it or lower retry_initial_ms",
            max.as_secs()
        ));
    }
    Ok(ExportConfig {
        spool_dir: data_dir.join("spool"),
        max_bytes,
        queue_capacity: EVENT_QUEUE,
        sinks,
        retry: RetryPolicy { initial, max },
    })
}

/// Checks the sinks and spool settings, opens the spool and starts the
/// exporter for `webwarden run`, logging each sink.
///
/// # Errors
///
/// Returns [`CliError::Usage`] naming the setting that cannot work.
pub fn start_export(
    args: &SinkArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
    data_dir: &Path,
) -> Result<(Exporter, EventSender, IdentityHandle), CliError> {
    let sinks = sink_configs(args, file, config_path, Some(data_dir.join("events.jsonl")))
        .map_err(CliError::Usage)?;
    let export = export_config(file, data_dir, sinks).map_err(|err| in_file(err, config_path))?;
    let identity = IdentityHandle::new(Identity::detect(env!("CARGO_PKG_VERSION"), data_dir));
    let (exporter, events) = Exporter::start(&export, identity.clone())
        .map_err(|err| CliError::Usage(anyhow::Error::new(err)))?;
    tracing::info!(
        path = %exporter.spool().dir().display(),
        bytes = exporter.spool().bytes(),
        "event spool open"
    );
    for status in exporter.status() {
        tracing::info!(sink = %status.name, pending = status.pending, "exporting events");
    }
    Ok((exporter, events, identity))
}

/// Logs the identity that events carry.
pub fn log_identity(identity: &IdentityHandle) {
    let stamp = identity.get();
    tracing::info!(
        host = %stamp.host_name,
        machine_id = %stamp.machine_id,
        user = %stamp.user_name,
        list_version = %stamp.list_version,
        "events carry this identity"
    );
}

/// Adds the configuration file's name to an error about its settings.
fn in_file(err: anyhow::Error, config_path: Option<&Path>) -> CliError {
    let origin = config_path.map_or_else(
        || "the configuration".to_owned(),
        |path| format!("configuration file {}", path.display()),
    );
    CliError::Usage(err.context(format!("invalid {origin}")))
}

/// Runs `webwarden siem ...`.
pub fn run(command: &SiemCommand) -> Result<ExitCode, CliError> {
    let SiemCommand::Test(args) = command;
    let (file, config_path) = config::load(args.config.as_deref()).map_err(CliError::Usage)?;
    let sinks =
        sink_configs(&args.sinks, &file, config_path.as_deref(), None).map_err(CliError::Usage)?;
    if sinks.is_empty() {
        return Err(CliError::Usage(anyhow!(
            "no SIEM sink is configured; add [[siem]] entries to the configuration file or pass --siem-http, --siem-syslog or --events-file"
        )));
    }
    let data_dir = config::data_dir(args.data_dir.as_deref(), &file)?;
    // The same checks as `webwarden run`, so a test that passes means the
    // agent starts.
    export_config(&file, &data_dir, Vec::new())
        .map_err(|err| in_file(err, config_path.as_deref()))?;
    for sink in &sinks {
        webwarden_events::check_sink(sink)
            .map_err(|err| CliError::Usage(anyhow::Error::new(err)))?;
    }
    let specs = file
        .list_specs(&config_path.clone().unwrap_or_default())
        .map_err(CliError::Usage)?;
    let mut identity = Identity::detect(env!("CARGO_PKG_VERSION"), &data_dir);
    identity.list_version = lists::version(&specs).map_err(CliError::Failed)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = 0;
    for sink in &sinks {
        match runtime.block_on(webwarden_events::test_sink(sink, &identity)) {
            Ok(report) => println!("ok      {}: {report}", sink.name()),
            Err(error) => {
                failed += 1;
                println!("FAILED  {}: {error}", sink.name());
            }
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} of {} sinks failed", sinks.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        config::parse(text).unwrap()
    }

    #[test]
    fn config_and_flags_add_up_in_order() {
        let config = file(
            r#"
[[siem]]
kind = "qradar-http"
urls = ["https://ec1.example:12469", "https://ec2.example:12469"]
batch = true

[[siem]]
kind = "syslog"
url = "tls://qradar.example"
timeout_seconds = 3
"#,
        );
        let args = SinkArgs {
            syslog: vec!["udp://127.0.0.1:5514".to_owned()],
            ..SinkArgs::default()
        };
        let sinks = sink_configs(&args, &config, None, Some("/d/events.jsonl".into())).unwrap();
        let names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
        assert_eq!(
            names,
            [
                "qradar-http https://ec1.example:12469/,https://ec2.example:12469/",
                "syslog tls://qradar.example:6514",
                "syslog udp://127.0.0.1:5514",
            ]
        );
        assert!(matches!(
            &sinks[0],
            SinkConfig::QradarHttp { batch: true, .. }
        ));
        assert!(
            matches!(&sinks[1], SinkConfig::Syslog { timeout, .. } if *timeout == Duration::from_secs(3))
        );
    }

    #[test]
    fn without_sinks_events_go_to_the_default_file() {
        let sinks = sink_configs(
            &SinkArgs::default(),
            &FileConfig::default(),
            None,
            Some("/d/events.jsonl".into()),
        )
        .unwrap();
        assert_eq!(
            sinks,
            [SinkConfig::File {
                path: "/d/events.jsonl".into()
            }]
        );
    }

    #[test]
    fn bad_entries_name_the_entry_file_and_fix() {
        let err = config::parse("[[siem]]\nkind = \"qradar\"\nurls = []\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("qradar-http") && text.contains("line"),
            "{text}"
        );

        let config = file("[[siem]]\nkind = \"syslog\"\nurl = \"http://x:514\"\n");
        let err = sink_configs(
            &SinkArgs::default(),
            &config,
            Some(Path::new("/etc/w.toml")),
            None,
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("[[siem]] entry 1 in /etc/w.toml"), "{text}");
        assert!(
            text.contains("\"http://x:514\"") && text.contains("tls://HOST:PORT"),
            "{text}"
        );

        let err =
            config::parse("[[siem]]\nkind = \"file\"\npath = \"/x\"\nurl = \"y\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `url`"),
            "{err:#}"
        );
    }

    #[test]
    fn settings_that_cannot_work_are_rejected() {
        let cases = [
            (
                "kind = \"syslog\"\nurl = \"tcp://h:514\"\ntimeout_seconds = 0",
                "timeout_seconds = 0",
            ),
            (
                "kind = \"syslog\"\nurl = \"udp://h:514\"\nca_file = \"/ca.pem\"",
                "only to tls://",
            ),
            ("kind = \"syslog\"\nurl = \"tcp://h:0\"", "port 0"),
            (
                "kind = \"syslog\"\nurl = \"tls://u:p@h:6514\"",
                "only a host and port",
            ),
            (
                "kind = \"qradar-http\"\nurls = [\"https://admin:secret@h:12469\"]",
                "credentials",
            ),
            ("kind = \"file\"\npath = \"\"", "`path` is empty"),
        ];
        for (entry, named) in cases {
            let config = file(&format!("[[siem]]\n{entry}\n"));
            let err = sink_configs(&SinkArgs::default(), &config, None, None).unwrap_err();
            assert!(format!("{err:#}").contains(named), "{entry}: {err:#}");
        }
    }

    #[test]
    fn bad_flags_name_the_flag_and_value() {
        let args = SinkArgs {
            http: vec!["ftp://collector:21".to_owned()],
            ..SinkArgs::default()
        };
        let err = sink_configs(&args, &FileConfig::default(), None, None).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("--siem-http") && text.contains("ftp://collector:21"),
            "{text}"
        );
    }

    #[test]
    fn spool_values_that_cannot_work_are_rejected() {
        let cases = [
            ("[spool]\nmax_bytes = 1000\n", "max_bytes = 1000"),
            ("[spool]\nretry_initial_ms = 0\n", "retry_initial_ms = 0"),
            (
                "[spool]\nretry_initial_ms = 5000\nretry_max_seconds = 1\n",
                "retry_max_seconds = 1",
            ),
        ];
        for (text, named) in cases {
            let err = export_config(&file(text), Path::new("/d"), Vec::new()).unwrap_err();
            assert!(err.to_string().contains(named), "{text}: {err}");
        }
        let config = export_config(
            &file("[spool]\nretry_initial_ms = 100\n"),
            Path::new("/d"),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(config.retry.initial, Duration::from_millis(100));
        assert_eq!(config.spool_dir, Path::new("/d/spool"));
    }

    #[test]
    fn sink_configured_twice_is_rejected() {
        let args = SinkArgs {
            syslog: vec![
                "tcp://127.0.0.1:514".to_owned(),
                "tcp://127.0.0.1".to_owned(),
            ],
            ..SinkArgs::default()
        };
        let err = sink_configs(&args, &FileConfig::default(), None, None).unwrap_err();
        assert!(err.to_string().contains("configured twice"), "{err}");
    }
}
