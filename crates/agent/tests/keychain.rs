//! The CA key in a real Secret Service: GNOME Keyring under a D-Bus session
//! that the test starts, as on a Linux desktop. Checks where the key goes
//! (the keychain, not a file), that the agent signs with it after a
//! restart, and that a key file from a machine without a keychain moves in.
//!
//! Needs `dbus-daemon`, `gnome-keyring-daemon` and `secret-tool` (Debian
//! packages dbus-daemon, gnome-keyring, libsecret-tools). The test skips
//! when one is missing, unless `WEBWARDEN_REQUIRE_DESKTOP` is set, and then
//! it fails.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{curl, ChildGuard, ProxyOptions, Webwarden};

/// When set, a missing desktop tool fails the test instead of skipping it.
const REQUIRE_VAR: &str = "WEBWARDEN_REQUIRE_DESKTOP";

/// The programs this test starts or calls.
const TOOLS: [&str; 3] = ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"];

/// The bound on waiting for the keyring to appear on the bus.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A D-Bus session bus with an unlocked GNOME Keyring on it, in a
/// temporary home directory. Both processes are killed by PID on drop.
struct KeyringSession {
    home: tempfile::TempDir,
    bus_address: String,
    // Dropped in this order: the keyring, then the bus.
    _keyring: ChildGuard,
    _bus: ChildGuard,
}

impl KeyringSession {
    fn start() -> KeyringSession {
        let home = tempfile::tempdir().expect("temporary home");
        let runtime = home.path().join("runtime");
        std::fs::create_dir(&runtime).expect("runtime directory");
        let (bus, bus_address) = support::desktop::start_bus(home.path());

        let mut keyring = Command::new("gnome-keyring-daemon");
        keyring
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_DATA_HOME", home.path().join("share"))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut keyring = keyring.spawn().expect("start gnome-keyring-daemon");
        // The password of the new login keyring, read up to end of input.
        let mut stdin = keyring.stdin.take().expect("keyring stdin");
        stdin
            .write_all(b"test password")
            .expect("write the password");
        drop(stdin);
        let session = KeyringSession {
            home,
            bus_address,
            _keyring: ChildGuard::new(keyring),
            _bus: bus,
        };
        session.wait_for_keyring();
        session
    }

    fn wait_for_keyring(&self) {
        let started = Instant::now();
        loop {
            let output = Command::new("gdbus")
                .args([
                    "call",
                    "--session",
                    "--dest=org.freedesktop.DBus",
                    "--object-path=/org/freedesktop/DBus",
                    "--method=org.freedesktop.DBus.NameHasOwner",
                    "org.freedesktop.secrets",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
                .output()
                .expect("run gdbus");
            if String::from_utf8_lossy(&output.stdout).contains("true") {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "GNOME Keyring did not appear on the bus within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `webwarden` with `args` in this session.
    fn webwarden(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
        support::isolate_environment(&mut command, self.home.path());
        command
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .output()
            .expect("run webwarden")
    }

    /// Checks whether the keyring contains a webwarden entry for
    /// `account`, as the Secret Service's own client sees it.
    fn has_entry(&self, account: &str) -> bool {
        let output = Command::new("secret-tool")
            .args(["lookup", "service", "webwarden", "username", account])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .output()
            .expect("run secret-tool");
        output.status.success() && !output.stdout.is_empty()
    }
}

/// Returns whether the desktop tools are installed, and fails when one is
/// missing but required.
fn desktop_available() -> bool {
    let missing: Vec<_> = TOOLS
        .iter()
        .chain(&["gdbus"])
        .filter(|tool| support::desktop::find_program(tool).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os(REQUIRE_VAR).is_none(),
        "{missing:?} missing but {REQUIRE_VAR} is set; install them with `apt-get install -y \
         dbus-daemon gnome-keyring libsecret-tools libglib2.0-bin`"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping the keychain test: {missing:?} not installed; set {REQUIRE_VAR} to make \
         this a failure"
    );
    false
}

/// Returns the keychain account of the CA in `data`: `root CA key` and the
/// SHA-256 fingerprint of its certificate, computed here with openssl.
fn account_of(data: &Path) -> String {
    format!(
        "root CA key {}",
        support::sha256_fingerprint(&data.join("ca.pem"))
    )
}

fn data_dir(session: &KeyringSession) -> PathBuf {
    session.home.path().join("data")
}

#[test]
fn new_ca_key_goes_into_the_keyring() {
    if !desktop_available() {
        return;
    }
    let session = KeyringSession::start();
    let data = data_dir(&session);
    let data_arg = data.to_str().unwrap();

    let first = session.webwarden(&["ca", "export", "--data-dir", data_arg]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        !data.join("ca.key").exists(),
        "the key was written to a file"
    );
    assert!(session.has_entry(&account_of(&data)));

    let second = session.webwarden(&["ca", "export", "--data-dir", data_arg]);
    assert_eq!(second.stdout, first.stdout);
}

#[test]
fn agent_moves_a_key_file_into_the_keyring() {
    if !desktop_available() {
        return;
    }
    let session = KeyringSession::start();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    // Without a session bus, as on a headless machine, the key goes to a file.
    let mut headless = Command::new(env!("CARGO_BIN_EXE_webwarden"));
    support::isolate_environment(&mut headless, session.home.path());
    let output = headless
        .args(["ca", "export", "--data-dir", data_arg])
        .output()
        .expect("run webwarden");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let account = account_of(&data);
    assert!(data.join("ca.key").exists());
    assert!(!session.has_entry(&account));

    // A command in the desktop session leaves the file, since an agent
    // without the keychain may still need it.
    let exported = session.webwarden(&["ca", "export", "--data-dir", data_arg]);
    assert_eq!(exported.stdout, output.stdout);
    assert!(data.join("ca.key").exists());

    let proxy = Webwarden::start_with_env(
        work,
        &ProxyOptions {
            list: "(.*\\.)?blocked\\.test,Gambling\n",
            inspection: "all",
            trusted_roots: None,
        },
        &[],
        &[(
            "DBUS_SESSION_BUS_ADDRESS",
            session.bus_address.clone().into(),
        )],
    );
    assert!(
        proxy
            .log()
            .contains("moved the CA key into the OS keychain"),
        "{}",
        proxy.log()
    );
    assert!(
        !data.join("ca.key").exists(),
        "the key file was not removed"
    );
    assert!(session.has_entry(&account));
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_signs_with_the_key_from_the_keyring() {
    if !desktop_available() {
        return;
    }
    let session = KeyringSession::start();
    let data = data_dir(&session);
    let created = session.webwarden(&["ca", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    // A second data directory with only the certificate: the key can come
    // from nowhere but the keyring.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(data.join("ca.pem"), dir.path().join("data/ca.pem")).unwrap();
    let proxy = Webwarden::start_with_env(
        dir,
        &ProxyOptions {
            list: "(.*\\.)?blocked\\.test,Gambling\n",
            inspection: "all",
            trusted_roots: None,
        },
        &[],
        &[(
            "DBUS_SESSION_BUS_ADDRESS",
            session.bus_address.clone().into(),
        )],
    );
    assert!(
        proxy.log().contains("key=the OS keychain"),
        "{}",
        proxy.log()
    );
    let ca = proxy.ca_path();
    let page = curl(
        &proxy.proxy_url(),
        &["--cacert", ca.to_str().unwrap()],
        "https://blocked.test/",
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}");
}
