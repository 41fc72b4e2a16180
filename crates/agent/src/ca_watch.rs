//! Picks up a new root CA while the agent runs: when `ca.pem` changes on
//! disk, as after `webwarden ca rotate`, the CA is loaded again and the
//! proxy signs new leaves with it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use webwarden_proxy::{LocalCa, SharedCa};
use webwarden_system::trust::{self, CaCertificate, StoreKind, TrustState};

use crate::ca_store::CaStore;
use crate::status::{CaView, StatusWriter, TrustStoreView};

/// How often the certificate file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How often the trust stores are checked for the CA, for the status file.
const TRUST_INTERVAL: Duration = Duration::from_secs(300);

/// Watches the certificate file of `store` until `stop` turns true, and
/// replaces the CA in `ca` when a changed file loads. A file that does not
/// load is logged and the current CA stays in use. The trust stores are
/// checked at start, after each change and every [`TRUST_INTERVAL`], and
/// the result goes to the status file.
///
/// With `auto_trust`, each check first adds the CA to the stores that do
/// not trust it yet (see [`add_trust`]).
pub async fn run(
    store: CaStore,
    ca: SharedCa,
    mut key_location: String,
    status: StatusWriter,
    auto_trust: bool,
    mut stop: watch::Receiver<bool>,
) {
    let path = store.cert_path();
    let mut seen = stamp(&path);
    let mut trust_checked: Option<Instant> = None;
    loop {
        if trust_checked.is_none_or(|at| at.elapsed() >= TRUST_INTERVAL) {
            let current = ca.load_full();
            let location = key_location.clone();
            let checked = tokio::task::spawn_blocking(move || {
                if auto_trust {
                    add_trust(&current);
                }
                trust_view(&current, location)
            });
            if let Ok(view) = checked.await {
                status.set_ca(view);
            }
            trust_checked = Some(Instant::now());
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let current = stamp(&path);
        if current == seen {
            continue;
        }
        seen = current;

        let loading = store.clone();
        let loaded = tokio::task::spawn_blocking(move || loading.open()).await;
        match loaded {
            Ok(Ok(opened)) if opened.ca.cert_der() != ca.load().cert_der() => {
                tracing::info!(path = %path.display(), key = %opened.key_location, expires = %opened.ca.not_after(), "loaded the new root CA");
                ca.store(Arc::new(opened.ca));
                key_location = opened.key_location;
                trust_checked = None;
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::error!(path = %path.display(), error = %err, "failed to load the changed root CA; the current one stays in use");
            }
            Err(err) => tracing::error!(error = %err, "the CA loading task failed"),
        }
    }
}

/// Returns the size and modification time of `path`, or `None` when it is
/// missing.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// Adds `ca` to each store that does not trust it: a browser's store
/// directly, the system store by running `webwarden ca trust-user` as root
/// through `sudo -n`, which fails at once unless a sudoers rule allows it.
/// Failures are logged; the status file then shows the store as untrusted.
fn add_trust(ca: &LocalCa) {
    let Ok(certificate) = CaCertificate::from_pem(ca.cert_pem()) else {
        return;
    };
    for store in trust::machine_stores() {
        if store
            .status(&certificate)
            .is_ok_and(|state| state.is_trusted())
        {
            continue;
        }
        let added = match store.kind() {
            StoreKind::System => trust_with_sudo(&certificate),
            StoreKind::Browser => store
                .install(&certificate)
                .map(|_| ())
                .map_err(|err| err.to_string()),
        };
        match added {
            Ok(()) => tracing::info!(store = %store.name(), "added the root CA to a trust store"),
            Err(err) => {
                tracing::warn!(store = %store.name(), error = %err, "failed to add the root CA to a trust store")
            }
        }
    }
}

/// Runs `sudo -n /usr/bin/webwarden ca trust-user` with the certificate on
/// standard input.
fn trust_with_sudo(certificate: &CaCertificate) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let program = crate::ca_cmd::trust_user::SUDO_PROGRAM;
    let mut child = Command::new("sudo")
        .args(["-n", program, "ca", "trust-user"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            format!(
                "failed to run sudo: {err}; install sudo and the webwarden package's sudoers rule"
            )
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(certificate.pem().as_bytes());
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|err| format!("sudo failed: {err}"))?;
    if output.status.success() {
        return written.map_err(|err| format!("failed to pass the certificate to sudo: {err}"));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "sudo -n {program} ca trust-user failed ({}): {}; the webwarden package's /etc/sudoers.d/webwarden allows it",
        output.status,
        stderr.trim()
    ))
}

/// Checks every trust store of this machine for `ca`; a store that cannot
/// be read counts as not trusting it.
fn trust_view(ca: &LocalCa, key_location: String) -> CaView {
    let mut view = CaView {
        not_after: ca.not_after().to_string(),
        key_location,
        ..CaView::default()
    };
    let certificate = match CaCertificate::from_pem(ca.cert_pem()) {
        Ok(certificate) => certificate,
        Err(err) => {
            tracing::warn!(error = %err, "failed to read the CA certificate for the trust check");
            return view;
        }
    };
    view.sha256 = certificate.sha256_hex();
    let mut trusted = true;
    for store in trust::machine_stores() {
        let state = store.status(&certificate);
        trusted &= state.as_ref().is_ok_and(TrustState::is_trusted);
        view.stores.push(TrustStoreView {
            name: store.name(),
            location: store.location(),
            state: match state {
                Ok(state) => state.to_string(),
                Err(err) => format!("error: {err}"),
            },
        });
    }
    view.trusted = trusted;
    view
}
