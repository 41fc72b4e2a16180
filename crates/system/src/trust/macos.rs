//! The macOS System keychain, changed through the `security` tool, with
//! trust settings in the admin domain so every user's Safari, Chrome and
//! command-line tools trust the CA.
//!
//! NOTE: written against the `security(1)` manual page and not yet run on
//! macOS; on Linux only the output parsing is tested.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::{
    run_tool, temp_pem_file, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
};
use crate::command::Tool;

/// The macOS keychain and trust tool.
pub const SECURITY: Tool = Tool {
    program: "security",
    provided_by: "macOS (it ships as /usr/bin/security)",
};

/// The keychain whose roots every user of the machine trusts.
pub const SYSTEM_KEYCHAIN: &str = "/Library/Keychains/System.keychain";

/// The System keychain.
#[derive(Debug, Clone)]
pub struct SystemKeychain {
    keychain: PathBuf,
}

impl SystemKeychain {
    /// Creates the store of [`SYSTEM_KEYCHAIN`].
    pub fn new() -> SystemKeychain {
        SystemKeychain {
            keychain: PathBuf::from(SYSTEM_KEYCHAIN),
        }
    }

    fn keychain_arg(&self) -> String {
        self.keychain.display().to_string()
    }

    /// Checks whether the keychain contains a certificate with `ca`'s SHA-1.
    fn contains(&self, ca: &CaCertificate) -> Result<bool, TrustError> {
        let output = run_tool(
            &SECURITY,
            &["find-certificate", "-a", "-Z", &self.keychain_arg()],
        )?;
        let listing = String::from_utf8_lossy(&output.stdout);
        let expected = super::certificate::hex(ca.sha1());
        let found = sha1_hashes(&listing).any(|hash| hash.eq_ignore_ascii_case(&expected));
        Ok(found)
    }
}

impl Default for SystemKeychain {
    fn default() -> SystemKeychain {
        SystemKeychain::new()
    }
}

impl TrustStore for SystemKeychain {
    fn name(&self) -> String {
        "system".to_owned()
    }

    fn location(&self) -> String {
        self.keychain_arg()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::System
    }

    fn install(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        if self.status(ca)?.is_trusted() {
            return Ok(Change::AlreadyInstalled);
        }
        let keychain = self.keychain_arg();
        let file = temp_pem_file(ca)?;
        let path = file.path().as_os_str();
        let args = ["add-trusted-cert", "-d", "-r", "trustRoot", "-k"];
        let args: Vec<&OsStr> = args
            .iter()
            .map(OsStr::new)
            .chain([OsStr::new(&keychain), path])
            .collect();
        run_tool(&SECURITY, &args)?;
        Ok(Change::Installed)
    }

    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        if !self.contains(ca)? {
            return Ok(Change::NotPresent);
        }
        // The trust settings live apart from the certificate. Removing them
        // fails when there are none, which is fine here.
        let file = temp_pem_file(ca)?;
        let path = file.path().as_os_str();
        SECURITY.output_any_status([OsStr::new("remove-trusted-cert"), OsStr::new("-d"), path])?;
        let hash = super::certificate::hex(ca.sha1()).to_ascii_uppercase();
        run_tool(
            &SECURITY,
            &["delete-certificate", "-Z", &hash, &self.keychain_arg()],
        )?;
        Ok(Change::Removed)
    }

    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError> {
        if !self.contains(ca)? {
            return Ok(TrustState::Absent);
        }
        let file = temp_pem_file(ca)?;
        let path = file.path().as_os_str();
        let output =
            SECURITY.output_any_status([OsStr::new("verify-cert"), OsStr::new("-c"), path])?;
        if output.status.success() {
            return Ok(TrustState::Trusted);
        }
        Ok(TrustState::not_trusted_yet(format!(
            "the System keychain contains the CA but security verify-cert rejects it: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Returns the hashes of the `SHA-1 hash: <hex>` lines that
/// `security find-certificate -Z` prints before each certificate.
pub fn sha1_hashes(listing: &str) -> impl Iterator<Item = &str> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("SHA-1 hash:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_certificate_output_yields_sha1_hashes() {
        let listing = "\
SHA-256 hash: 0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0
SHA-1 hash: 0123456789ABCDEF0123456789ABCDEF01234567
keychain: \"/Library/Keychains/System.keychain\"
version: 512
SHA-1 hash: 89ABCDEF0123456789ABCDEF0123456789ABCDEF
keychain: \"/Library/Keychains/System.keychain\"
";
        let hashes: Vec<&str> = sha1_hashes(listing).collect();
        assert_eq!(
            hashes,
            [
                "0123456789ABCDEF0123456789ABCDEF01234567",
                "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
            ]
        );
    }
}
