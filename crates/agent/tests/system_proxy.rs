//! Points the OS proxy settings at webwarden and back, as an employee's
//! desktop would show it. GNOME's settings go through the real gsettings
//! and dconf on a private D-Bus session bus. KDE's `kioslaverc` and the
//! systemd `environment.d` file are in a temporary home directory. Each test
//! starts its own `dbus-daemon` and stops it by its PID.
//!
//! Needs `dbus-daemon`, `gsettings` (libglib2.0-bin), the
//! `org.gnome.system.proxy` schema (gsettings-desktop-schemas) and dconf
//! (dconf-gsettings-backend, dconf-service). The tests skip when one is
//! missing, unless `WEBWARDEN_REQUIRE_DESKTOP` is set, and then they fail.

mod support;

use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ChildGuard, ProxyOptions, Webwarden};
use tempfile::TempDir;

/// When set, missing desktop tools fail the tests instead of skipping them.
const REQUIRE_DESKTOP_VAR: &str = "WEBWARDEN_REQUIRE_DESKTOP";

/// The Debian packages that the tests need.
const PACKAGES: &str =
    "dbus-daemon libglib2.0-bin gsettings-desktop-schemas dconf-gsettings-backend dconf-service";

const SCHEMA: &str = "org.gnome.system.proxy";

/// The employee's own settings before webwarden starts.
const CORP_MODE: &str = "'manual'";
const CORP_PAC: &str = "'http://wpad.corp.test/wpad.dat'";
const CORP_HOST: &str = "'proxy.corp.test'";
const CORP_PORT: &str = "3128";

/// A `kioslaverc` with other groups and keys, which must come back byte
/// for byte.
const KIOSLAVERC: &str = "[Cache]\nMaxCacheSize=5120\n\n[Proxy Settings]\n\
                          NoProxyFor=corp.test\nProxyType=1\nhttpProxy=http://proxy.corp.test 3128\n";

/// The list of the test agent; its rules do not matter here.
const LIST: &str = "(.*\\.)?blocked\\.test,Gambling\n";

/// The bound on waiting for the agent's status file.
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);

/// A private session bus and the directories of one user's desktop:
/// `home`, `config` (`XDG_CONFIG_HOME`, where dconf keeps its database) and
/// `runtime` (`XDG_RUNTIME_DIR`), in a directory that the test owns.
struct Desktop {
    root: PathBuf,
    address: String,
    // Dropped last, which kills dbus-daemon; dconf-service, which the bus
    // started, exits when it loses the bus.
    _bus: ChildGuard,
}

impl Desktop {
    /// Starts the bus under `root`, or returns `None` when the tools are
    /// missing and not required.
    fn start(root: &Path, test_name: &str) -> Option<Desktop> {
        for program in ["dbus-daemon", "gsettings"] {
            if support::desktop::find_program(program).is_none() {
                return skip(test_name, &format!("{program} is not installed"));
            }
        }
        for dir in ["home", "config", "runtime", "share"] {
            std::fs::create_dir_all(root.join(dir)).expect("create desktop directory");
        }
        let bus = support::desktop::start_bus(root);
        let desktop = Desktop {
            root: root.to_owned(),
            address: bus.1,
            _bus: bus.0,
        };
        if let Err(reason) = desktop.probe() {
            return skip(test_name, &reason);
        }
        Some(desktop)
    }

    /// Checks that the schema exists and that a value written by one
    /// gsettings process is read by another, which needs dconf.
    fn probe(&self) -> Result<(), String> {
        let output = self
            .command("gsettings")
            .args(["get", SCHEMA, "mode"])
            .output();
        let output = output.map_err(|err| format!("gsettings failed to start: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "the {SCHEMA} schema is missing: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        self.gsettings(&["set", &format!("{SCHEMA}.socks"), "host", "'probe.test'"]);
        if self.get(&format!("{SCHEMA}.socks"), "host") != "'probe.test'" {
            return Err("gsettings does not keep values; is dconf installed?".to_owned());
        }
        Ok(())
    }

    /// Returns the environment of every program in this desktop.
    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("HOME", self.root.join("home").into()),
            ("XDG_CONFIG_HOME", self.root.join("config").into()),
            ("XDG_DATA_HOME", self.root.join("share").into()),
            ("XDG_RUNTIME_DIR", self.root.join("runtime").into()),
            ("DBUS_SESSION_BUS_ADDRESS", self.address.clone().into()),
            ("GSETTINGS_BACKEND", "dconf".into()),
            ("XDG_CURRENT_DESKTOP", "GNOME".into()),
        ]
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env()).stdin(Stdio::null());
        command
    }

    /// Runs gsettings and returns its output; fails on any error or warning.
    fn gsettings(&self, args: &[&str]) -> String {
        let output = self
            .command("gsettings")
            .args(args)
            .output()
            .expect("gsettings runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "gsettings {args:?}: {stderr}"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    }

    fn get(&self, schema: &str, key: &str) -> String {
        self.gsettings(&["get", schema, key])
    }

    /// Sets the employee's own proxy settings: a manual proxy, and a PAC URL
    /// that is not in use.
    fn set_corp_settings(&self) {
        self.gsettings(&["set", SCHEMA, "autoconfig-url", CORP_PAC]);
        self.gsettings(&["set", &format!("{SCHEMA}.http"), "host", CORP_HOST]);
        self.gsettings(&["set", &format!("{SCHEMA}.http"), "port", CORP_PORT]);
        self.gsettings(&["set", SCHEMA, "mode", CORP_MODE]);
        std::fs::write(self.kioslaverc(), KIOSLAVERC).expect("write kioslaverc");
    }

    /// Checks that every setting is the employee's own again.
    fn assert_corp_settings(&self) {
        assert_eq!(self.get(SCHEMA, "mode"), CORP_MODE);
        assert_eq!(self.get(SCHEMA, "autoconfig-url"), CORP_PAC);
        assert_eq!(self.get(&format!("{SCHEMA}.http"), "host"), CORP_HOST);
        assert_eq!(self.get(&format!("{SCHEMA}.http"), "port"), CORP_PORT);
        let kioslaverc = std::fs::read_to_string(self.kioslaverc()).expect("read kioslaverc");
        assert_eq!(kioslaverc, KIOSLAVERC, "kioslaverc is back byte for byte");
        assert!(
            !self.env_file().exists(),
            "the environment.d file is deleted"
        );
    }

    /// Checks that GNOME, KDE and the environment file point at `pac_url`
    /// and `proxy_port`.
    fn assert_webwarden_settings(&self, pac_url: &str, proxy_port: u16) {
        assert_eq!(self.get(SCHEMA, "mode"), "'auto'");
        assert_eq!(self.get(SCHEMA, "autoconfig-url"), format!("'{pac_url}'"));
        assert_eq!(
            self.get(&format!("{SCHEMA}.http"), "host"),
            CORP_HOST,
            "the manual proxy is left as it was"
        );

        let kioslaverc = std::fs::read_to_string(self.kioslaverc()).expect("read kioslaverc");
        assert!(kioslaverc.contains("\nProxyType=2\n"), "{kioslaverc}");
        assert!(
            kioslaverc.contains(&format!("\nProxy Config Script={pac_url}\n")),
            "{kioslaverc}"
        );
        for line in [
            "MaxCacheSize=5120",
            "NoProxyFor=corp.test",
            "httpProxy=http://proxy.corp.test 3128",
        ] {
            assert!(
                kioslaverc.lines().any(|l| l == line),
                "{line} kept: {kioslaverc}"
            );
        }

        let env_file = std::fs::read_to_string(self.env_file()).expect("read environment.d file");
        let proxy = format!("http://127.0.0.1:{proxy_port}");
        for name in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
            let line = format!("{name}={proxy}");
            assert!(env_file.lines().any(|l| l == line), "{line} in {env_file}");
        }
        assert!(env_file
            .lines()
            .any(|l| l == "no_proxy=localhost,127.0.0.1,::1"));
    }

    fn kioslaverc(&self) -> PathBuf {
        self.root.join("config").join("kioslaverc")
    }

    fn env_file(&self) -> PathBuf {
        self.root
            .join("config")
            .join("environment.d")
            .join("90-webwarden-proxy.conf")
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn restore_file(&self) -> PathBuf {
        self.data_dir().join("proxy-restore.json")
    }

    /// Runs `webwarden ARGS --data-dir DATA` in this desktop.
    fn webwarden(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_webwarden"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("webwarden runs")
    }

    /// Starts `webwarden run` with `args` in this desktop, in the directory
    /// `dir` whose path is this desktop's root.
    fn run_agent(&self, dir: TempDir, args: &[&str]) -> Webwarden {
        assert_eq!(dir.path(), self.root);
        let options = ProxyOptions {
            list: LIST,
            inspection: "all",
            trusted_roots: None,
        };
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Webwarden::start_with_env(dir, &options, &args, &self.env())
    }

    /// Returns the PAC URL that GNOME's settings name.
    fn gnome_pac_url(&self) -> String {
        let quoted = self.get(SCHEMA, "autoconfig-url");
        quoted.trim_matches('\'').to_owned()
    }
}

/// Fails when the desktop tools are required, else prints why the test
/// skips.
fn skip<T>(test_name: &str, reason: &str) -> Option<T> {
    if std::env::var_os(REQUIRE_DESKTOP_VAR).is_some() {
        panic!("{reason}, but {REQUIRE_DESKTOP_VAR} is set; install with `apt-get install -y {PACKAGES}`");
    }
    // libtest captures `eprintln!` of passing tests, but not direct writes
    // to the stderr handle, so the skip shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test_name}: {reason} (apt-get install -y {PACKAGES}); set \
         {REQUIRE_DESKTOP_VAR} to make this a failure"
    );
    None
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reads `proxy status --json` and returns each backend's state by name.
fn backend_states(desktop: &Desktop, extra: &[&str]) -> (Option<i32>, Vec<(String, String)>) {
    let mut args = vec!["proxy", "status", "--json"];
    args.extend_from_slice(extra);
    let output = desktop.webwarden(&args);
    let status: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("status --json is JSON ({err}): {}", text(&output)));
    let states = status["backends"]
        .as_array()
        .expect("backends array")
        .iter()
        .map(|b| {
            let name = b["backend"].as_str().unwrap_or_default().to_owned();
            (name, b["state"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    (output.status.code(), states)
}

fn states(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, state)| ((*name).to_owned(), (*state).to_owned()))
        .collect()
}

/// Fetches `url` on loopback without any proxy and returns the status,
/// the content type and the body.
async fn fetch(url: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client");
    let response = client.get(url).send().await.expect("PAC request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.text().await.expect("PAC body"),
    )
}

/// Waits until the agent's status file lists the system proxy backends.
fn wait_for_status_backends(desktop: &Desktop, agent: &Webwarden) -> Value {
    let path = desktop.data_dir().join("status.json");
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        let status: Option<Value> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if let Some(status) =
            status.filter(|s| !s["systemProxy"].as_array().is_none_or(Vec::is_empty))
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no system proxy state in {} within {STATUS_TIMEOUT:?}; log:\n{}",
            path.display(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cli_enable_and_disable_round_trip() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "cli_enable_and_disable_round_trip") else {
        return;
    };
    desktop.set_corp_settings();
    let pac_listen = format!("127.0.0.1:{}", support::closed_port());
    let pac_url = format!("http://{pac_listen}/proxy.pac");
    let target = ["--pac-listen", &pac_listen, "--listen", "127.0.0.1:18899"];
    let (code, before) = backend_states(&desktop, &target);
    assert_eq!(code, Some(1), "status exits with 1 before enable");
    assert_eq!(
        before,
        states(&[
            ("gnome", "other"),
            ("kde", "other"),
            ("environment", "other")
        ])
    );

    let mut args = vec!["proxy", "enable"];
    args.extend_from_slice(&target);
    let output = desktop.webwarden(&args);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("warning: no webwarden agent serves {pac_url}")),
        "{stderr}"
    );
    assert!(desktop.restore_file().exists());
    desktop.assert_webwarden_settings(&pac_url, 18899);

    let (code, after) = backend_states(&desktop, &target);
    assert_eq!(
        code,
        Some(0),
        "status exits with 0 once every backend is set"
    );
    assert_eq!(
        after,
        states(&[
            ("gnome", "webwarden"),
            ("kde", "webwarden"),
            ("environment", "webwarden")
        ])
    );

    let output = desktop.webwarden(&["proxy", "disable"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches(" restored\n").count(), 3, "{stdout}");
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());

    let output = desktop.webwarden(&["proxy", "disable"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("nothing to restore"), "{stdout}");
}

#[test]
fn user_change_survives_disable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "user_change_survives_disable") else {
        return;
    };
    desktop.set_corp_settings();
    let output = desktop.webwarden(&["proxy", "enable", "--pac-listen", "127.0.0.1:18898"]);
    assert!(output.status.success(), "{}", text(&output));

    // The employee picks another proxy while webwarden's settings apply.
    desktop.gsettings(&["set", SCHEMA, "mode", "'manual'"]);
    desktop.gsettings(&["set", &format!("{SCHEMA}.http"), "host", "'chosen.test'"]);

    let output = desktop.webwarden(&["proxy", "disable"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("gnome        changed after webwarden set it"),
        "{stdout}"
    );
    assert_eq!(desktop.get(SCHEMA, "mode"), "'manual'");
    assert_eq!(
        desktop.get(SCHEMA, "autoconfig-url"),
        "'http://127.0.0.1:18898/proxy.pac'",
        "none of GNOME's keys are restored over the user's change"
    );
    assert_eq!(
        desktop.get(&format!("{SCHEMA}.http"), "host"),
        "'chosen.test'"
    );
    assert_eq!(
        std::fs::read_to_string(desktop.kioslaverc()).unwrap(),
        KIOSLAVERC,
        "the other backends are restored"
    );
    assert!(!desktop.env_file().exists());
    assert!(!desktop.restore_file().exists());
}

#[test]
fn unstored_gnome_setting_is_reported() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "unstored_gnome_setting_is_reported") else {
        return;
    };
    desktop.set_corp_settings();
    // gsettings exits with 0 when dconf cannot store a value, as here,
    // where the bus address names a socket that does not exist.
    let dead_bus = format!("unix:path={}", dir.path().join("runtime/no-bus").display());
    let output = desktop
        .command(env!("CARGO_BIN_EXE_webwarden"))
        .args(["proxy", "enable", "--pac-listen", "127.0.0.1:18898"])
        .arg("--data-dir")
        .arg(desktop.data_dir())
        .env("DBUS_SESSION_BUS_ADDRESS", dead_bus)
        .output()
        .expect("webwarden runs");

    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("gnome        FAILED: gnome: gsettings did not store the values"),
        "{stdout}"
    );
    assert!(stdout.contains("kde          set to webwarden"), "{stdout}");
    assert_eq!(desktop.get(SCHEMA, "mode"), CORP_MODE);

    let output = desktop.webwarden(&["proxy", "disable"]);
    assert!(output.status.success(), "{}", text(&output));
    desktop.assert_corp_settings();
}

#[tokio::test]
async fn run_sets_settings_and_sigterm_restores() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "run_sets_settings_and_sigterm_restores") else {
        return;
    };
    desktop.set_corp_settings();
    let mut agent = desktop.run_agent(dir, &["--system-proxy", "--pac-listen", "127.0.0.1:0"]);

    let pac_url = desktop.gnome_pac_url();
    assert!(pac_url.starts_with("http://127.0.0.1:"), "{pac_url}");
    desktop.assert_webwarden_settings(&pac_url, agent.port);
    assert!(desktop.restore_file().exists());

    let (status, content_type, body) = fetch(&pac_url).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ns-proxy-autoconfig");
    assert!(
        body.contains("function FindProxyForURL(url, host)"),
        "{body}"
    );
    assert!(
        body.contains(&format!("return \"PROXY 127.0.0.1:{}\";", agent.port)),
        "{body}"
    );
    let wpad_url = pac_url.replace("/proxy.pac", "/wpad.dat");
    assert_eq!(fetch(&wpad_url).await.2, body);
    let other_url = pac_url.replace("/proxy.pac", "/other");
    assert_eq!(fetch(&other_url).await.0, 404);

    let status = wait_for_status_backends(&desktop, &agent);
    let gnome = &status["systemProxy"][0];
    assert_eq!(gnome["backend"], "gnome", "{status:#}");
    assert_eq!(gnome["state"], "webwarden", "{status:#}");

    let exit = agent.terminate(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|status| status.success()),
        "exit {exit:?}; log:\n{}",
        agent.log()
    );
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());
    assert!(
        agent.log().contains("system proxy restored"),
        "{}",
        agent.log()
    );
}

#[test]
fn sigterm_during_startup_restores() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "sigterm_during_startup_restores") else {
        return;
    };
    desktop.set_corp_settings();
    // SIGTERM right after the settings are applied, while the proxy may
    // still be setting up TLS.
    let mut agent = desktop.run_agent(dir, &["--system-proxy", "--pac-listen", "127.0.0.1:0"]);
    let exit = agent.terminate(Duration::from_secs(20));

    assert!(
        exit.is_some_and(|status| status.success()),
        "exit {exit:?}; log:\n{}",
        agent.log()
    );
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());
}

#[test]
fn hangup_and_quit_restore() {
    for signal in ["HUP", "QUIT"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let Some(desktop) = Desktop::start(dir.path(), "hangup_and_quit_restore") else {
            return;
        };
        desktop.set_corp_settings();
        // SIGHUP arrives when the terminal that started the agent closes.
        let mut agent = desktop.run_agent(dir, &["--system-proxy", "--pac-listen", "127.0.0.1:0"]);
        let exit = agent.signal(signal, Duration::from_secs(20));

        assert!(
            exit.is_some_and(|status| status.success()),
            "SIG{signal}: exit {exit:?}; log:\n{}",
            agent.log()
        );
        desktop.assert_corp_settings();
        assert!(!desktop.restore_file().exists());
    }
}

#[test]
fn damaged_restore_file_keeps_agent_running() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "damaged_restore_file_keeps_agent_running")
    else {
        return;
    };
    desktop.set_corp_settings();
    let damaged = "{\"version\": 1, \"target\": {\"pacUrl\": ";
    std::fs::create_dir_all(desktop.data_dir()).expect("create data directory");
    std::fs::write(desktop.restore_file(), damaged).expect("write restore file");

    let flags = ["--system-proxy", "--pac-listen", "127.0.0.1:0"];
    let mut agent = desktop.run_agent(dir, &flags);
    assert!(
        agent.log().contains("invalid restore file"),
        "the log names the damaged file:\n{}",
        agent.log()
    );
    desktop.assert_corp_settings();
    assert_eq!(
        std::fs::read_to_string(desktop.restore_file()).expect("restore file is kept"),
        damaged
    );

    let exit = agent.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "log:\n{}", agent.log());
    desktop.assert_corp_settings();
}

#[test]
fn killed_run_is_restored_by_next_run() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "killed_run_is_restored_by_next_run") else {
        return;
    };
    desktop.set_corp_settings();
    let flags = ["--system-proxy", "--pac-listen", "127.0.0.1:0"];
    let agent = desktop.run_agent(dir, &flags);
    let first_pac_url = desktop.gnome_pac_url();
    let first_port = agent.port;
    let dir = agent.kill_hard();

    // The crash left webwarden's settings and the saved ones in place.
    desktop.assert_webwarden_settings(&first_pac_url, first_port);
    let saved = std::fs::read_to_string(desktop.restore_file()).expect("restore file exists");
    assert!(saved.contains(&format!("{CORP_MODE:?}")), "{saved}");
    assert!(saved.contains(&format!("{CORP_PAC:?}")), "{saved}");

    let mut agent = desktop.run_agent(dir, &flags);
    assert!(
        agent
            .log()
            .contains("saved by an earlier run were not restored"),
        "{}",
        agent.log()
    );
    let second_pac_url = desktop.gnome_pac_url();
    desktop.assert_webwarden_settings(&second_pac_url, agent.port);

    let exit = agent.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "log:\n{}", agent.log());
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());
}

#[test]
fn killed_run_is_restored_by_disable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "killed_run_is_restored_by_disable") else {
        return;
    };
    desktop.set_corp_settings();
    let agent = desktop.run_agent(dir, &["--system-proxy", "--pac-listen", "127.0.0.1:0"]);
    let _dir = agent.kill_hard();
    assert_eq!(desktop.get(SCHEMA, "mode"), "'auto'");

    let output = desktop.webwarden(&["proxy", "disable"]);
    assert!(output.status.success(), "{}", text(&output));
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());
}

#[test]
fn run_without_flag_leaves_settings() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(desktop) = Desktop::start(dir.path(), "run_without_flag_leaves_settings") else {
        return;
    };
    desktop.set_corp_settings();
    let mut agent = desktop.run_agent(dir, &[]);
    desktop.assert_corp_settings();
    assert!(!desktop.restore_file().exists());
    assert!(!agent.log().contains("PAC file"), "{}", agent.log());

    let exit = agent.terminate(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| s.success()), "log:\n{}", agent.log());
    desktop.assert_corp_settings();
}

#[test]
fn non_loopback_pac_address_is_rejected() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    // A bus address where nothing listens, so even a broken check could
    // not reach the real session bus.
    let env = [
        ("HOME", root.join("home")),
        ("XDG_CONFIG_HOME", root.join("config")),
        ("XDG_DATA_HOME", root.join("share")),
        ("XDG_RUNTIME_DIR", root.join("runtime")),
        (
            "DBUS_SESSION_BUS_ADDRESS",
            PathBuf::from("unix:path=/nonexistent/bus"),
        ),
    ];
    let data_dir = root.join("data");

    let list = root.join("list.csv");
    std::fs::write(&list, LIST).expect("write list");
    let list = list.to_str().expect("UTF-8 temporary path");
    // 192.0.2.1 (TEST-NET-1) is not on this machine, so a broken check
    // fails to bind rather than listening on a real interface.
    let runs: [&[&str]; 2] = [
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--list",
            list,
            "--system-proxy",
            "--pac-listen",
            "192.0.2.1:0",
        ],
        &["proxy", "enable", "--pac-listen", "192.0.2.1:8898"],
    ];

    for args in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_webwarden"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .envs(env.iter().map(|(name, value)| (*name, value)))
            .env_remove("XDG_CURRENT_DESKTOP")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("webwarden starts");

        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let mut child = ChildGuard::new(child);
        let status = child.wait_timeout(Duration::from_secs(30));
        let mut stderr = String::new();
        if status.is_some() {
            std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut stderr)
                .expect("read stderr");
        }

        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{args:?} exits with 2: {stderr}"
        );
        assert!(
            stderr.contains("is not a loopback address"),
            "{args:?}: {stderr}"
        );
        assert!(!data_dir.join("proxy-restore.json").exists(), "{args:?}");
        assert!(!root.join("config/environment.d").exists(), "{args:?}");
    }
}
