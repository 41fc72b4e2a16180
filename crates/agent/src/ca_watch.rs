//! Picks up a new root CA while the agent runs: when `ca.pem` changes on
//! disk, as after `webwarden ca rotate`, the CA is loaded again and the
//! proxy signs new leaves with it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use webwarden_proxy::{LocalCa, SharedCa};
use webwarden_system::trust::{self, CaCertificate, TrustState};

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
pub async fn run(
    store: CaStore,
    ca: SharedCa,
    mut key_location: String,
    status: StatusWriter,
    mut stop: watch::Receiver<bool>,
) {
    let path = store.cert_path();
    let mut seen = stamp(&path);
    let mut trust_checked: Option<Instant> = None;
    loop {
        if trust_checked.is_none_or(|at| at.elapsed() >= TRUST_INTERVAL) {
            let current = ca.load_full();
            let location = key_location.clone();
            if let Ok(view) =
                tokio::task::spawn_blocking(move || trust_view(&current, location)).await
            {
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
