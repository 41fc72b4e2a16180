//! Headless Chromium driven as a user's browser: its own HOME and profile,
//! every request through the proxy, and no name resolution of its own.
//!
//! Needs Debian's `chromium`. [`chromium_available`] skips a test when it is
//! missing, unless `WEBWARDEN_REQUIRE_BROWSER` is set, and then it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ChildGuard, Webwarden};

/// Debian's Chromium binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// When set, a missing Chromium fails the test instead of skipping it.
const REQUIRE_BROWSER_VAR: &str = "WEBWARDEN_REQUIRE_BROWSER";

/// The bound on one Chromium run; it is killed by its PID after that.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns whether Chromium is installed, and fails when it is missing but
/// required.
pub fn chromium_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os(REQUIRE_BROWSER_VAR).is_some() {
        panic!(
            "{CHROMIUM} is missing but {REQUIRE_BROWSER_VAR} is set; install it with \
             `apt-get install -y chromium libnss3-tools`"
        );
    }
    // libtest captures `println!` and `eprintln!` of passing tests, but not
    // direct writes to the stderr handle, so the skip shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "skipping the browser test: {CHROMIUM} is not installed (apt-get install -y chromium \
         libnss3-tools); set {REQUIRE_BROWSER_VAR} to make this a failure"
    );
    false
}

/// A headless Chromium with its own HOME and profile that sends every
/// request, loopback included, through the proxy.
pub struct Browser {
    home: PathBuf,
    proxy: String,
    run: u32,
}

/// What one Chromium run printed.
pub struct BrowserOutput {
    /// What Chromium wrote to standard output.
    pub stdout: String,
    /// What Chromium wrote to standard error.
    pub stderr: String,
}

impl Browser {
    /// Creates a browser whose HOME is `home`, with a proxy of `proxy`.
    pub fn new(home: &Path, proxy: &Webwarden) -> Browser {
        Browser {
            home: home.to_owned(),
            proxy: proxy.proxy_url(),
            run: 0,
        }
    }

    /// Runs Chromium with `action` (such as `--dump-dom`) on `url`.
    pub fn run(&mut self, action: &[&str], url: &str) -> BrowserOutput {
        self.run += 1;
        let profile = self.home.join(format!("profile-{}", self.run));
        let stdout_path = self.home.join(format!("chromium-{}.out", self.run));
        let stderr_path = self.home.join(format!("chromium-{}.err", self.run));

        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-client-side-phishing-detection",
                "--disable-domain-reliability",
                // Chromium itself resolves no name, so nothing leaves the
                // machine even if it skipped the proxy.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-bypass-list=<-loopback>",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--proxy-server={}", self.proxy))
            .args(action)
            .arg(url)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("Chromium stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("Chromium stderr file"));
        super::isolate_environment(&mut command, &self.home);

        // On a timeout the panic drops the guard, which kills Chromium by
        // its PID; its helper processes exit when their parent is gone.
        let child = command.spawn().expect("Chromium starts");
        let mut guard = ChildGuard::new(child);
        let status = guard.wait_timeout(CHROMIUM_TIMEOUT);
        let output = BrowserOutput {
            stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        };

        match status {
            Some(status) => assert!(
                status.success(),
                "Chromium {action:?} {url} exited with {status}; stderr:\n{}",
                output.stderr
            ),
            None => panic!(
                "Chromium {action:?} {url} ran longer than {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                output.stderr
            ),
        }
        output
    }
}
