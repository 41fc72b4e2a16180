//! `webwarden ca rotate` while the agent runs: the proxy signs new leaves
//! with the new CA within seconds, and clients that trust only the old CA
//! reject them.

mod support;

use std::time::{Duration, Instant};

use support::{curl, ProxyOptions, Webwarden};

/// The blocked host whose block page is fetched over intercepted HTTPS;
/// the proxy responds itself, so no request leaves the machine.
const LIST: &str = "(.*\\.)?blocked\\.test,Gambling\n";

/// The bound on waiting for the running agent to use the new CA.
const PICKUP_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn running_agent_signs_with_the_rotated_ca() {
    let proxy = Webwarden::start(&ProxyOptions {
        list: LIST,
        inspection: "all",
        trusted_roots: None,
    });
    let data = proxy.dir.path().join("data");
    let old_ca = proxy.ca_path();
    let previous = data.join("ca-previous.pem");
    let url = "https://blocked.test/";

    let before = curl(
        &proxy.proxy_url(),
        &["--cacert", old_ca.to_str().unwrap()],
        url,
    )
    .await;
    assert_eq!(before.status, 403, "{before:?}");
    let old_pem = proxy.ca_pem();

    // The home directory has no browser databases, and the system store
    // does not trust this CA, so the rotation changes no store.
    let home = proxy.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webwarden"));
    support::isolate_environment(&mut command, &home);
    let output = command
        .args(["ca", "rotate", "--data-dir", data.to_str().unwrap()])
        .env("HOME", &home)
        .output()
        .expect("run webwarden ca rotate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("replaced CA: "), "{stdout}");
    assert!(stdout.contains("left alone"), "{stdout}");
    assert_ne!(proxy.ca_pem(), old_pem);
    assert_eq!(std::fs::read_to_string(&previous).unwrap(), old_pem);

    let new_ca = proxy.ca_path();
    let started = Instant::now();
    loop {
        let after = curl(
            &proxy.proxy_url(),
            &["--cacert", new_ca.to_str().unwrap()],
            url,
        )
        .await;
        if after.status == 403 {
            break;
        }
        assert!(
            started.elapsed() < PICKUP_TIMEOUT,
            "the agent did not use the new CA within {PICKUP_TIMEOUT:?}: {after:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        proxy.log().contains("loaded the new root CA"),
        "{}",
        proxy.log()
    );
    // The status file follows the new CA and lists the trust stores, none
    // of which trusts this test's CA.
    let fingerprint = support::sha256_fingerprint(&proxy.ca_path());
    let started = Instant::now();
    let ca = loop {
        let status: serde_json::Value = std::fs::read(data.join("status.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if status["ca"]["sha256"] == fingerprint.as_str() {
            break status["ca"].clone();
        }
        assert!(
            started.elapsed() < PICKUP_TIMEOUT,
            "the status file shows no CA {fingerprint}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ca["trusted"], false, "{ca}");
    assert!(
        ca["stores"].as_array().is_some_and(|s| !s.is_empty()),
        "{ca}"
    );

    let old_only = curl(
        &proxy.proxy_url(),
        &["--cacert", previous.to_str().unwrap()],
        url,
    )
    .await;
    assert_eq!(old_only.status, 0, "{old_only:?}");
    assert_eq!(
        old_only.exit_code,
        Some(60),
        "curl's code for an untrusted certificate: {old_only:?}"
    );
}
