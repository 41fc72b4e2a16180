//! Loads pages through `webwarden run` with headless Chromium, as a user's
//! browser would: an allowed HTTPS page from a local origin, and the block
//! page of a blocked HTTPS host, of which it also keeps a screenshot in
//! `artifacts/block-page.png`.
//!
//! Needs Debian's `chromium` and `certutil` (package `libnss3-tools`). The
//! test skips when Chromium is missing, unless `WEBWARDEN_REQUIRE_BROWSER`
//! is set, and then it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::chromium::{chromium_available, Browser};
use support::{Origin, ProxyOptions, TestPki, Webwarden, PAGE_PATH};

const CERTUTIL: &str = "certutil";

/// The test list. The allow row lets the local origin through. The last
/// row blocks every other host, so webwarden itself responds to the
/// requests that Chromium makes on its own, and never resolves their hosts.
const LIST: &str = "127\\.0\\.0\\.1,Test origin,allow\n\
    (.*\\.)?blocked\\.test,Gambling\n\
    .*,Outside the test\n";

/// Runs `certutil` with `args` and fails with its output when it fails.
fn certutil(home: &Path, args: &[&str]) {
    let output = Command::new(CERTUTIL)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| {
            panic!("failed to run {CERTUTIL} ({err}); install it with `apt-get install -y libnss3-tools`")
        });
    assert!(
        output.status.success(),
        "certutil {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates an NSS database in `home` that trusts `ca` for TLS servers, as
/// Chromium on Linux reads it from `$HOME/.pki/nssdb`.
fn trust_in_nss(home: &Path, ca: &Path) {
    let db_dir = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db_dir).expect("create the NSS database directory");
    let db = format!("sql:{}", db_dir.display());
    certutil(home, &["-N", "-d", &db, "--empty-password"]);
    let ca = ca.to_str().expect("UTF-8 CA path");
    certutil(
        home,
        &["-A", "-n", "webwarden", "-t", "C,,", "-i", ca, "-d", &db],
    );
}

/// Returns the workspace's `artifacts` directory, which git ignores.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root is two levels above crates/agent")
        .join("artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_page_and_block_page() {
    if !chromium_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = TestPki::new(work.path());
    let origin = Origin::start(Some(pki.server_config(&[b"h2", b"http/1.1"]))).await;
    let proxy = Webwarden::start(&ProxyOptions {
        list: LIST,
        inspection: "all",
        trusted_roots: Some(&pki.ca_path),
    });
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // Chromium trusts only webwarden's CA; webwarden trusts the origin's.
    trust_in_nss(&home, &proxy.ca_path());
    let mut browser = Browser::new(&home, &proxy);

    let allowed_url = format!("https://127.0.0.1:{}{PAGE_PATH}", origin.port());
    let page = tokio::task::block_in_place(|| browser.run(&["--dump-dom"], &allowed_url));
    assert!(
        page.stdout
            .contains("<p id=\"content\">Origin content reached through webwarden</p>"),
        "the allowed page is missing its content:\n{}\nstderr:\n{}\nlog:\n{}",
        page.stdout,
        page.stderr,
        proxy.log()
    );
    let received = origin.request_for(PAGE_PATH);
    let user_agent = received.headers["user-agent"].to_str().unwrap();
    assert!(user_agent.contains("Chrome"), "user agent {user_agent:?}");
    let event = proxy.wait_for_url(&allowed_url).await;
    assert_eq!(event["status"], 200);
    assert_eq!(event["eventCategory"], "AllowedHTTPRequest");
    assert_eq!(event["rule"], "127\\.0\\.0\\.1");

    let blocked_url = "https://www.blocked.test/casino";
    let page = tokio::task::block_in_place(|| browser.run(&["--dump-dom"], blocked_url));
    assert!(
        page.stdout
            .contains("<dd id=\"host\">www.blocked.test</dd>"),
        "the block page does not name the host:\n{}\nstderr:\n{}",
        page.stdout,
        page.stderr
    );
    assert!(
        page.stdout.contains("<dd id=\"category\">Gambling</dd>"),
        "the block page does not name the category:\n{}",
        page.stdout
    );
    assert!(
        page.stdout.contains("This site is blocked"),
        "{}",
        page.stdout
    );
    let event = proxy.wait_for_url(blocked_url).await;
    assert_eq!(event["status"], 403);
    assert_eq!(event["eventName"], "Gambling");

    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("create the artifacts directory");
    let screenshot = artifacts.join("block-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let screenshot_arg = format!("--screenshot={}", screenshot.display());
    tokio::task::block_in_place(|| {
        browser.run(&[&screenshot_arg, "--window-size=1000,700"], blocked_url)
    });
    let png = std::fs::read(&screenshot).expect("Chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG file");
    assert!(
        png.len() > 5_000,
        "screenshot of {} bytes is too small",
        png.len()
    );
    println!("block page screenshot: {}", screenshot.display());

    let other_hosts: Vec<String> = proxy
        .events()
        .iter()
        .filter_map(|e| e["destinationHost"].as_str().map(str::to_owned))
        .filter(|host| host != "127.0.0.1" && !host.ends_with("blocked.test"))
        .collect();
    if !other_hosts.is_empty() {
        println!("Chromium also requested (all blocked by the test list): {other_hosts:?}");
    }
}
