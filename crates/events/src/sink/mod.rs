//! The SIEM sinks: the QRadar HTTP Receiver, syslog with LEEF over TCP,
//! TLS or UDP, and a JSON-lines file. Each delivers spooled records and
//! reports how many it delivered when it fails.

mod file;
mod http;
mod syslog;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::spool::Record;
use crate::TlsFiles;

pub(crate) use file::FileSink;
pub(crate) use http::HttpSink;
pub use http::{error_chain, redirect_location};
pub(crate) use syslog::SyslogSink;

/// The QRadar HTTP Receiver's usual port.
pub const QRADAR_HTTP_PORT: u16 = 12469;

/// The TLS syslog port (RFC 5425).
pub const SYSLOG_TLS_PORT: u16 = 6514;

/// The plain syslog port, for TCP and UDP.
pub const SYSLOG_PORT: u16 = 514;

/// How long one connection attempt or delivery may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The reason a sink could not be set up or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink's settings are wrong: a bad URL, a missing file.
    #[error("{0}")]
    Config(String),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] crate::SpoolError),
    /// A background task or thread could not start.
    #[error("failed to start the event exporter: {0}")]
    Start(#[from] std::io::Error),
}

/// One sink's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// JSON events POSTed to a QRadar HTTP Receiver.
    QradarHttp {
        /// Collectors, tried in order until one accepts.
        urls: Vec<Url>,
        /// Send many events per POST, one JSON object per line. The log
        /// source must then split on newlines (its Message Pattern).
        batch: bool,
        /// TLS trust and client certificate.
        tls: TlsFiles,
        /// Bound on connecting and on each POST.
        timeout: Duration,
    },
    /// Syslog messages with a LEEF payload.
    Syslog {
        /// The receiver and transport.
        target: SyslogTarget,
        /// TLS trust and client certificate, for `tls://`.
        tls: TlsFiles,
        /// Bound on connecting and on each write.
        timeout: Duration,
    },
    /// JSON lines appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
}

/// The transport of syslog messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    /// TCP with octet-counting framing (RFC 6587).
    Tcp,
    /// TLS with octet-counting framing (RFC 5425).
    Tls,
    /// One message per datagram; lost messages are not noticed.
    Udp,
}

/// A syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// The transport.
    pub transport: SyslogTransport,
    /// The receiver's host name or address.
    pub host: String,
    /// The receiver's port.
    pub port: u16,
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Tls => "tls",
            SyslogTransport::Udp => "udp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl SyslogTarget {
    /// Parses `tcp://HOST[:PORT]`, `tls://HOST[:PORT]` or `udp://HOST[:PORT]`.
    ///
    /// # Errors
    ///
    /// Returns a message naming the value and the accepted forms.
    pub fn parse(value: &str) -> Result<SyslogTarget, String> {
        let hint = "expected tcp://HOST:PORT, tls://HOST:PORT or udp://HOST:PORT";
        let url = Url::parse(value)
            .map_err(|err| format!("invalid syslog URL {value:?}: {err}; {hint}"))?;
        let (transport, default_port) = match url.scheme() {
            "tcp" => (SyslogTransport::Tcp, SYSLOG_PORT),
            "tls" => (SyslogTransport::Tls, SYSLOG_TLS_PORT),
            "udp" => (SyslogTransport::Udp, SYSLOG_PORT),
            other => {
                return Err(format!(
                    "invalid syslog URL {value:?}: unknown scheme {other:?}; {hint}"
                ))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(format!("invalid syslog URL {value:?}: no host; {hint}")),
        };
        if !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "invalid syslog URL {value:?}: only a host and port are allowed; {hint}"
            ));
        }
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(format!("invalid syslog URL {value:?}: port 0; {hint}"));
        }
        Ok(SyslogTarget {
            transport,
            host,
            port,
        })
    }
}

impl SinkConfig {
    /// Builds the settings of `--siem-http URL[,URL...]`.
    ///
    /// # Errors
    ///
    /// Returns a message naming a URL that is not `http://` or `https://`.
    pub fn http_from_flag(value: &str, tls: TlsFiles) -> Result<SinkConfig, String> {
        let urls = value
            .split(',')
            .map(|url| parse_http_url(url.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SinkConfig::QradarHttp {
            urls,
            batch: false,
            tls,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Builds the settings of `--siem-syslog URL`.
    ///
    /// # Errors
    ///
    /// Returns the message of [`SyslogTarget::parse`].
    pub fn syslog_from_flag(value: &str, tls: TlsFiles) -> Result<SinkConfig, String> {
        Ok(SinkConfig::Syslog {
            target: SyslogTarget::parse(value)?,
            tls,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Returns a stable name. It keys the sink's saved spool position, and
    /// logs and status show it.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::QradarHttp { urls, .. } => {
                let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
                format!("qradar-http {}", urls.join(","))
            }
            SinkConfig::Syslog { target, .. } => format!("syslog {target}"),
            SinkConfig::File { path } => format!("file {}", path.display()),
        }
    }
}

/// Parses one collector URL.
///
/// # Errors
///
/// Returns a message naming the value when it is not `http(s)://HOST[:PORT]`.
pub fn parse_http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|err| {
        format!("invalid QRadar HTTP Receiver URL {value:?}: {err}; expected https://HOST:{QRADAR_HTTP_PORT}")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "invalid QRadar HTTP Receiver URL {value:?}: expected https://HOST:{QRADAR_HTTP_PORT} or http://HOST:PORT"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid QRadar HTTP Receiver URL {value:?}: credentials in the URL would be logged and are ignored by QRadar, which authenticates senders by client certificate; remove them and set client_cert and client_key"
        ));
    }
    if url.fragment().is_some() || url.port() == Some(0) {
        return Err(format!(
            "invalid QRadar HTTP Receiver URL {value:?}: expected https://HOST:{QRADAR_HTTP_PORT} without a fragment or port 0"
        ));
    }
    Ok(url)
}

/// Returns advice for TLS failures whose library wording names no fix, or
/// an empty string.
pub(crate) fn tls_hint(error: &str) -> &'static str {
    if error.contains("UnknownIssuer") || error.contains("unknown issuer") {
        " (the receiver's certificate is not signed by a trusted CA; add its CA with ca_file or --siem-ca)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        " (the receiver's certificate does not name this host; connect by a name the certificate lists)"
    } else if error.contains("InvalidContentType") || error.contains("corrupt message") {
        " (the receiver does not speak TLS; use http:// or tcp:// if it is a plain listener)"
    } else if error.contains("Expired") {
        " (the receiver's certificate has expired or the clock is wrong)"
    } else {
        ""
    }
}

/// A failed delivery: how many records (from the start) got through, and
/// why the rest did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Records delivered before the failure.
    pub delivered: usize,
    /// The cause, for logs and `webwarden siem test`.
    pub error: String,
}

impl Failure {
    pub(crate) fn new(delivered: usize, error: impl Into<String>) -> Failure {
        Failure {
            delivered,
            error: error.into(),
        }
    }
}

/// A ready sink.
#[derive(Debug)]
pub(crate) enum Sink {
    Http(HttpSink),
    Syslog(SyslogSink),
    File(FileSink),
}

impl Sink {
    /// Builds the sink; connections are made at the first delivery.
    pub(crate) fn new(config: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(match config {
            SinkConfig::QradarHttp {
                urls,
                batch,
                tls,
                timeout,
            } => Sink::Http(HttpSink::new(urls.clone(), *batch, tls, *timeout)?),
            SinkConfig::Syslog {
                target,
                tls,
                timeout,
            } => Sink::Syslog(SyslogSink::new(target.clone(), tls, *timeout)?),
            SinkConfig::File { path } => Sink::File(FileSink::new(path.clone())),
        })
    }

    /// Returns the maximum records read for one delivery.
    pub(crate) fn batch_limit(&self) -> usize {
        match self {
            Sink::Http(sink) => sink.batch_limit(),
            Sink::Syslog(_) | Sink::File(_) => 1000,
        }
    }

    /// Delivers the records in order.
    pub(crate) async fn deliver(&mut self, records: &[Record]) -> Result<String, Failure> {
        match self {
            Sink::Http(sink) => sink.deliver(records).await,
            Sink::Syslog(sink) => sink.deliver(records).await,
            Sink::File(sink) => sink.deliver(records).await,
        }
    }
}
