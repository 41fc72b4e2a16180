//! Runs `webwarden ca install | uninstall | status` against the real trust
//! stores of this machine and checks the result with the programs that
//! read them: OpenSSL and curl for the system store, certutil and headless
//! Chromium for the NSS database.
//!
//! The system store tests need root and Debian's `update-ca-certificates`.
//! Without root they skip with a note on standard error, unless
//! `WEBWARDEN_REQUIRE_ROOT` is set, and then they fail. They hold one
//! process-wide lock, because runs of `update-ca-certificates` must not
//! overlap, and a guard removes what they added even when they fail.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use support::chromium::{chromium_available, Browser};
use support::{ProxyOptions, Webwarden};

/// The bundle that `update-ca-certificates` writes.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where Debian reads locally added CA files.
const ANCHOR_DIR: &str = "/usr/local/share/ca-certificates";

/// The directory of per-certificate links that `update-ca-certificates`
/// maintains next to the bundle.
const CERTS_DIR: &str = "/etc/ssl/certs";

/// When set, a test that needs root fails instead of skipping.
const REQUIRE_ROOT_VAR: &str = "WEBWARDEN_REQUIRE_ROOT";

/// The list of the proxied tests: `blocked.test` gets the block page, and
/// every other host is blocked too, so webwarden never resolves a name.
const LIST: &str = "(.*\\.)?blocked\\.test,Gambling\n.*,Outside the test\n";

/// Serializes the tests that change or read the system store.
static SYSTEM_STORE: Mutex<()> = Mutex::new(());

fn lock_system_store() -> MutexGuard<'static, ()> {
    SYSTEM_STORE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returns whether this process runs as root, and fails when it does not
/// but root is required.
fn running_as_root(test: &str) -> bool {
    let output = Command::new("id").arg("-u").output().expect("run `id -u`");
    if String::from_utf8_lossy(&output.stdout).trim() == "0" {
        return true;
    }
    if std::env::var_os(REQUIRE_ROOT_VAR).is_some() {
        panic!("{test} needs root, and {REQUIRE_ROOT_VAR} is set");
    }
    // libtest shows direct writes to the stderr handle even for passing
    // tests, unlike `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test}: it needs root to use the system trust store; set \
         {REQUIRE_ROOT_VAR} to make this a failure"
    );
    false
}

/// Removes, when dropped, every webwarden file in [`ANCHOR_DIR`] that was
/// not there when it was created, and rebuilds [`CERTS_DIR`] when it
/// removed one or a webwarden link was left there.
struct SystemStoreCleanup {
    before: BTreeSet<PathBuf>,
}

impl SystemStoreCleanup {
    fn new() -> SystemStoreCleanup {
        SystemStoreCleanup {
            before: webwarden_entries(ANCHOR_DIR),
        }
    }
}

impl Drop for SystemStoreCleanup {
    fn drop(&mut self) {
        let added: Vec<PathBuf> = webwarden_entries(ANCHOR_DIR)
            .difference(&self.before)
            .cloned()
            .collect();
        for path in &added {
            let _ = std::fs::remove_file(path);
        }
        if !added.is_empty() || !webwarden_entries(CERTS_DIR).is_empty() {
            let _ = Command::new("update-ca-certificates")
                .arg("--fresh")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Returns the entries of `dir` named `webwarden*`, or links to a file of
/// that name (the hash links in /etc/ssl/certs).
fn webwarden_entries(dir: &str) -> BTreeSet<PathBuf> {
    let is_webwarden = |path: &Path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("webwarden"))
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            is_webwarden(path) || std::fs::read_link(path).is_ok_and(|target| is_webwarden(&target))
        })
        .collect()
}

/// Runs `webwarden ca ARGS` with HOME set to `home`, outside sudo.
fn webwarden_ca(home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
    command
        .arg("ca")
        .args(args)
        .env("HOME", home)
        .env_remove("SUDO_USER")
        .stdin(Stdio::null());
    support::isolate_environment(&mut command, home);
    command.output().expect("webwarden starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Formats a command's output for an assertion message.
fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Returns the result column of the store line named `name`.
fn store_result<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
        })
        .map(|rest| {
            rest.trim_start()
                .split_once("  ")
                .map_or("", |(_, result)| result.trim())
        })
        .unwrap_or_else(|| panic!("no line for store {name:?} in:\n{stdout}"))
}

/// Runs `ca status --json` and returns its exit code and output.
fn status_json(home: &Path, data: &str) -> (Option<i32>, Value) {
    let output = webwarden_ca(home, &["status", "--data-dir", data, "--json"]);
    let value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("status --json is not JSON ({err}): {}", describe(&output)));
    (output.status.code(), value)
}

/// Returns the `state` of every store in a `ca status --json` output.
fn store_states(status: &Value) -> Vec<(String, String)> {
    status["stores"]
        .as_array()
        .expect("stores array")
        .iter()
        .map(|store| {
            (
                store["name"].as_str().unwrap_or_default().to_owned(),
                store["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Verifies `cert` with OpenSSL against the system bundle alone.
fn openssl_verify_with_bundle(cert: &Path) -> Output {
    Command::new("openssl")
        .args([
            "verify",
            "-no-CApath",
            "-no-CAstore",
            "-CAfile",
            SYSTEM_BUNDLE,
        ])
        .arg(cert)
        .output()
        .expect("run openssl; install the openssl package")
}

/// Fetches `url` through the proxy with curl, trusting only the system
/// bundle, and returns curl's exit code and the HTTP status.
fn curl_with_bundle(proxy: &Webwarden, url: &str) -> (Option<i32>, String, String) {
    let mut command = Command::new("curl");
    command
        .args(["-q", "--silent", "--show-error", "--max-time", "30"])
        .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .args(["--cacert", SYSTEM_BUNDLE, "--proxy"])
        .arg(proxy.proxy_url())
        .arg(url)
        .stdin(Stdio::null());
    support::isolate_environment(&mut command, proxy.dir.path());
    let output = command
        .output()
        .expect("run curl; install the curl package");
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Lists Chromium's NSS database under `home` with certutil.
fn certutil_listing(home: &Path) -> String {
    certutil_listing_of(&home.join(".pki/nssdb"))
}

#[test]
fn status_and_uninstall_need_a_ca() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data = data.to_str().unwrap();

    let status = webwarden_ca(work.path(), &["status", "--data-dir", data]);
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    let message = text(&status.stderr);
    assert!(message.contains("no CA certificate at"), "{message}");
    assert!(
        message.contains("`webwarden ca install` creates one"),
        "{message}"
    );

    let uninstall = webwarden_ca(work.path(), &["uninstall", "--data-dir", data]);
    assert_eq!(uninstall.status.code(), Some(1), "{}", describe(&uninstall));
    assert!(
        text(&uninstall.stderr).contains("pass --cert"),
        "{}",
        describe(&uninstall)
    );
    assert!(!work.path().join("data/ca.pem").exists());
}

#[test]
fn uninstall_by_cert_after_data_dir_loss() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    let install = webwarden_ca(
        &home,
        &["install", "--store", "browsers", "--data-dir", data_arg],
    );
    assert!(install.status.success(), "{}", describe(&install));
    let (_, status) = status_json(&home, data_arg);
    let nickname = status["ca"]["nickname"].as_str().unwrap().to_owned();
    assert!(certutil_listing(&home).contains(&nickname));
    let copy = work.path().join("saved-ca.pem");
    std::fs::copy(data.join("ca.pem"), &copy).unwrap();
    std::fs::remove_dir_all(&data).unwrap();

    let copy_arg = copy.to_str().unwrap();
    let uninstall = webwarden_ca(
        &home,
        &["uninstall", "--store", "browsers", "--cert", copy_arg],
    );
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
    let stdout = text(&uninstall.stdout);
    assert_eq!(store_result(&stdout, "Chrome/Chromium"), "removed");
    assert!(stdout.contains(&format!("file: {copy_arg}")), "{stdout}");
    assert!(!certutil_listing(&home).contains(&nickname));
    assert!(!data.exists(), "uninstall created a CA");
}

#[test]
fn system_store_install_then_uninstall() {
    if !running_as_root("system_store_install_then_uninstall") {
        return;
    }
    let _lock = lock_system_store();
    let _cleanup = SystemStoreCleanup::new();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let ca_path = data.join("ca.pem");

    // Create the CA and start the proxy before any store trusts the CA.
    let export = webwarden_ca(&home, &["export", "--data-dir", data_arg]);
    assert!(export.status.success(), "{}", describe(&export));
    let proxy = Webwarden::start_in(
        work,
        &ProxyOptions {
            list: LIST,
            inspection: "all",
            trusted_roots: None,
        },
        &[],
    );
    assert_eq!(proxy.ca_path(), ca_path);
    let (_, before) = status_json(&home, data_arg);
    let id = before["ca"]["sha256"].as_str().unwrap()[..12].to_owned();
    let nickname = format!("webwarden local CA {id}");
    assert_eq!(before["ca"]["nickname"], nickname.as_str());
    let anchor = Path::new(ANCHOR_DIR).join(format!("webwarden-{id}.crt"));

    let verify = openssl_verify_with_bundle(&ca_path);
    assert!(
        !verify.status.success(),
        "trusted before install: {}",
        describe(&verify)
    );
    let (exit, _, error) = curl_with_bundle(&proxy, "https://blocked.test/");
    assert_eq!(
        exit,
        Some(60),
        "curl accepted the leaf before install: {error}"
    );
    assert!(!home.join(".pki").exists());

    // An anchor file without the bundle rebuild is not trusted yet.
    std::fs::copy(&ca_path, &anchor).unwrap();
    let status = webwarden_ca(
        &home,
        &["status", "--data-dir", data_arg, "--store", "system"],
    );
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    let result = store_result(&text(&status.stdout), "system").to_owned();
    assert!(result.starts_with("not trusted yet: "), "{result}");
    assert!(result.contains("update-ca-certificates"), "{result}");

    let install = webwarden_ca(&home, &["install", "--data-dir", data_arg]);
    assert!(install.status.success(), "{}", describe(&install));
    let stdout = text(&install.stdout);
    assert_eq!(store_result(&stdout, "system"), "installed");
    assert_eq!(store_result(&stdout, "Chrome/Chromium"), "installed");
    let mode = std::fs::metadata(&anchor).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);

    let verify = openssl_verify_with_bundle(&ca_path);
    assert!(verify.status.success(), "{}", describe(&verify));
    let (exit, status, error) = curl_with_bundle(&proxy, "https://blocked.test/");
    assert_eq!(exit, Some(0), "curl rejected the proxy's leaf: {error}");
    assert_eq!(status, "403");
    let listing = certutil_listing(&home);
    let entry = listing
        .lines()
        .find(|line| line.starts_with(&nickname))
        .unwrap_or_else(|| panic!("{nickname} is not in the NSS database:\n{listing}"));
    assert!(entry.trim_end().ends_with("C,,"), "{entry}");

    let (code, status) = status_json(&home, data_arg);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["trusted"], true);
    for (name, state) in store_states(&status) {
        assert_eq!(state, "trusted", "store {name}");
    }

    let again = webwarden_ca(&home, &["install", "--data-dir", data_arg]);
    assert!(again.status.success(), "{}", describe(&again));
    let stdout = text(&again.stdout);
    assert_eq!(store_result(&stdout, "system"), "already installed");
    assert_eq!(
        store_result(&stdout, "Chrome/Chromium"),
        "already installed"
    );

    let uninstall = webwarden_ca(&home, &["uninstall", "--data-dir", data_arg]);
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
    let stdout = text(&uninstall.stdout);
    assert_eq!(store_result(&stdout, "system"), "removed");
    assert_eq!(store_result(&stdout, "Chrome/Chromium"), "removed");

    let verify = openssl_verify_with_bundle(&ca_path);
    assert!(
        !verify.status.success(),
        "still trusted: {}",
        describe(&verify)
    );
    let (exit, _, error) = curl_with_bundle(&proxy, "https://blocked.test/");
    assert_eq!(exit, Some(60), "curl still accepts the leaf: {error}");
    let listing = certutil_listing(&home);
    assert!(!listing.contains(&nickname), "{listing}");
    let (code, status) = status_json(&home, data_arg);
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(status["trusted"], false);
    for (name, state) in store_states(&status) {
        assert_eq!(state, "absent", "store {name}");
    }
    assert!(!anchor.exists());
    let left: Vec<_> = webwarden_entries(CERTS_DIR).into_iter().collect();
    assert!(left.is_empty(), "left in {CERTS_DIR}: {left:?}");

    let twice = webwarden_ca(&home, &["uninstall", "--data-dir", data_arg]);
    assert!(twice.status.success(), "{}", describe(&twice));
    assert_eq!(store_result(&text(&twice.stdout), "system"), "not present");
}

#[test]
fn rotation_swaps_the_ca_in_every_trusting_store() {
    if !running_as_root("rotation_swaps_the_ca_in_every_trusting_store") {
        return;
    }
    let _lock = lock_system_store();
    let _cleanup = SystemStoreCleanup::new();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    let install = webwarden_ca(&home, &["install", "--data-dir", data_arg]);
    assert!(install.status.success(), "{}", describe(&install));
    let (_, before) = status_json(&home, data_arg);
    let old_nickname = before["ca"]["nickname"].as_str().unwrap().to_owned();

    let rotate = webwarden_ca(&home, &["rotate", "--data-dir", data_arg]);
    assert!(rotate.status.success(), "{}", describe(&rotate));
    let stdout = text(&rotate.stdout);
    for store in ["system", "Chrome/Chromium"] {
        assert_eq!(
            store_result(&stdout, store),
            "new CA installed, old CA removed",
            "{stdout}"
        );
    }

    let (code, after) = status_json(&home, data_arg);
    assert_eq!(code, Some(0), "{after}");
    let new_nickname = after["ca"]["nickname"].as_str().unwrap().to_owned();
    assert_ne!(new_nickname, old_nickname);
    assert!(openssl_verify_with_bundle(&data.join("ca.pem"))
        .status
        .success());
    let old = openssl_verify_with_bundle(&data.join("ca-previous.pem"));
    assert!(!old.status.success(), "{}", describe(&old));
    let listing = certutil_listing(&home);
    assert!(listing.contains(&new_nickname), "{listing}");
    assert!(!listing.contains(&old_nickname), "{listing}");

    let uninstall = webwarden_ca(&home, &["uninstall", "--data-dir", data_arg]);
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
}

#[test]
fn system_store_without_root_names_command() {
    if !running_as_root("system_store_without_root_names_command") {
        return;
    }
    let _lock = lock_system_store();
    let _cleanup = SystemStoreCleanup::new();
    let before = webwarden_entries(ANCHOR_DIR);

    // The test binary lives under /root, which other users cannot enter, so
    // the unprivileged user runs a copy.
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = work.path().join("webwarden");
    std::fs::copy(env!("CARGO_BIN_EXE_webwarden"), &program).unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let data = home.join("data");
    let data_arg = data.to_str().unwrap();

    let run_as_nobody = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&program)
            .arg("ca")
            .args(args)
            .env("HOME", &home)
            .env_remove("SUDO_USER")
            .stdin(Stdio::null());
        support::isolate_environment(&mut command, &home);
        command.output().expect("run setpriv (package util-linux)")
    };

    let install = run_as_nobody(&["install", "--store", "system", "--data-dir", data_arg]);
    assert_eq!(install.status.code(), Some(1), "{}", describe(&install));
    let result = store_result(&text(&install.stdout), "system").to_owned();
    assert!(
        result.starts_with(
            "FAILED: administrator rights are needed to change /usr/local/share/ca-certificates; \
             run: sudo "
        ),
        "{result}"
    );
    // The command names the certificate, so root reads one file in the
    // user's directory and writes nothing there.
    let expected = format!("webwarden ca install --store system --cert {data_arg}/ca.pem");
    assert!(result.ends_with(&expected), "{result}");
    assert_eq!(webwarden_entries(ANCHOR_DIR), before);

    let status = run_as_nobody(&["status", "--store", "system", "--data-dir", data_arg]);
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    assert_eq!(store_result(&text(&status.stdout), "system"), "not present");

    let uninstall = run_as_nobody(&["uninstall", "--store", "system", "--data-dir", data_arg]);
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
    assert_eq!(
        store_result(&text(&uninstall.stdout), "system"),
        "not present"
    );

    // An anchor file that root wrote before, without a bundle rebuild,
    // needs the same rights to replace, and stays as it was.
    let (_, status) = status_json(&home, data_arg);
    let id = status["ca"]["sha256"].as_str().unwrap()[..12].to_owned();
    let anchor = Path::new(ANCHOR_DIR).join(format!("webwarden-{id}.crt"));
    std::fs::copy(data.join("ca.pem"), &anchor).unwrap();
    let install = run_as_nobody(&["install", "--store", "system", "--data-dir", data_arg]);
    assert_eq!(install.status.code(), Some(1), "{}", describe(&install));
    let result = store_result(&text(&install.stdout), "system").to_owned();
    assert!(
        result.starts_with(
            "FAILED: administrator rights are needed to change /usr/local/share/ca-certificates; \
             run: sudo "
        ),
        "{result}"
    );
    assert!(anchor.exists());

    // With the system store trusting the CA, a rotation without root cannot
    // complete, so it changes nothing: not the CA, not any store.
    let install = webwarden_ca(
        &home,
        &["install", "--store", "system", "--data-dir", data_arg],
    );
    assert!(install.status.success(), "{}", describe(&install));
    let ca_before = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    let entries_before = webwarden_entries(ANCHOR_DIR);
    let rotate = run_as_nobody(&["rotate", "--data-dir", data_arg]);
    assert_eq!(rotate.status.code(), Some(1), "{}", describe(&rotate));
    assert!(
        text(&rotate.stderr).contains("the CA was not replaced"),
        "{}",
        describe(&rotate)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("ca.pem")).unwrap(),
        ca_before
    );
    assert_eq!(webwarden_entries(ANCHOR_DIR), entries_before);
    assert!(!data.join("ca.pem.next").exists());
    assert!(openssl_verify_with_bundle(&data.join("ca.pem"))
        .status
        .success());
}

#[test]
fn chromium_trusts_ca_after_install() {
    if !chromium_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = work.path().join("data");

    // Only the browser stores, so this test needs no root and leaves the
    // system store to the tests above.
    let install = webwarden_ca(
        &home,
        &[
            "install",
            "--store",
            "browsers",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(install.status.success(), "{}", describe(&install));
    let proxy = Webwarden::start_in(
        work,
        &ProxyOptions {
            list: LIST,
            inspection: "all",
            trusted_roots: None,
        },
        &[],
    );

    let url = "https://blocked.test/";
    let mut browser = Browser::new(&home, &proxy);
    let page = browser.run(&["--dump-dom"], url);
    assert!(
        page.stdout.contains("<dd id=\"host\">blocked.test</dd>"),
        "no block page for {url}:\n{}\nstderr:\n{}\nlog:\n{}",
        page.stdout,
        page.stderr,
        proxy.log()
    );
    assert!(
        page.stdout.contains("This site is blocked"),
        "{}",
        page.stdout
    );
    assert!(!page.stderr.contains("ERR_CERT"), "{}", page.stderr);

    // From a HOME without the install, Chromium logs the certificate error
    // (Debian's chromium logs "Page load failed: net::ERR_CERT_..."), so the
    // install above is what made it accept the proxy's certificate.
    let untrusted_home = proxy.dir.path().join("untrusted-home");
    std::fs::create_dir(&untrusted_home).unwrap();
    let mut untrusted = Browser::new(&untrusted_home, &proxy);
    let page = untrusted.run(&["--dump-dom"], url);
    assert!(
        !page.stdout.contains("This site is blocked"),
        "Chromium showed the block page without the CA:\n{}",
        page.stdout
    );
    assert!(
        page.stderr.contains("ERR_CERT_AUTHORITY_INVALID"),
        "Chromium reported no certificate error without the CA:\n{}",
        page.stderr
    );
}

/// A CA certificate of another issuer, from the trust module's test data.
const OTHER_CA: &str = include_str!("../../system/src/trust/testdata/other-ca.pem");

/// Runs `webwarden ca ARGS` with HOME set to `home` and `dir` first in
/// PATH, so the programs in `dir` replace the system's.
fn webwarden_ca_with_path(home: &Path, dir: &Path, args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_owned()];
    dirs.extend(std::env::split_paths(&path));
    let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
    command
        .arg("ca")
        .args(args)
        .env("HOME", home)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env_remove("SUDO_USER")
        .stdin(Stdio::null());
    support::isolate_environment(&mut command, home);
    command.output().expect("webwarden starts")
}

/// Writes an executable `name` to `dir` that prints an error and fails.
fn write_failing_program(dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"{name}: simulated failure\" >&2\nexit 1\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Creates a Firefox profile directory `dir_name` under `home`, listed in
/// profiles.ini as `name`, with an NSS database whose password is
/// `password` (empty for none). Both names are bytes, as in the file.
fn create_firefox_profile(home: &Path, name: &[u8], dir_name: &[u8], password: &str) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;

    let firefox = home.join(".mozilla/firefox");
    let profile = firefox.join(std::ffi::OsStr::from_bytes(dir_name));
    std::fs::create_dir_all(&profile).unwrap();
    let mut ini = b"[Profile0]\nName=".to_vec();
    ini.extend_from_slice(name);
    ini.extend_from_slice(b"\nIsRelative=1\nPath=");
    ini.extend_from_slice(dir_name);
    ini.extend_from_slice(b"\n");
    std::fs::write(firefox.join("profiles.ini"), ini).unwrap();

    let password_file = home.join("nss-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let mut db = std::ffi::OsString::from("sql:");
    db.push(&profile);
    let output = Command::new("certutil")
        .arg("-N")
        .arg("-d")
        .arg(&db)
        .arg(if password.is_empty() {
            "--empty-password"
        } else {
            "-f"
        })
        .args(if password.is_empty() {
            None
        } else {
            Some(&password_file)
        })
        .stdin(Stdio::null())
        .output()
        .expect("run certutil; install the libnss3-tools package");
    assert!(
        output.status.success(),
        "certutil -N: {}",
        describe(&output)
    );
    profile
}

/// Lists the NSS database in `dir` with certutil.
fn certutil_listing_of(dir: &Path) -> String {
    let mut db = std::ffi::OsString::from("sql:");
    db.push(dir);
    let output = Command::new("certutil")
        .arg("-L")
        .arg("-d")
        .arg(&db)
        .output()
        .expect("run certutil; install the libnss3-tools package");
    assert!(
        output.status.success(),
        "certutil -L: {}",
        describe(&output)
    );
    text(&output.stdout)
}

#[test]
fn firefox_primary_password_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let profile = create_firefox_profile(&home, b"locked", b"l.default", "secret");
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    let install = webwarden_ca(
        &home,
        &["install", "--store", "browsers", "--data-dir", data_arg],
    );
    assert_eq!(install.status.code(), Some(1), "{}", describe(&install));
    let stdout = text(&install.stdout);
    assert_eq!(store_result(&stdout, "Chrome/Chromium"), "installed");
    let result = store_result(&stdout, "Firefox profile locked");
    assert!(
        result.starts_with(&format!(
            "FAILED: the NSS database in {} has a password",
            profile.display()
        )),
        "{result}"
    );
    assert!(result.contains("remove the Primary Password"), "{result}");
    let listing = certutil_listing_of(&profile);
    assert!(!listing.contains("webwarden"), "{listing}");

    let (code, status) = status_json(&home, data_arg);
    assert_eq!(code, Some(1), "{status}");
    let states = store_states(&status);
    assert!(
        states.contains(&("Firefox profile locked".to_owned(), "absent".to_owned())),
        "{states:?}"
    );
}

#[test]
fn firefox_profiles_ini_not_utf8_is_checked() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    // Latin-1 bytes, which are not UTF-8, in the name and the directory.
    let profile = create_firefox_profile(&home, b"J\xf6rg", b"caf\xe9.default", "");
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    let install = webwarden_ca(
        &home,
        &["install", "--store", "browsers", "--data-dir", data_arg],
    );
    assert!(install.status.success(), "{}", describe(&install));
    assert_eq!(
        store_result(&text(&install.stdout), "Firefox profile J\u{fffd}rg"),
        "installed"
    );
    let (_, status) = status_json(&home, data_arg);
    let nickname = status["ca"]["nickname"].as_str().unwrap().to_owned();
    assert!(certutil_listing_of(&profile).contains(&nickname));

    // A profiles.ini that cannot be read fails status.
    let snap = home.join("snap/firefox/common/.mozilla/firefox");
    std::fs::create_dir_all(snap.join("profiles.ini")).unwrap();
    let (code, status) = status_json(&home, data_arg);
    assert_eq!(code, Some(1), "{status}");
    let states = store_states(&status);
    assert!(
        states.contains(&("Firefox profiles".to_owned(), "error".to_owned())),
        "{states:?}"
    );
    assert!(
        states.contains(&(
            "Firefox profile J\u{fffd}rg".to_owned(),
            "trusted".to_owned()
        )),
        "{states:?}"
    );
}

#[test]
fn uninstall_keeps_other_certificate_named_like_ca() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let export = webwarden_ca(&home, &["export", "--data-dir", data_arg]);
    assert!(export.status.success(), "{}", describe(&export));
    let (_, status) = status_json(&home, data_arg);
    let nickname = status["ca"]["nickname"].as_str().unwrap().to_owned();

    // Another CA under the nickname of webwarden's CA.
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let other = work.path().join("other-ca.pem");
    std::fs::write(&other, OTHER_CA).unwrap();
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-N", "--empty-password", "-d", &db],
        vec![
            "-A",
            "-d",
            &db,
            "-n",
            &nickname,
            "-t",
            "C,,",
            "-a",
            "-i",
            other.to_str().unwrap(),
        ],
    ] {
        let output = Command::new("certutil").args(&args).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    }

    let uninstall = webwarden_ca(
        &home,
        &["uninstall", "--store", "browsers", "--data-dir", data_arg],
    );
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
    assert_eq!(
        store_result(&text(&uninstall.stdout), "Chrome/Chromium"),
        "not present"
    );
    assert!(certutil_listing(&home).contains(&nickname));

    let install = webwarden_ca(
        &home,
        &["install", "--store", "browsers", "--data-dir", data_arg],
    );
    assert_eq!(install.status.code(), Some(1), "{}", describe(&install));
    let result = store_result(&text(&install.stdout), "Chrome/Chromium").to_owned();
    assert!(
        result.starts_with("FAILED: another certificate (CN=webwarden test other CA)"),
        "{result}"
    );
    assert!(certutil_listing(&home).contains(&nickname));
}

#[test]
fn system_store_refresh_failure_is_undone() {
    if !running_as_root("system_store_refresh_failure_is_undone") {
        return;
    }
    let _lock = lock_system_store();
    let _cleanup = SystemStoreCleanup::new();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let broken = work.path().join("broken-bin");
    std::fs::create_dir(&broken).unwrap();
    write_failing_program(&broken, "update-ca-certificates");
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let system = ["--store", "system", "--data-dir", data_arg];
    let with = |command: &'static str| -> Vec<&str> { [&[command][..], &system[..]].concat() };

    let install = webwarden_ca_with_path(&home, &broken, &with("install"));
    assert_eq!(install.status.code(), Some(1), "{}", describe(&install));
    let result = store_result(&text(&install.stdout), "system").to_owned();
    assert!(result.contains("simulated failure"), "{result}");
    let (_, status) = status_json(&home, data_arg);
    let id = status["ca"]["sha256"].as_str().unwrap()[..12].to_owned();
    let anchor = Path::new(ANCHOR_DIR).join(format!("webwarden-{id}.crt"));
    assert!(
        !anchor.exists(),
        "the failed install left {}",
        anchor.display()
    );

    let install = webwarden_ca(&home, &with("install"));
    assert!(install.status.success(), "{}", describe(&install));
    let uninstall = webwarden_ca_with_path(&home, &broken, &with("uninstall"));
    assert_eq!(uninstall.status.code(), Some(1), "{}", describe(&uninstall));
    assert!(!anchor.exists());

    // The bundle was not rebuilt, so programs still trust the CA.
    assert!(openssl_verify_with_bundle(&data.join("ca.pem"))
        .status
        .success());
    let status = webwarden_ca(&home, &with("status"));
    assert_eq!(status.status.code(), Some(1), "{}", describe(&status));
    let result = store_result(&text(&status.stdout), "system").to_owned();
    assert!(
        result.starts_with("still trusted until the bundle is rebuilt: "),
        "{result}"
    );
    assert!(
        result.contains("update-ca-certificates --fresh"),
        "{result}"
    );

    let uninstall = webwarden_ca(&home, &with("uninstall"));
    assert!(uninstall.status.success(), "{}", describe(&uninstall));
    assert_eq!(store_result(&text(&uninstall.stdout), "system"), "removed");
    let verify = openssl_verify_with_bundle(&data.join("ca.pem"));
    assert!(!verify.status.success(), "{}", describe(&verify));
}
