//! The last good copy of each downloaded list, kept in the data directory
//! so a restarted agent filters with it before any download, even offline.
//!
//! `DATA_DIR/lists/<hash of the URL>.list` contains the bytes and `.json` the
//! metadata. Both are replaced atomically, the list first, and the metadata
//! carries the list's SHA-256, so a copy whose two files do not match is
//! ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

/// The metadata of a cached list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMeta {
    /// The URL it came from.
    pub source: String,
    /// The server's `ETag`.
    pub etag: Option<String>,
    /// The server's `Last-Modified`.
    pub last_modified: Option<String>,
    /// SHA-256 of the bytes, in hex.
    pub sha256: String,
    /// Rules it compiled to.
    pub rules: usize,
    /// Rows skipped as bad.
    pub bad_rows: usize,
    /// When this copy was downloaded, RFC 3339.
    pub fetched_at: String,
    /// When the server last confirmed this copy is current (HTTP 304).
    #[serde(default)]
    pub checked_at: Option<String>,
}

/// A cached list with its metadata.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The list's bytes.
    pub bytes: Vec<u8>,
    /// Its metadata.
    pub meta: CachedMeta,
    /// The detached signature it was verified with, if any.
    pub signature: Option<Vec<u8>>,
}

/// Returns the hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn paths(dir: &Path, url: &Url) -> (PathBuf, PathBuf) {
    let key = &sha256_hex(url.as_str().as_bytes())[..16];
    (
        dir.join(format!("{key}.list")),
        dir.join(format!("{key}.json")),
    )
}

fn signature_path(list_path: &Path) -> PathBuf {
    list_path.with_extension("list.minisig")
}

/// Reads the cached copy of `url`, if there is a whole one.
pub fn load(dir: &Path, url: &Url) -> Option<Cached> {
    let (list_path, meta_path) = paths(dir, url);
    let meta_bytes = std::fs::read(&meta_path).ok()?;
    let meta: CachedMeta = match serde_json::from_slice(&meta_bytes) {
        Ok(meta) => meta,
        Err(err) => {
            tracing::warn!(path = %meta_path.display(), error = %err, "cached list metadata is damaged; ignoring the cached copy");
            return None;
        }
    };
    let bytes = match std::fs::read(&list_path) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::warn!(path = %list_path.display(), error = %err, "cached list cannot be read; ignoring it");
            return None;
        }
    };
    if meta.sha256 != sha256_hex(&bytes) || meta.source != url.as_str() {
        tracing::warn!(path = %list_path.display(), "cached list does not match its metadata; ignoring it");
        return None;
    }
    let signature = std::fs::read(signature_path(&list_path)).ok();
    Some(Cached {
        bytes,
        meta,
        signature,
    })
}

/// Stores a verified copy of `url`.
///
/// # Errors
///
/// Returns the I/O error, naming the file.
pub fn store(dir: &Path, url: &Url, cached: &Cached) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("failed to create {}: {err}", dir.display()))?;
    let (list_path, meta_path) = paths(dir, url);
    match &cached.signature {
        Some(signature) => write_atomically(&signature_path(&list_path), signature)?,
        None => {
            let _ = std::fs::remove_file(signature_path(&list_path));
        }
    }
    write_atomically(&list_path, &cached.bytes)?;
    let meta = serde_json::to_vec_pretty(&cached.meta).expect("metadata serializes");
    write_atomically(&meta_path, &meta)
}

/// Records that the server confirmed the cached copy of `url` at `when`,
/// so a restart can tell how old the confirmation is.
pub fn mark_checked(dir: &Path, url: &Url, when: &str) {
    let (_, meta_path) = paths(dir, url);
    let Ok(bytes) = std::fs::read(&meta_path) else {
        return;
    };
    let Ok(mut meta) = serde_json::from_slice::<CachedMeta>(&bytes) else {
        return;
    };
    meta.checked_at = Some(when.to_owned());
    let text = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
    if let Err(err) = write_atomically(&meta_path, &text) {
        tracing::warn!(error = %err, "failed to record the list check time");
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|err| format!("failed to write {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_copy_loads_and_damaged_copy_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::parse("https://lists.example/company.csv").unwrap();
        assert!(load(dir.path(), &url).is_none());
        let bytes = b"(.*\\.)?bad\\.example,Malware\n".to_vec();
        let cached = Cached {
            meta: CachedMeta {
                source: url.to_string(),
                etag: Some("\"v1\"".to_owned()),
                last_modified: None,
                sha256: sha256_hex(&bytes),
                rules: 1,
                bad_rows: 0,
                fetched_at: "2026-12-04T00:00:00Z".to_owned(),
                checked_at: None,
            },
            bytes,
            signature: None,
        };
        store(dir.path(), &url, &cached).unwrap();
        let loaded = load(dir.path(), &url).unwrap();
        assert_eq!(loaded.meta, cached.meta);

        let (list_path, _) = paths(dir.path(), &url);
        std::fs::write(&list_path, b"other").unwrap();
        assert!(load(dir.path(), &url).is_none());
    }
}
