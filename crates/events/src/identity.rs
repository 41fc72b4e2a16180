//! The machine identity stamped on every exported event.
//!
//! The machine ID is derived from the OS one (`/etc/machine-id`, the
//! Windows MachineGuid, the macOS IOPlatformUUID) with an application-specific
//! keyed hash, the scheme systemd documents for `machine-id`. It is an
//! HMAC-SHA256 keyed by the raw ID over a fixed application ID, cut to 128
//! bits. The raw ID never leaves the machine, and other programs that do the
//! same with their own application ID get unrelated values.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// webwarden's application ID, the message of the keyed hash.
const APPLICATION_ID: [u8; 16] = [
    0x5e, 0x0b, 0x9d, 0x27, 0x41, 0xc3, 0x4a, 0x8f, 0x9b, 0x12, 0x6a, 0xd0, 0x77, 0x3e, 0xe5, 0x04,
];

/// The file in the data directory that contains a random machine ID when
/// the OS has none.
const FALLBACK_ID_FILE: &str = "machine-id";

/// The sender of an event: the machine, the user and the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The machine's host name.
    pub host_name: String,
    /// 32 hex digits: the application-specific hash of the OS machine ID.
    pub machine_id: String,
    /// The user the agent runs as.
    pub user_name: String,
    /// The operating system and its version.
    pub os: String,
    /// The agent's version.
    pub agent_version: String,
    /// The version of the loaded lists.
    pub list_version: String,
}

impl Identity {
    /// Reads the host name, machine ID, user and OS of this machine. When
    /// the OS has no machine ID, a random one is kept in `data_dir`.
    pub fn detect(agent_version: &str, data_dir: &Path) -> Identity {
        let machine_id = match machine_uid::get() {
            Ok(raw) if !raw.trim().is_empty() => app_specific_id(&raw),
            Ok(_) | Err(_) => fallback_machine_id(data_dir),
        };
        Identity {
            host_name: whoami::hostname().unwrap_or_else(|_| "unknown".to_owned()),
            machine_id,
            user_name: whoami::username().unwrap_or_else(|_| "unknown".to_owned()),
            os: whoami::distro().unwrap_or_else(|_| std::env::consts::OS.to_owned()),
            agent_version: agent_version.to_owned(),
            list_version: String::new(),
        }
    }

    /// Renders the identity as JSON object members without the braces, the
    /// form the spool writer splices into each record.
    pub(crate) fn json_members(&self) -> String {
        let object = serde_json::to_string(self).expect("identity serializes");
        object[1..object.len() - 1].to_owned()
    }
}

/// Derives the exported machine ID from the raw OS one: HMAC-SHA256 keyed by
/// the raw ID (its 16 bytes when it is 32 hex digits, else its text) over
/// webwarden's application ID, the first 16 bytes in hex.
pub fn app_specific_id(raw: &str) -> String {
    let raw = raw.trim();
    let key = parse_hex16(raw).map_or_else(|| raw.as_bytes().to_vec(), |bytes| bytes.to_vec());
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(&APPLICATION_ID);
    let digest = mac.finalize().into_bytes();
    hex(&digest[..16])
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    let text = text.replace('-', "");
    if text.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Reads or creates the random machine ID kept in the data directory.
fn fallback_machine_id(data_dir: &Path) -> String {
    let path = data_dir.join(FALLBACK_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if parse_hex16(text.trim()).is_some() {
            return app_specific_id(&text);
        }
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let raw = hex(&bytes);
    if let Err(err) = std::fs::write(&path, format!("{raw}\n")) {
        tracing::warn!(path = %path.display(), error = %err, "failed to keep the random machine ID; it changes at each start");
    }
    tracing::warn!(path = %path.display(), "the OS has no machine ID; using a random one kept in the data directory");
    app_specific_id(&raw)
}

/// The identity shared by the spool writer and the sinks; the list version
/// changes when new lists are loaded.
#[derive(Debug, Clone)]
pub struct IdentityHandle {
    inner: Arc<ArcSwap<Stamp>>,
}

/// An identity with its pre-rendered JSON members.
#[derive(Debug)]
pub(crate) struct Stamp {
    pub(crate) identity: Identity,
    pub(crate) json_members: String,
}

impl IdentityHandle {
    /// Wraps an identity.
    pub fn new(identity: Identity) -> IdentityHandle {
        IdentityHandle {
            inner: Arc::new(ArcSwap::from_pointee(Stamp::new(identity))),
        }
    }

    /// Returns the current identity.
    pub fn get(&self) -> Identity {
        self.inner.load().identity.clone()
    }

    /// Sets the list version that later events carry.
    pub fn set_list_version(&self, version: &str) {
        let mut identity = self.get();
        identity.list_version = version.to_owned();
        self.inner.store(Arc::new(Stamp::new(identity)));
    }

    pub(crate) fn stamp(&self) -> arc_swap::Guard<Arc<Stamp>> {
        self.inner.load()
    }
}

impl Stamp {
    fn new(identity: Identity) -> Stamp {
        let json_members = identity.json_members();
        Stamp {
            identity,
            json_members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_hides_the_raw_id() {
        let raw = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        let id = app_specific_id(raw);
        assert_eq!(id.len(), 32);
        assert_ne!(id, raw);
        assert_eq!(id, app_specific_id(&format!("{raw}\n")));
        assert_ne!(id, app_specific_id("3d1219c7c4c5404aaa1f6d2a48adfda5"));
    }

    #[test]
    fn machine_id_matches_hmac_over_the_raw_bytes() {
        // HMAC-SHA256 with a 16-byte key of 0x11 over the application ID,
        // computed independently with Python's hmac module.
        let id = app_specific_id("11111111111111111111111111111111");
        assert_eq!(id, "3b609f749c8d35f094e124ec12c1662b");
    }

    #[test]
    fn fallback_id_is_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = fallback_machine_id(dir.path());
        let second = fallback_machine_id(dir.path());
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
    }

    #[test]
    fn json_members_splice_into_an_object() {
        let identity = Identity {
            host_name: "ws-17".to_owned(),
            machine_id: "00".repeat(16),
            user_name: "alice \"a\"".to_owned(),
            os: "Debian GNU/Linux 12".to_owned(),
            agent_version: "0.1.0".to_owned(),
            list_version: "abc".to_owned(),
        };
        let object = format!("{{{}}}", identity.json_members());
        let value: serde_json::Value = serde_json::from_str(&object).unwrap();
        assert_eq!(value["userName"], "alice \"a\"");
        assert_eq!(value["listVersion"], "abc");
    }
}
