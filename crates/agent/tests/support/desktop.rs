//! A private desktop session for tests: a D-Bus session bus with its
//! socket, configuration and data under a temporary directory, so tests
//! never reach the settings or keychain of the machine they run on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ChildGuard;

/// Starts `dbus-daemon --session` with its socket in `root/runtime` and
/// its messages in `root/dbus-daemon.log`, and returns it with the bus
/// address.
pub fn start_bus(root: &Path) -> (ChildGuard, String) {
    let socket = root.join("runtime").join("bus");
    let log = std::fs::File::create(root.join("dbus-daemon.log")).expect("create dbus log");
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_DATA_HOME", root.join("share"))
        .env("XDG_RUNTIME_DIR", root.join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("dbus-daemon starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard::new(child);
    let mut address = String::new();
    BufReader::new(stdout)
        .read_line(&mut address)
        .expect("read the bus address");
    let address = address.trim().to_owned();
    assert!(
        address.starts_with("unix:"),
        "dbus-daemon printed {address:?}"
    );
    (guard, address)
}

/// Returns the path of `program` in `PATH`, or `None` when it is missing.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
