//! The syslog sink: LEEF messages over TCP or TLS with octet-counting
//! framing (`LENGTH SP MESSAGE`, RFC 6587 and RFC 5425), or one per UDP
//! datagram.
//!
//! A syslog receiver sends nothing back, so a TCP write succeeds even when the
//! receiver has already closed the connection. Before each batch the sink
//! checks whether the receiver closed its side and reconnects if so. What a
//! receiver drops after that point is beyond what syslog can report.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::FutureExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::http::error_chain;
use super::{Failure, SinkError, SyslogTarget, SyslogTransport};
use crate::spool::Record;
use crate::{leef, TlsFiles};

/// The largest UDP message; longer ones are cut (RFC 5426 allows that).
const MAX_DATAGRAM: usize = 65_000;

pub(crate) struct SyslogSink {
    target: SyslogTarget,
    tls: Option<TlsConnector>,
    timeout: Duration,
    connection: Option<Connection>,
}

#[derive(Debug)]
enum Connection {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("target", &self.target)
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

impl SyslogSink {
    pub(crate) fn new(
        target: SyslogTarget,
        tls: &TlsFiles,
        timeout: Duration,
    ) -> Result<SyslogSink, SinkError> {
        let tls = match target.transport {
            SyslogTransport::Tls => Some(TlsConnector::from(tls.client_config(&[])?)),
            SyslogTransport::Tcp | SyslogTransport::Udp => None,
        };
        Ok(SyslogSink {
            target,
            tls,
            timeout,
            connection: None,
        })
    }

    pub(crate) async fn deliver(&mut self, records: &[Record]) -> Result<String, Failure> {
        if self
            .connection
            .as_mut()
            .is_some_and(Connection::closed_by_peer)
        {
            tracing::info!(target = %self.target, "syslog receiver closed the connection; reconnecting");
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let connection = tokio::time::timeout(self.timeout, self.connect())
                    .await
                    .map_err(|_| {
                        Failure::new(
                            0,
                            format!(
                                "connecting to {} timed out after {:?}",
                                self.target, self.timeout
                            ),
                        )
                    })?
                    .map_err(|error| Failure::new(0, error))?;
                self.connection.insert(connection)
            }
        };
        let local = connection.local_ip();
        let messages = records.iter().filter_map(|record| {
            leef::format_message(&record.json, local)
                .map_err(|error| {
                    tracing::error!(
                        seq = record.seq,
                        error,
                        "skipping a spooled event that cannot be formatted"
                    )
                })
                .ok()
        });
        let result = match connection {
            Connection::Udp(socket) => send_datagrams(socket, messages).await,
            Connection::Tcp(stream) => write_frames(stream, messages, self.timeout).await,
            Connection::Tls(stream) => write_frames(stream.as_mut(), messages, self.timeout).await,
        };
        match result {
            Ok(()) => Ok(format!(
                "sent to {}; syslog gives no receipt, so look for the event at the receiver",
                self.target
            )),
            Err(failure) => {
                self.connection = None;
                Err(Failure::new(
                    failure.delivered,
                    format!("sending to {} failed: {}", self.target, failure.error),
                ))
            }
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let host = self.target.host.as_str();
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, self.target.port))
            .await
            .map_err(|err| format!("failed to resolve {host}: {err}"))?
            .collect();
        let mut last_error = format!("{host} has no address");
        for address in addresses {
            match self.connect_to(address).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    async fn connect_to(&self, address: SocketAddr) -> Result<Connection, String> {
        if self.target.transport == SyslogTransport::Udp {
            let local: SocketAddr = if address.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(|err| format!("failed to open a UDP socket: {err}"))?;
            socket
                .connect(address)
                .await
                .map_err(|err| format!("UDP connect to {address} failed: {err}"))?;
            return Ok(Connection::Udp(socket));
        }
        let stream = TcpStream::connect(address)
            .await
            .map_err(|err| format!("connecting to {address} failed: {err}"))?;
        let _ = stream.set_nodelay(true);
        let Some(connector) = &self.tls else {
            return Ok(Connection::Tcp(stream));
        };
        let name = ServerName::try_from(self.target.host.clone())
            .map_err(|err| format!("invalid TLS server name {:?}: {err}", self.target.host))?;
        let stream = connector.connect(name, stream).await.map_err(|err| {
            let cause = error_chain(&err);
            format!(
                "TLS handshake with {address} failed: {cause}{}",
                super::tls_hint(&cause)
            )
        })?;
        Ok(Connection::Tls(Box::new(stream)))
    }
}

impl Connection {
    fn local_ip(&self) -> Option<IpAddr> {
        let address = match self {
            Connection::Tcp(stream) => stream.local_addr(),
            Connection::Tls(stream) => stream.get_ref().0.local_addr(),
            Connection::Udp(socket) => socket.local_addr(),
        };
        address.ok().map(|address| address.ip())
    }

    /// Returns true when the receiver has closed its side. Receivers send
    /// nothing, so readable data is ignored.
    fn closed_by_peer(&mut self) -> bool {
        let mut scratch = [0u8; 256];
        match self {
            Connection::Tcp(stream) => match stream.try_read(&mut scratch) {
                Ok(0) => true,
                Ok(_) => false,
                Err(err) => err.kind() != ErrorKind::WouldBlock,
            },
            Connection::Tls(stream) => {
                matches!(
                    stream.read(&mut scratch).now_or_never(),
                    Some(Ok(0) | Err(_))
                )
            }
            Connection::Udp(_) => false,
        }
    }
}

async fn write_frames<S>(
    stream: &mut S,
    messages: impl Iterator<Item = String>,
    timeout: Duration,
) -> Result<(), Failure>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let mut frames = Vec::new();
    for message in messages {
        frames.extend_from_slice(message.len().to_string().as_bytes());
        frames.push(b' ');
        frames.extend_from_slice(message.as_bytes());
    }
    let write = async {
        stream.write_all(&frames).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Failure::new(0, err.to_string())),
        Err(_) => Err(Failure::new(
            0,
            format!("write timed out after {timeout:?}"),
        )),
    }
}

async fn send_datagrams(
    socket: &UdpSocket,
    messages: impl Iterator<Item = String>,
) -> Result<(), Failure> {
    for (index, message) in messages.enumerate() {
        let mut bytes = message.into_bytes();
        bytes.truncate(MAX_DATAGRAM);
        socket
            .send(&bytes)
            .await
            .map_err(|err| Failure::new(index, err.to_string()))?;
    }
    Ok(())
}
