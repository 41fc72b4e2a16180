//! A real rsyslog (Debian's `rsyslogd`) as the syslog receiver of the
//! end-to-end tests, and [`TestTlsFiles`], the test CA and certificates that
//! both SIEM receivers serve.
//!
//! Each [`Rsyslog`] is a foreground `rsyslogd` child with its own
//! configuration and work directory. It listens on 127.0.0.1 only, on ports
//! that the OS picks: plain TCP, TLS and UDP. It appends every received
//! message to a file, one line per message, exactly as it arrived after the
//! framing was removed, and also to a file per listener. It needs the Debian
//! packages `rsyslog` and
//! `rsyslog-openssl` (the `ossl` TLS driver); a test calls
//! [`rsyslogd_available`] first.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{crypto_provider, ChildGuard};

/// When set, a missing `rsyslogd` fails the test instead of skipping it.
pub const REQUIRE_RSYSLOG_VAR: &str = "WEBWARDEN_REQUIRE_RSYSLOG";

/// Where Debian installs `rsyslogd`. `/usr/sbin` is often missing from the
/// `PATH` of non-root users, so it is tried before the `PATH`.
const RSYSLOGD_PATHS: [&str; 2] = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"];

/// The bound on rsyslogd's startup, until all three listeners are bound.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The pause between two polls of a file that rsyslogd writes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Returns the path of `rsyslogd`, or `None` when it is not installed.
pub fn rsyslogd_path() -> Option<PathBuf> {
    let installed = RSYSLOGD_PATHS.iter().map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("rsyslogd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    installed.chain(on_path).find(|path| path.is_file())
}

/// Returns whether `rsyslogd` is installed. When it is missing, this panics
/// if [`REQUIRE_RSYSLOG_VAR`] is set, and otherwise prints why the calling
/// test (`test_name`) skips.
pub fn rsyslogd_available(test_name: &str) -> bool {
    if rsyslogd_path().is_some() {
        return true;
    }
    if std::env::var_os(REQUIRE_RSYSLOG_VAR).is_some() {
        panic!(
            "rsyslogd is not installed but {REQUIRE_RSYSLOG_VAR} is set; install it with \
             `apt-get install -y rsyslog rsyslog-openssl`"
        );
    }
    // libtest captures `println!` and `eprintln!` of passing tests, but not
    // direct writes to the stderr handle, so the skip shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test_name}: rsyslogd is not installed (apt-get install -y rsyslog \
         rsyslog-openssl); set {REQUIRE_RSYSLOG_VAR} to make this a failure"
    );
    false
}

// ---------------------------------------------------------------------------
// Test PKI for the SIEM receivers
// ---------------------------------------------------------------------------

/// A test CA, a server certificate for `127.0.0.1` and `localhost`, and a
/// client certificate, all as PEM files, for the SIEM receivers and for
/// webwarden's `ca_file`, `client_cert` and `client_key` settings. The CA
/// signs both leaves, so it is also the CA that a receiver requiring client
/// certificates trusts.
pub struct TestTlsFiles {
    /// The CA certificate in PEM form.
    pub ca_pem: String,
    /// The CA certificate file (`siem-ca.pem`).
    pub ca_path: PathBuf,
    /// The server certificate file (`siem-server.pem`).
    pub server_cert_path: PathBuf,
    /// The server's PKCS #8 private key file (`siem-server.key`).
    pub server_key_path: PathBuf,
    /// The client certificate file (`siem-client.pem`).
    pub client_cert_path: PathBuf,
    /// The client's PKCS #8 private key file (`siem-client.key`).
    pub client_key_path: PathBuf,
    server: Leaf,
    client: Leaf,
}

/// A certificate signed by the test CA, with its key.
struct Leaf {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: PrivatePkcs8KeyDer<'static>,
    key_pem: String,
}

impl TestTlsFiles {
    /// Creates the CA and both leaves and writes them to `dir`.
    pub fn new(dir: &Path) -> TestTlsFiles {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webwarden test SIEM CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server = sign_leaf(
            &issuer,
            "webwarden test SIEM receiver",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = sign_leaf(
            &issuer,
            "webwarden test SIEM client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let files = TestTlsFiles {
            ca_pem: ca_cert.pem(),
            ca_path: dir.join("siem-ca.pem"),
            server_cert_path: dir.join("siem-server.pem"),
            server_key_path: dir.join("siem-server.key"),
            client_cert_path: dir.join("siem-client.pem"),
            client_key_path: dir.join("siem-client.key"),
            server,
            client,
        };
        write_file(&files.ca_path, &files.ca_pem);
        write_file(&files.server_cert_path, &files.server.cert_pem);
        write_file(&files.server_key_path, &files.server.key_pem);
        write_file(&files.client_cert_path, &files.client.cert_pem);
        write_file(&files.client_key_path, &files.client.key_pem);
        files
    }

    /// Builds a rustls server config with the server certificate and the
    /// given ALPN protocols. With `require_client_cert`, the handshake fails
    /// unless the client presents a certificate signed by the test CA.
    pub fn server_config(&self, require_client_cert: bool, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_cert {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(self.roots(), crypto_provider())
                    .build()
                    .expect("client certificate verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::from(self.server.key.clone_key());
        let mut config = builder
            .with_single_cert(vec![self.server.cert.clone()], key)
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Builds a rustls client config that trusts only the test CA and, with
    /// `with_client_cert`, presents the client certificate.
    pub fn client_config(&self, with_client_cert: bool) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(self.roots());
        let config = if with_client_cert {
            let key = PrivateKeyDer::from(self.client.key.clone_key());
            builder
                .with_client_auth_cert(vec![self.client.cert.clone()], key)
                .expect("client certificate")
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// Returns the client certificate followed by its key, in PEM form, as
    /// `reqwest::Identity::from_pem` expects them.
    pub fn client_identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.client.cert_pem, self.client.key_pem).into_bytes()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("PEM certificate");
        roots.add(ca).expect("add the test CA");
        Arc::new(roots)
    }
}

fn sign_leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Leaf {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    Leaf {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        key_pem: key.serialize_pem(),
    }
}

fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|err| panic!("failed to write {}: {err}", path.display()));
}

// ---------------------------------------------------------------------------
// The rsyslogd child process
// ---------------------------------------------------------------------------

/// One of the three listeners of an [`Rsyslog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// UDP.
    Udp,
}

impl Listener {
    /// Returns the name of the listener's rsyslog input and messages file.
    fn input_name(self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::Tls => "tls",
            Listener::Udp => "udp",
        }
    }
}

/// A running `rsyslogd` that stores every message it receives. It is killed
/// by its PID when dropped, before its directory is removed.
pub struct Rsyslog {
    process: ChildGuard,
    /// The plain TCP listener's port on 127.0.0.1. It expects octet-counted
    /// framing (RFC 6587) but also accepts LF-terminated messages, so the
    /// stored lines do not show which framing a sender used.
    pub tcp_port: u16,
    /// The TLS listener's port on 127.0.0.1: the same framing inside TLS,
    /// with the server certificate of [`TestTlsFiles`] and no client
    /// authentication.
    pub tls_port: u16,
    /// The UDP listener's port on 127.0.0.1: one message per datagram.
    pub udp_port: u16,
    files: RsyslogFiles,
    /// The directory of the configuration, the work directory and the output files.
    dir: TempDir,
}

/// The files of one rsyslogd instance.
struct RsyslogFiles {
    config: PathBuf,
    pid: PathBuf,
    /// Every received message, one per line.
    messages: PathBuf,
    dir: PathBuf,
    /// rsyslogd's own messages, such as TLS handshake errors.
    internal_log: PathBuf,
    /// rsyslogd's stdout and stderr, where startup errors land.
    output: PathBuf,
    tcp_port: PathBuf,
    tls_port: PathBuf,
    work: PathBuf,
}

impl RsyslogFiles {
    fn new(dir: &Path) -> RsyslogFiles {
        RsyslogFiles {
            config: dir.join("rsyslog.conf"),
            pid: dir.join("rsyslogd.pid"),
            messages: dir.join("messages.log"),
            dir: dir.to_owned(),
            internal_log: dir.join("rsyslogd-internal.log"),
            output: dir.join("rsyslogd-output.log"),
            tcp_port: dir.join("tcp.port"),
            tls_port: dir.join("tls.port"),
            work: dir.join("work"),
        }
    }

    /// Returns the file with the messages of one listener.
    fn listener_messages(&self, listener: Listener) -> PathBuf {
        self.dir
            .join(format!("messages-{}.log", listener.input_name()))
    }
}

impl Rsyslog {
    /// Starts rsyslogd in a new directory under `dir` and waits until its
    /// three listeners are bound. Panics with rsyslogd's output when it
    /// exits or is not ready within 15 seconds.
    pub fn start(dir: &Path, tls: &TestTlsFiles) -> Rsyslog {
        let program = rsyslogd_path()
            .expect("rsyslogd is not installed; call rsyslogd_available() before start()");
        let dir = tempfile::Builder::new()
            .prefix("rsyslog-")
            .tempdir_in(dir)
            .expect("rsyslog directory");
        let files = RsyslogFiles::new(dir.path());
        std::fs::create_dir(&files.work).expect("rsyslog work directory");
        write_file(&files.config, &rsyslog_config(&files, tls));

        let output = File::create(&files.output).expect("rsyslogd output file");
        let child = Command::new(&program)
            .arg("-n")
            .arg("-f")
            .arg(&files.config)
            .arg("-i")
            .arg(&files.pid)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the output file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|err| panic!("failed to start {}: {err}", program.display()));

        let mut rsyslog = Rsyslog {
            process: ChildGuard::new(child),
            tcp_port: 0,
            tls_port: 0,
            udp_port: 0,
            files,
            dir,
        };
        rsyslog.wait_until_ready();
        rsyslog
    }

    /// Returns the `--siem-syslog` URL of the plain TCP listener.
    pub fn tcp_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.tcp_port)
    }

    /// Returns the `--siem-syslog` URL of the TLS listener.
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.tls_port)
    }

    /// Returns the `--siem-syslog` URL of the UDP listener.
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.udp_port)
    }

    /// Returns the process id of rsyslogd.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Returns the directory with rsyslogd's configuration and output files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads every message received so far on all listeners, in arrival
    /// order, as bytes. A message that contains a LF spans several lines.
    pub fn raw_lines(&self) -> Vec<Vec<u8>> {
        read_lines(&self.files.messages)
    }

    /// Reads every message received so far on all listeners, in arrival
    /// order. Panics when a message is not valid UTF-8.
    pub fn lines(&self) -> Vec<String> {
        utf8_lines(read_lines(&self.files.messages))
    }

    /// Reads every message received so far on `listener`, in arrival order.
    /// Panics when a message is not valid UTF-8.
    pub fn listener_lines(&self, listener: Listener) -> Vec<String> {
        utf8_lines(read_lines(&self.files.listener_messages(listener)))
    }

    /// Waits until at least `count` messages arrived on all listeners
    /// together and returns all of them. Panics with the messages so far and
    /// rsyslogd's log after `timeout`.
    pub async fn wait_for_lines(&self, count: usize, timeout: Duration) -> Vec<String> {
        self.wait_for_file_lines(&self.files.messages, count, timeout)
            .await
    }

    /// Waits until at least `count` messages arrived on `listener` and
    /// returns them. Panics with the messages so far and rsyslogd's log after
    /// `timeout`.
    pub async fn wait_for_listener_lines(
        &self,
        listener: Listener,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        self.wait_for_file_lines(&self.files.listener_messages(listener), count, timeout)
            .await
    }

    /// Returns rsyslogd's output and its own log messages, for failure messages.
    pub fn log(&self) -> String {
        let output = std::fs::read_to_string(&self.files.output).unwrap_or_default();
        let internal = std::fs::read_to_string(&self.files.internal_log).unwrap_or_default();
        format!("rsyslogd output:\n{output}\nrsyslogd log:\n{internal}")
    }

    async fn wait_for_file_lines(
        &self,
        path: &Path,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = utf8_lines(read_lines(path));
            if lines.len() >= count {
                return lines;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} has {} of {count} messages after {timeout:?}; messages:\n{lines:#?}\n{}",
                    path.display(),
                    lines.len(),
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls until both TCP port files name a listening socket of rsyslogd,
    /// rsyslogd has bound its UDP socket, and the plain TCP port accepts a
    /// connection.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.process.wait_timeout(Duration::ZERO) {
                panic!(
                    "rsyslogd exited during startup with {status}; config {}:\n{}\n{}",
                    self.files.config.display(),
                    std::fs::read_to_string(&self.files.config).unwrap_or_default(),
                    self.log()
                );
            }
            if let Some(ports) = self.bound_ports() {
                (self.tcp_port, self.tls_port, self.udp_port) = ports;
                let tcp = SocketAddr::from((Ipv4Addr::LOCALHOST, self.tcp_port));
                if std::net::TcpStream::connect_timeout(&tcp, Duration::from_secs(1)).is_ok() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "rsyslogd did not bind its TCP, TLS and UDP listeners within \
                     {STARTUP_TIMEOUT:?} (the TLS listener needs the rsyslog-openssl \
                     package); {}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Returns the TCP, TLS and UDP ports once rsyslogd has bound all three.
    /// The port files alone could be read half-written, so each TCP port must
    /// also be a listening socket that rsyslogd owns.
    fn bound_ports(&self) -> Option<(u16, u16, u16)> {
        let sockets = OwnedSockets::of_process(self.pid())?;
        let tcp_port = read_port_file(&self.files.tcp_port)?;
        let tls_port = read_port_file(&self.files.tls_port)?;
        let listening = [tcp_port, tls_port]
            .iter()
            .all(|port| sockets.tcp_listen_ports.contains(port));
        match sockets.udp_ports.as_slice() {
            [udp_port] if listening => Some((tcp_port, tls_port, *udp_port)),
            _ => None,
        }
    }
}

/// Reads the complete lines of a messages file. A message still being
/// written has no newline yet and is left out.
fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        // rsyslogd creates the file with the first message.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => panic!("failed to read {}: {err}", path.display()),
    };
    let Some(last_newline) = data.iter().rposition(|&byte| byte == b'\n') else {
        return Vec::new();
    };
    data[..last_newline]
        .split(|&byte| byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn utf8_lines(lines: Vec<Vec<u8>>) -> Vec<String> {
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            String::from_utf8(line).unwrap_or_else(|err| {
                panic!("message {index} that rsyslogd received is not UTF-8: {err}")
            })
        })
        .collect()
}

/// Writes the configuration of one rsyslogd instance. It loads no system
/// configuration and no local inputs (imuxsock, imklog), only the three
/// network listeners, which run in their own ruleset so that rsyslogd's own
/// messages never reach the messages files.
fn rsyslog_config(files: &RsyslogFiles, tls: &TestTlsFiles) -> String {
    let path = |path: &Path| -> String {
        let text = path.to_str().expect("rsyslog paths must be UTF-8");
        assert!(
            !text.contains(['"', '\\']),
            "rsyslog config strings cannot contain {text:?} unescaped"
        );
        text.to_owned()
    };
    let work = path(&files.work);
    let messages = path(&files.messages);
    let tcp_messages = path(&files.listener_messages(Listener::Tcp));
    let tls_messages = path(&files.listener_messages(Listener::Tls));
    let udp_messages = path(&files.listener_messages(Listener::Udp));
    let tcp_name = Listener::Tcp.input_name();
    let tls_name = Listener::Tls.input_name();
    let udp_name = Listener::Udp.input_name();
    let internal_log = path(&files.internal_log);
    let tcp_port = path(&files.tcp_port);
    let tls_port = path(&files.tls_port);
    let ca = path(&tls.ca_path);
    let cert = path(&tls.server_cert_path);
    let key = path(&tls.server_key_path);
    format!(
        r#"# rsyslogd for one webwarden end-to-end test.
global(
    workDirectory="{work}"
    # The default maximum of 8 KiB is too small for long URLs.
    maxMessageSize="64k"
    # Store control characters as received instead of as #ooo escapes,
    # and keep a trailing LF, so the stored message is byte-identical.
    parser.escapeControlCharactersOnReceive="off"
    parser.dropTrailingLFOnReception="off"
    # Process rsyslogd's own messages below instead of sending them to the
    # system log.
    processInternalMessages="on"
    net.enableDNS="off"
)

module(load="imtcp")
module(load="imudp")

# rawmsg is the message as received, after imtcp removed the framing.
template(name="webwardenRawMessage" type="string" string="%rawmsg%\n")

# One action per file, so that no two actions write to the same file.
ruleset(name="webwardenReceived") {{
    action(type="omfile" file="{messages}" template="webwardenRawMessage")
    if $inputname == "{tcp_name}" then {{
        action(type="omfile" file="{tcp_messages}" template="webwardenRawMessage")
    }} else if $inputname == "{tls_name}" then {{
        action(type="omfile" file="{tls_messages}" template="webwardenRawMessage")
    }} else if $inputname == "{udp_name}" then {{
        action(type="omfile" file="{udp_messages}" template="webwardenRawMessage")
    }}
}}

input(type="imtcp" name="{tcp_name}" address="127.0.0.1" port="0"
      listenPortFileName="{tcp_port}" ruleset="webwardenReceived")
input(type="imtcp" name="{tls_name}" address="127.0.0.1" port="0"
      listenPortFileName="{tls_port}" ruleset="webwardenReceived"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="{ca}" streamDriver.CertFile="{cert}"
      streamDriver.KeyFile="{key}")
input(type="imudp" name="{udp_name}" address="127.0.0.1" port="0" ruleset="webwardenReceived")

# rsyslogd's own messages, such as TLS handshake errors.
*.* action(type="omfile" file="{internal_log}")
"#
    )
}

/// Reads a port that rsyslogd wrote with `listenPortFileName`.
fn read_port_file(path: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().filter(|&port| port != 0)
}

/// The loopback ports of the sockets that one process has open.
struct OwnedSockets {
    tcp_listen_ports: Vec<u16>,
    udp_ports: Vec<u16>,
}

impl OwnedSockets {
    /// Matches the socket inodes in `/proc/PID/fd` against the kernel's
    /// socket tables. Panics when the process has a TCP or UDP socket on an
    /// address other than 127.0.0.1, because every test server must stay on
    /// loopback.
    fn of_process(pid: u32) -> Option<OwnedSockets> {
        let mut inodes = HashSet::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
            let Ok(target) = std::fs::read_link(entry.ok()?.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
        // IPv6 sockets fail the loopback check, as their addresses do not
        // parse as IPv4.
        proc_net_sockets("/proc/net/tcp6", &inodes);
        proc_net_sockets("/proc/net/udp6", &inodes);
        let tcp_listen_ports = proc_net_sockets("/proc/net/tcp", &inodes)
            .into_iter()
            .filter(|socket| socket.state == TCP_LISTEN)
            .map(|socket| socket.port)
            .collect();
        let udp_ports = proc_net_sockets("/proc/net/udp", &inodes)
            .into_iter()
            .map(|socket| socket.port)
            .collect();
        Some(OwnedSockets {
            tcp_listen_ports,
            udp_ports,
        })
    }
}

/// The state of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// One row of a `/proc/net` socket table.
struct ProcNetSocket {
    port: u16,
    state: String,
}

/// Returns the sockets of a `/proc/net` table whose inode is in `inodes`,
/// and panics when one of them is bound to an address other than 127.0.0.1.
fn proc_net_sockets(table: &str, inodes: &HashSet<String>) -> Vec<ProcNetSocket> {
    let text = std::fs::read_to_string(table).unwrap_or_default();
    let mut sockets = Vec::new();
    for row in text.lines().skip(1) {
        let fields: Vec<&str> = row.split_whitespace().collect();
        // Columns: sl, local_address, rem_address, st, tx_queue:rx_queue,
        // tr:tm->when, retrnsmt, uid, timeout, inode.
        let [_, local, _, state, _, _, _, _, _, inode, ..] = fields.as_slice() else {
            continue;
        };
        if !inodes.contains(*inode) {
            continue;
        }
        let (address, port) = local.split_once(':').unwrap_or((local, ""));
        // The kernel prints an IPv4 address as the hex of a network-order
        // u32 read as a native integer.
        let address = u32::from_str_radix(address, 16).map(|raw| Ipv4Addr::from(raw.to_ne_bytes()));
        assert_eq!(
            address,
            Ok(Ipv4Addr::LOCALHOST),
            "rsyslogd has a socket on {local} in {table}, not on 127.0.0.1"
        );
        let port = u16::from_str_radix(port, 16)
            .unwrap_or_else(|err| panic!("invalid port in {local} in {table}: {err}"));
        sockets.push(ProcNetSocket {
            port,
            state: (*state).to_owned(),
        });
    }
    sockets
}
