//! Picks up a new root CA while the agent runs: when `ca.pem` changes on
//! disk, as after `webwarden ca rotate`, the CA is loaded again and the
//! proxy signs new leaves with it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use webwarden_proxy::SharedCa;

use crate::ca_store::CaStore;

/// How often the certificate file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Watches the certificate file of `store` until `stop` turns true, and
/// replaces the CA in `ca` when a changed file loads. A file that does not
/// load is logged and the current CA stays in use.
pub async fn run(store: CaStore, ca: SharedCa, mut stop: watch::Receiver<bool>) {
    let path = store.cert_path();
    let mut seen = stamp(&path);
    loop {
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
