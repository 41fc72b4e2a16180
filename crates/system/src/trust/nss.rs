//! NSS databases, where Chromium, Chrome and Firefox on Linux look for
//! local root CAs, changed through `certutil` from the libnss3-tools
//! package. Chromium 156 on Debian 12 ignores the system bundle.
//!
//! Chromium and Chrome share `~/.pki/nssdb`, which webwarden creates when
//! it is missing so a browser started later finds the CA. Each Firefox
//! profile has its own database in the profile directory, which Firefox
//! creates on the profile's first start. webwarden never creates files in
//! a profile directory, because `profiles.ini` may name any directory.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;

use sha1::{Digest, Sha1};
use x509_parser::parse_x509_certificate;
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use super::firefox;
use super::tool::shell_word;
use super::{
    run_tool, temp_pem_file, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
    Unavailable,
};
use crate::command::{CommandError, Tool};

/// The NSS command-line tool.
pub const CERTUTIL: Tool = Tool {
    program: "certutil",
    provided_by: "the libnss3-tools package",
};

/// Trust flags for a root CA that issues TLS server certificates: `C` in
/// the SSL field, nothing for S/MIME and code signing.
const TRUST_FLAGS: &str = "C,,";

/// The database file of the SQLite format (`sql:`) that current NSS uses.
const DATABASE_FILE: &str = "cert9.db";

/// The files of a database in the SQLite format. A certutil command that
/// changes a database creates those that are missing (checked with NSS
/// 3.87), so a Firefox profile is changed only when all of them exist.
const DATABASE_FILES: [&str; 3] = [DATABASE_FILE, "key4.db", "pkcs11.txt"];

/// The password file that every certutil command except `-N` gets with
/// `-f`. It is empty, so certutil logs in with the empty password that
/// the browsers set by default, and fails instead of prompting on the
/// terminal when the database has another password. Reading /dev/null
/// needs no file to be created.
const EMPTY_PASSWORD_FILE: &str = "/dev/null";

/// The NSS error certutil reports when the password from `-f` is wrong.
const BAD_PASSWORD_ERROR: &str = "SEC_ERROR_BAD_PASSWORD";

/// Returns the NSS databases of the user whose home directory is `home`:
/// Chromium's, whether it exists yet or not, then one per Firefox profile.
/// A `profiles.ini` that could not be read becomes a store whose
/// operations fail with the reason, so reports show that its profiles
/// were not checked.
pub fn browser_stores(home: &Path) -> Vec<Box<dyn TrustStore>> {
    let mut stores: Vec<Box<dyn TrustStore>> = vec![Box::new(NssDatabase::chromium(
        home.join(".pki").join("nssdb"),
    ))];
    for profile in firefox::profiles(home) {
        stores.push(match profile {
            Ok(profile) => Box::new(NssDatabase::firefox_profile(&profile.name, profile.dir)),
            Err(unreadable) => Box::new(Unavailable {
                name: "Firefox profiles".to_owned(),
                kind: StoreKind::Browser,
                location: unreadable.path.display().to_string(),
                reason: format!(
                    "cannot read the Firefox profile list {}: {}, so its profiles were not \
                     checked; replace it with a regular file or remove it",
                    unreadable.path.display(),
                    unreadable.reason
                ),
            }),
        });
    }
    stores
}

/// The browser that reads a database, which decides whether webwarden may
/// create the database and what to tell the user when it has a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Browser {
    Chromium,
    Firefox,
}

/// One NSS database directory. Install creates Chromium's when it does not
/// exist, but never a Firefox profile's.
#[derive(Debug, Clone)]
pub struct NssDatabase {
    name: String,
    dir: PathBuf,
    browser: Browser,
    certutil: Tool,
}

/// The certificate that a database lists under the nickname of a CA.
enum Entry {
    /// No certificate has the nickname.
    Absent,
    /// The CA has the nickname, with these trust flags.
    Ours {
        /// The trust flags, such as `C,,`.
        flags: String,
        /// The `-n` argument that selects the CA and no other certificate:
        /// the nickname, or a PKCS #11 URI when other certificates share
        /// the CA's subject.
        selector: String,
    },
    /// Only other certificates have the nickname.
    Other {
        /// The subject of the certificate named with the nickname.
        subject: String,
    },
    /// The CA and other certificates with its subject all have the
    /// nickname, so the listing does not show which trust flags are the
    /// CA's.
    Shared {
        /// The PKCS #11 URI that selects the CA.
        selector: String,
    },
    /// Other certificates share the CA's subject, and the key type of the
    /// CA gives no NSS key ID to tell whether the nickname is the CA's.
    Unknown,
}

impl NssDatabase {
    /// Creates the store of the database that Chromium and Chrome share,
    /// in `dir` (`~/.pki/nssdb`).
    pub fn chromium(dir: PathBuf) -> NssDatabase {
        NssDatabase {
            name: "Chrome/Chromium".to_owned(),
            dir,
            browser: Browser::Chromium,
            certutil: CERTUTIL,
        }
    }

    /// Creates the store of the database in the Firefox profile directory
    /// `dir`, named `Firefox profile <profile_name>` in reports.
    pub fn firefox_profile(profile_name: &str, dir: PathBuf) -> NssDatabase {
        NssDatabase {
            name: format!("Firefox profile {profile_name}"),
            dir,
            browser: Browser::Firefox,
            certutil: CERTUTIL,
        }
    }

    /// Returns the directory that contains `cert9.db` and `key4.db`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exists(&self) -> bool {
        match self.browser {
            Browser::Chromium => self.dir.join(DATABASE_FILE).is_file(),
            Browser::Firefox => self.missing_files().is_empty(),
        }
    }

    fn missing_files(&self) -> Vec<&'static str> {
        DATABASE_FILES
            .into_iter()
            .filter(|file| !self.dir.join(file).is_file())
            .collect()
    }

    /// Creates Chromium's database when it does not exist, and fails for a
    /// Firefox profile without a complete one.
    fn ensure_exists(&self) -> Result<(), TrustError> {
        if self.exists() {
            return Ok(());
        }
        match self.browser {
            Browser::Chromium => self.create(),
            Browser::Firefox => Err(TrustError::Unavailable(format!(
                "{} has no complete NSS database ({} missing), and webwarden creates none in a \
                 Firefox profile; start Firefox with this profile once, then run install again",
                self.dir.display(),
                self.missing_files().join(", ")
            ))),
        }
    }

    /// Returns the `-d` argument. The directory is kept as bytes, because
    /// a profile directory may have a name that is not UTF-8.
    fn database_arg(&self) -> OsString {
        let mut arg = OsString::from("sql:");
        arg.push(&self.dir);
        arg
    }

    /// Runs `certutil COMMAND -d sql:DIR -f /dev/null ARGS`.
    fn certutil<S: AsRef<OsStr>>(&self, command: &str, args: &[S]) -> Result<Output, CommandError> {
        let db = self.database_arg();
        let mut all_args: Vec<&OsStr> = vec![
            command.as_ref(),
            "-d".as_ref(),
            &db,
            "-f".as_ref(),
            EMPTY_PASSWORD_FILE.as_ref(),
        ];
        all_args.extend(args.iter().map(AsRef::as_ref));
        run_tool(&self.certutil, &all_args)
    }

    /// Creates an empty database with an empty password, as the browsers
    /// do on first start.
    fn create(&self) -> Result<(), TrustError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| TrustError::io("create", &self.dir, &self.location(), source))?;
        run_tool(
            &self.certutil,
            &[
                "-N".as_ref(),
                "--empty-password".as_ref(),
                "-d".as_ref(),
                self.database_arg().as_os_str(),
            ],
        )?;
        Ok(())
    }

    /// Checks whether the database has a password other than the empty
    /// one. Listing the private keys needs a login, which fails with the
    /// empty password only then.
    fn has_password(&self) -> Result<bool, TrustError> {
        match self.certutil::<&str>("-K", &[]) {
            Ok(_) => Ok(false),
            // A database without keys fails with "no keys found".
            Err(CommandError::Failed { output, .. }) => Ok(output.contains(BAD_PASSWORD_ERROR)),
            Err(err) => Err(err.into()),
        }
    }

    fn password_error(&self) -> TrustError {
        TrustError::PasswordProtected {
            database: self.dir.clone(),
            fix: self.password_fix(),
        }
    }

    /// Returns what the user can do about a database with a password.
    fn password_fix(&self) -> String {
        match self.browser {
            Browser::Firefox => "remove the Primary Password (Firefox Settings > Privacy & \
                                 Security > Use a Primary Password) and run install again, or \
                                 import the CA certificate in Firefox (Settings > Privacy & \
                                 Security > View Certificates > Authorities > Import)"
                .to_owned(),
            Browser::Chromium => format!(
                "remove the password with `certutil -W -d {}` (enter the current password, \
                 then an empty one) and run install again, or import the CA certificate in \
                 chrome://settings/certificates",
                shell_word(&self.database_arg().to_string_lossy())
            ),
        }
    }

    /// Converts a failed certutil command into an error, which is
    /// [`TrustError::PasswordProtected`] when the password was wrong.
    fn command_error(&self, err: CommandError) -> TrustError {
        match &err {
            CommandError::Failed { output, .. } if output.contains(BAD_PASSWORD_ERROR) => {
                self.password_error()
            }
            _ => err.into(),
        }
    }

    /// Returns the trust flags of every entry named `nickname`.
    fn trust_flags(&self, nickname: &str) -> Result<Vec<String>, TrustError> {
        let output = self.certutil::<&str>("-L", &[])?;
        let listing = String::from_utf8_lossy(&output.stdout);
        Ok(parse_listing(&listing)
            .into_iter()
            .filter(|(name, _)| name == nickname)
            .map(|(_, flags)| flags)
            .collect())
    }

    /// Returns the DER form of the certificates that `certutil -L -n`
    /// prints for `selector`, which are the selected certificate and every
    /// other certificate with its subject. Returns `None` when nothing is
    /// selected.
    fn subject_certificates(&self, selector: &str) -> Result<Option<Vec<Vec<u8>>>, TrustError> {
        match self.certutil("-L", &["-n", selector, "-a"]) {
            Ok(output) => Ok(Some(
                Pem::iter_from_buffer(&output.stdout)
                    .filter_map(Result::ok)
                    .map(|block| block.contents)
                    .collect(),
            )),
            Err(CommandError::Failed { output, .. })
                if output.to_ascii_lowercase().contains(NOT_FOUND_MESSAGE) =>
            {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Finds the certificate that the database lists under `ca`'s nickname.
    ///
    /// `certutil -L -n` prints every certificate with the subject of the
    /// named one, and webwarden's CAs keep their subject across rotations.
    /// So when other certificates share the CA's subject, a PKCS #11 URI
    /// with the CA's key ID checks whether the nickname is the CA's.
    fn lookup(&self, ca: &CaCertificate) -> Result<Entry, TrustError> {
        let nickname = ca.nickname();
        let flags = self.trust_flags(&nickname)?;
        if flags.is_empty() {
            return Ok(Entry::Absent);
        }

        let certificates = self.subject_certificates(&nickname)?.unwrap_or_default();
        if !certificates.iter().any(|der| der == ca.der()) {
            let subject = certificates
                .first()
                .and_then(|der| parse_x509_certificate(der).ok())
                .map_or_else(
                    || "an unknown subject".to_owned(),
                    |(_, cert)| cert.subject().to_string(),
                );
            return Ok(Entry::Other { subject });
        }
        if certificates.len() == 1 && flags.len() == 1 {
            return Ok(Entry::Ours {
                flags: flags[0].clone(),
                selector: nickname,
            });
        }

        let Some(selector) = certificate_uri(ca) else {
            return Ok(Entry::Unknown);
        };
        // NOTE: PKCS #11 URIs as certutil -n values were checked with NSS
        // 3.87. An NSS without them finds nothing, so the nickname reads as
        // another certificate's when one shares the CA's subject.
        if self.subject_certificates(&selector)?.is_none() {
            return Ok(Entry::Other {
                subject: ca.subject().to_owned(),
            });
        }
        if flags.len() > 1 {
            return Ok(Entry::Shared { selector });
        }
        Ok(Entry::Ours {
            flags: flags[0].clone(),
            selector,
        })
    }

    /// Adds `ca` with the trust flags for a TLS root. When certutil fails,
    /// any entry it left is removed again, because `certutil -A` imports
    /// the certificate before it logs in to set the trust flags.
    fn add(&self, ca: &CaCertificate) -> Result<(), TrustError> {
        let file = temp_pem_file(ca)?;
        let nickname = ca.nickname();
        let args: [&OsStr; 7] = [
            "-n".as_ref(),
            nickname.as_ref(),
            "-t".as_ref(),
            TRUST_FLAGS.as_ref(),
            "-a".as_ref(),
            "-i".as_ref(),
            file.path().as_os_str(),
        ];
        if let Err(err) = self.certutil("-A", &args) {
            let err = self.command_error(err);
            return Err(self.remove_after_failure(ca, err));
        }
        Ok(())
    }

    /// Removes `ca`, which this install added, after `err` stopped the
    /// install, and returns `err`, extended when the removal failed too.
    fn remove_after_failure(&self, ca: &CaCertificate, err: TrustError) -> TrustError {
        match self.delete(ca) {
            Ok(_) => err,
            Err(removal_err) => {
                tracing::warn!(
                    database = %self.dir.display(),
                    error = %removal_err,
                    "failed to remove a CA certificate that an install left without trust"
                );
                TrustError::Unexpected(format!(
                    "{err}; the certificate may be left in {} without trust flags, because \
                     removing it failed: {removal_err}",
                    self.dir.display()
                ))
            }
        }
    }

    /// Sets the trust flags of the certificate that `selector` selects to
    /// those of a TLS root.
    fn repair_trust(&self, selector: &str) -> Result<(), TrustError> {
        self.certutil("-M", &["-n", selector, "-t", TRUST_FLAGS])
            .map_err(|err| self.command_error(err))?;
        Ok(())
    }

    /// Deletes `ca` from the database, and no other certificate, and
    /// returns whether it was there.
    fn delete(&self, ca: &CaCertificate) -> Result<bool, TrustError> {
        let selector = match self.lookup(ca)? {
            Entry::Absent | Entry::Other { .. } => return Ok(false),
            Entry::Ours { selector, .. } | Entry::Shared { selector } => selector,
            Entry::Unknown => return Err(self.unknown_error(ca)),
        };
        self.certutil("-D", &["-n", &selector])?;
        if matches!(self.lookup(ca)?, Entry::Ours { .. } | Entry::Shared { .. }) {
            return Err(TrustError::Unexpected(format!(
                "certutil -D did not delete {:?} from {}",
                ca.nickname(),
                self.dir.display()
            )));
        }
        Ok(true)
    }

    fn shared_error(&self, ca: &CaCertificate) -> TrustError {
        TrustError::Unexpected(format!(
            "several certificates with the subject {} are named {:?} in {}, so the listing \
             does not show the CA's trust flags; run uninstall, then install",
            ca.subject(),
            ca.nickname(),
            self.dir.display()
        ))
    }

    fn unknown_error(&self, ca: &CaCertificate) -> TrustError {
        TrustError::Unexpected(format!(
            "{} contains other certificates with the subject {}, and webwarden cannot tell \
             them apart from the CA for its key type; change the CA in the browser's \
             certificate manager instead",
            self.dir.display(),
            ca.subject()
        ))
    }
}

impl TrustStore for NssDatabase {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Browser
    }

    fn install(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        self.ensure_exists()?;
        let repair = match self.lookup(ca)? {
            Entry::Ours { flags, .. } if trusts_tls_servers(&flags) => {
                return Ok(Change::AlreadyInstalled)
            }
            Entry::Ours { selector, .. } => Some(selector),
            Entry::Absent => None,
            Entry::Other { subject } => {
                return Err(TrustError::Unexpected(format!(
                    "another certificate ({subject}) is named {:?} in {}, so certutil cannot \
                     add the CA under that name; delete that certificate with `certutil -D \
                     -d {} -n {}` if it is not needed, then run install again",
                    ca.nickname(),
                    self.dir.display(),
                    shell_word(&self.database_arg().to_string_lossy()),
                    shell_word(&ca.nickname())
                )))
            }
            Entry::Shared { .. } => return Err(self.shared_error(ca)),
            Entry::Unknown => return Err(self.unknown_error(ca)),
        };
        // Setting trust flags needs a login, so a database with a password
        // is reported before anything is added.
        if self.has_password()? {
            return Err(self.password_error());
        }
        let added = match repair {
            Some(selector) => {
                self.repair_trust(&selector)?;
                false
            }
            None => {
                self.add(ca)?;
                true
            }
        };
        if !matches!(self.lookup(ca)?, Entry::Ours { flags, .. } if trusts_tls_servers(&flags)) {
            let err = TrustError::Unexpected(format!(
                "certutil added {:?} to {} but does not list it as a trusted CA",
                ca.nickname(),
                self.dir.display()
            ));
            return Err(if added {
                self.remove_after_failure(ca, err)
            } else {
                err
            });
        }
        Ok(Change::Installed)
    }

    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        if !self.exists() {
            return Ok(Change::NotPresent);
        }
        Ok(if self.delete(ca)? {
            Change::Removed
        } else {
            Change::NotPresent
        })
    }

    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError> {
        if !self.exists() {
            return Ok(TrustState::Absent);
        }
        match self.lookup(ca)? {
            Entry::Absent => Ok(TrustState::Absent),
            Entry::Other { subject } => Ok(TrustState::not_trusted_yet(format!(
                "another certificate ({subject}) is named {:?}",
                ca.nickname()
            ))),
            Entry::Ours { flags, .. } if trusts_tls_servers(&flags) => Ok(TrustState::Trusted),
            Entry::Ours { flags, .. } => {
                let mut reason = format!(
                    "the certificate is listed with trust flags {flags:?}, without C for TLS"
                );
                if self.has_password()? {
                    reason.push_str(&format!(
                        ", and the database has a password, so install cannot set them; {}",
                        self.password_fix()
                    ));
                }
                Ok(TrustState::not_trusted_yet(reason))
            }
            Entry::Shared { .. } => Ok(TrustState::Incomplete(format!(
                "trust unknown: {}",
                self.shared_error(ca)
            ))),
            Entry::Unknown => Ok(TrustState::Incomplete(format!(
                "trust unknown: {}",
                self.unknown_error(ca)
            ))),
        }
    }
}

/// The start of the messages certutil prints when `-n` selects no
/// certificate, in lower case: `Could not find cert: ...` from `-L` and
/// `could not find certificate named ...` from `-D` (NSS 3.87).
const NOT_FOUND_MESSAGE: &str = "could not find cert";

/// Returns a PKCS #11 URI (RFC 7512) that selects `ca` by its nickname and
/// by the key ID (`CKA_ID`) that NSS gives an imported certificate, or
/// `None` for a key type without a known key ID.
fn certificate_uri(ca: &CaCertificate) -> Option<String> {
    let id = nss_key_id(ca.der())?;
    // Every byte of the binary ID is encoded, as RFC 7512 suggests.
    let id: String = id.iter().map(|byte| format!("%{byte:02X}")).collect();
    Some(format!(
        "pkcs11:type=cert;object={};id={id}",
        percent_encode(ca.nickname().as_bytes()),
    ))
}

/// Returns the key ID that NSS stores with a certificate it imports: the
/// SHA-1 hash of the RSA modulus without leading zero bytes, or of the
/// EC public point. NSS uses a value of at most 20 bytes as it is.
///
/// NOTE: derived from NSS's key ID rule for imported certificates and
/// checked with NSS 3.87 for P-256 and RSA keys. Other key types return
/// `None`.
fn nss_key_id(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = parse_x509_certificate(der).ok()?;
    let key = cert.public_key().parsed().ok()?;
    let value = match &key {
        PublicKey::RSA(rsa) => {
            let start = rsa.modulus.iter().position(|&b| b != 0)?;
            &rsa.modulus[start..]
        }
        PublicKey::EC(point) => point.data(),
        _ => return None,
    };
    if value.len() <= 20 {
        return Some(value.to_vec());
    }
    Some(Sha1::digest(value).to_vec())
}

/// Percent-encodes every byte except the unreserved characters of RFC
/// 3986.
fn percent_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    text
}

/// Parses the table `certutil -L` prints into (nickname, trust flags)
/// pairs. The flags are the last column, three comma-separated fields
/// (`C,,`), and the nickname is everything before it.
pub fn parse_listing(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let (name, flags) = line.trim_end().rsplit_once(char::is_whitespace)?;
            let name = name.trim();
            let is_flags = flags.matches(',').count() == 2;
            (is_flags && !name.is_empty()).then(|| (name.to_owned(), flags.to_owned()))
        })
        .collect()
}

/// Checks whether the SSL field of `flags` (before the first comma)
/// contains `C`, the trusted-CA flag for TLS servers.
fn trusts_tls_servers(flags: &str) -> bool {
    flags.split(',').next().is_some_and(|ssl| ssl.contains('C'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::certificate::tests::TEST_CA;

    const LISTING: &str = "
Certificate Nickname                                         Trust Attributes
                                                             SSL,S/MIME,JAR/XPI

webwarden local CA 0123456789ab                              C,,  
Some Other CA                                                CT,C,C
webwarden local CA ba9876543210                              ,,   
";

    #[test]
    fn listing_parses_nicknames_with_spaces() {
        assert_eq!(
            parse_listing(LISTING),
            [
                ("webwarden local CA 0123456789ab", "C,,"),
                ("Some Other CA", "CT,C,C"),
                ("webwarden local CA ba9876543210", ",,"),
            ]
            .map(|(n, f)| (n.to_owned(), f.to_owned()))
        );
        assert!(trusts_tls_servers("C,,"));
        assert!(trusts_tls_servers("CT,C,C"));
        assert!(!trusts_tls_servers(",C,"));
        assert!(!trusts_tls_servers("c,,"));
    }

    #[test]
    fn certificate_uri_has_nss_key_id() {
        // The expected IDs are `openssl x509 -pubkey` of the test files
        // hashed with sha1sum: the EC point, and the RSA modulus without
        // its leading zero byte.
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        assert_eq!(
            certificate_uri(&ca).unwrap(),
            "pkcs11:type=cert;object=webwarden%20local%20CA%201237264ceeff;\
             id=%92%FA%14%1B%BC%61%88%91%72%F0%BD%03%34%B9%F5%A8%EC%6E%33%3F"
        );
        let rsa = CaCertificate::from_pem(SAME_SUBJECT_CA).unwrap();
        let id = nss_key_id(rsa.der()).unwrap();
        assert_eq!(
            crate::trust::certificate::hex(&id),
            "6bb9439e721c0e4342d7595bcc32f1d9384e1fa5"
        );
    }

    #[test]
    fn chromium_database_listed_before_firefox_profiles() {
        let home = tempfile::tempdir().unwrap();
        let firefox = home.path().join(".mozilla/firefox");
        std::fs::create_dir_all(firefox.join("p.default")).unwrap();
        std::fs::write(
            firefox.join("profiles.ini"),
            "[Profile0]\nName=default\nIsRelative=1\nPath=p.default\n",
        )
        .unwrap();
        let stores = browser_stores(home.path());
        let names: Vec<String> = stores.iter().map(|store| store.name()).collect();
        assert_eq!(names, ["Chrome/Chromium", "Firefox profile default"]);
        let locations: Vec<String> = stores.iter().map(|store| store.location()).collect();
        assert_eq!(
            locations,
            [
                home.path().join(".pki/nssdb").display().to_string(),
                firefox.join("p.default").display().to_string()
            ]
        );
    }

    #[test]
    fn unreadable_profiles_ini_is_failed_store() {
        let home = tempfile::tempdir().unwrap();
        let firefox = home.path().join(".mozilla/firefox");
        let profiles_ini = firefox.join("profiles.ini");
        std::fs::create_dir_all(&profiles_ini).unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();

        let stores = browser_stores(home.path());
        assert_eq!(stores.len(), 2);
        let store = &stores[1];
        assert_eq!(store.name(), "Firefox profiles");
        assert_eq!(store.kind(), StoreKind::Browser);
        assert_eq!(store.location(), profiles_ini.display().to_string());
        let err = store.status(&ca).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot read the Firefox profile list {}: it is a directory, not a regular \
                 file, so its profiles were not checked; replace it with a regular file or \
                 remove it",
                profiles_ini.display()
            )
        );
        assert!(store.install(&ca).is_err());
        assert!(store.uninstall(&ca).is_err());
    }

    /// Returns the store of Chromium's database under `home`.
    fn chromium_database(home: &Path) -> NssDatabase {
        NssDatabase::chromium(home.join(".pki/nssdb"))
    }

    /// Returns the stores of the Firefox profiles under `home`.
    fn firefox_databases(home: &Path) -> Vec<NssDatabase> {
        firefox::profiles(home)
            .into_iter()
            .map(|profile| {
                let profile = profile.unwrap();
                NssDatabase::firefox_profile(&profile.name, profile.dir)
            })
            .collect()
    }

    use std::io::Write;

    /// Returns whether certutil is installed, printing why the test is
    /// skipped when it is not.
    fn certutil_available() -> bool {
        if CERTUTIL.is_installed() {
            return true;
        }
        // libtest shows direct writes to the stderr handle even for passing
        // tests, unlike `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "skipping: certutil is not installed (apt-get install libnss3-tools)"
        );
        false
    }

    #[test]
    fn nss_install_status_uninstall_round_trip() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let database = chromium_database(home.path());
        assert_eq!(database.status(&ca).unwrap(), TrustState::Absent);
        assert_eq!(database.uninstall(&ca).unwrap(), Change::NotPresent);

        assert_eq!(database.install(&ca).unwrap(), Change::Installed);
        assert!(home.path().join(".pki/nssdb/cert9.db").is_file());
        assert_eq!(database.status(&ca).unwrap(), TrustState::Trusted);
        assert_eq!(database.install(&ca).unwrap(), Change::AlreadyInstalled);

        let flags = database.trust_flags(&ca.nickname()).unwrap();
        assert_eq!(flags, ["C,,"]);

        assert_eq!(database.uninstall(&ca).unwrap(), Change::Removed);
        assert_eq!(database.status(&ca).unwrap(), TrustState::Absent);
        assert!(database.trust_flags(&ca.nickname()).unwrap().is_empty());
        assert_eq!(database.uninstall(&ca).unwrap(), Change::NotPresent);
    }

    #[test]
    fn nss_entry_without_trust_is_repaired() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let database = chromium_database(home.path());
        database.create().unwrap();
        let pem_path = home.path().join("ca.pem");
        std::fs::write(&pem_path, ca.pem()).unwrap();
        let db = database.database_arg().into_string().unwrap();
        let input = pem_path.to_str().unwrap();
        let nickname = ca.nickname();
        CERTUTIL
            .run([
                "-A", "-d", &db, "-n", &nickname, "-t", ",,", "-a", "-i", input,
            ])
            .unwrap();

        let state = database.status(&ca).unwrap();
        let TrustState::Incomplete(reason) = state else {
            panic!("expected incomplete, got {state:?}");
        };
        assert!(reason.contains("without C"), "{reason}");
        assert_eq!(database.install(&ca).unwrap(), Change::Installed);
        assert_eq!(database.status(&ca).unwrap(), TrustState::Trusted);
    }

    #[test]
    fn firefox_profile_database_is_used() {
        use std::os::unix::ffi::OsStrExt;

        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        // A directory name in Latin-1, which is not UTF-8.
        let profile = home
            .path()
            .join(".mozilla/firefox")
            .join(OsStr::from_bytes(b"caf\xe9.default-release"));
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(
            home.path().join(".mozilla/firefox/profiles.ini"),
            b"[Profile0]\nName=default-release\nIsRelative=1\nPath=caf\xe9.default-release\n",
        )
        .unwrap();
        // The database Firefox creates on the first start of a profile.
        let mut db = OsString::from("sql:");
        db.push(&profile);
        CERTUTIL
            .run([
                "-N".as_ref(),
                "--empty-password".as_ref(),
                "-d".as_ref(),
                db.as_os_str(),
            ])
            .unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let firefox = firefox_databases(home.path()).remove(0);
        assert_eq!(firefox.dir(), profile);
        assert_eq!(firefox.install(&ca).unwrap(), Change::Installed);
        assert_eq!(firefox.status(&ca).unwrap(), TrustState::Trusted);
        assert_eq!(firefox.uninstall(&ca).unwrap(), Change::Removed);
    }

    #[test]
    fn firefox_profile_database_is_never_created() {
        let home = tempfile::tempdir().unwrap();
        let firefox = home.path().join(".mozilla/firefox");
        let relative = firefox.join("new.default");
        let outside = home.path().join("Documents");
        std::fs::create_dir_all(&relative).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A profile that Firefox has not started yet, and a directory
        // outside the Firefox directory that only has part of a database.
        std::fs::write(outside.join("cert9.db"), "").unwrap();
        std::fs::write(
            firefox.join("profiles.ini"),
            format!(
                "[Profile0]\nName=new\nIsRelative=1\nPath=new.default\n\
                 [Profile1]\nName=outside\nIsRelative=0\nPath={}\n",
                outside.display()
            ),
        )
        .unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let databases = firefox_databases(home.path());
        assert_eq!(databases.len(), 2);

        for (database, files_before) in databases.iter().zip([0, 1]) {
            let err = database.install(&ca).unwrap_err();
            assert!(matches!(err, TrustError::Unavailable(_)), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains("start Firefox with this profile"),
                "{message}"
            );
            assert_eq!(database.status(&ca).unwrap(), TrustState::Absent);
            assert_eq!(database.uninstall(&ca).unwrap(), Change::NotPresent);
            let files = std::fs::read_dir(database.dir()).unwrap().count();
            assert_eq!(
                files,
                files_before,
                "files created in {}",
                database.dir().display()
            );
        }
    }

    /// Returns the store of a Firefox profile under `home` whose NSS
    /// database has the password `secret`, as with a Primary Password.
    fn firefox_profile_with_password(home: &Path) -> NssDatabase {
        let firefox = home.join(".mozilla/firefox");
        let profile = firefox.join("p.default-release");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(
            firefox.join("profiles.ini"),
            "[Profile0]\nName=default-release\nIsRelative=1\nPath=p.default-release\n",
        )
        .unwrap();
        let password_file = home.join("password");
        std::fs::write(&password_file, "secret\n").unwrap();
        let db = format!("sql:{}", profile.display());
        CERTUTIL
            .run([
                "-N".as_ref(),
                "-d".as_ref(),
                db.as_ref(),
                "-f".as_ref(),
                password_file.as_os_str(),
            ])
            .unwrap();
        firefox_databases(home).remove(0)
    }

    /// Runs `operation` on another thread and fails the test when it takes
    /// longer than 60 seconds, as a certutil waiting for a password would.
    fn within_a_minute<T: Send + 'static>(operation: impl FnOnce() -> T + Send + 'static) -> T {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(operation());
        });
        receiver
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the operation did not finish within 60 seconds")
    }

    #[test]
    fn password_database_install_leaves_nothing() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let database = firefox_profile_with_password(home.path());
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();

        let (store, certificate) = (database.clone(), ca.clone());
        let err = within_a_minute(move || store.install(&certificate)).unwrap_err();
        assert!(
            matches!(err, TrustError::PasswordProtected { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&database.dir().display().to_string()),
            "{message}"
        );
        assert!(message.contains("Primary Password"), "{message}");
        assert!(database.trust_flags(&ca.nickname()).unwrap().is_empty());
        assert_eq!(database.status(&ca).unwrap(), TrustState::Absent);
    }

    #[test]
    fn password_database_untrusted_entry_is_explained() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let database = firefox_profile_with_password(home.path());
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        // An entry without trust flags, as `certutil -A` leaves behind when
        // it cannot log in to set them.
        let pem_path = home.path().join("ca.pem");
        std::fs::write(&pem_path, ca.pem()).unwrap();
        let password_file = home.path().join("password");
        let nickname = ca.nickname();
        CERTUTIL
            .run([
                "-A".as_ref(),
                "-d".as_ref(),
                database.database_arg().as_os_str(),
                "-n".as_ref(),
                nickname.as_ref(),
                "-t".as_ref(),
                ",,".as_ref(),
                "-a".as_ref(),
                "-i".as_ref(),
                pem_path.as_os_str(),
                "-f".as_ref(),
                password_file.as_os_str(),
            ])
            .unwrap();

        let state = database.status(&ca).unwrap();
        let TrustState::Incomplete(reason) = state else {
            panic!("expected incomplete, got {state:?}");
        };
        assert!(reason.contains("without C"), "{reason}");
        assert!(reason.contains("Primary Password"), "{reason}");

        let (store, certificate) = (database.clone(), ca.clone());
        let err = within_a_minute(move || store.install(&certificate)).unwrap_err();
        assert!(
            matches!(err, TrustError::PasswordProtected { .. }),
            "{err:?}"
        );

        let (store, certificate) = (database.clone(), ca.clone());
        let change = within_a_minute(move || store.uninstall(&certificate)).unwrap();
        assert_eq!(change, Change::Removed);
        assert!(database.trust_flags(&nickname).unwrap().is_empty());
    }

    /// A CA certificate (P-256, `CN=webwarden test other CA`) made with
    /// OpenSSL 3.0 for these tests, valid until 2036.
    const OTHER_CA: &str = include_str!("testdata/other-ca.pem");

    /// A CA certificate with the subject of [`TEST_CA`] but an RSA key, as
    /// a rotated CA has the subject of the one it replaces. Made with
    /// OpenSSL 3.0 for these tests, valid until 2036.
    const SAME_SUBJECT_CA: &str = include_str!("testdata/same-subject-ca.pem");

    /// Adds the certificate `pem` to `database` under `nickname` with
    /// trust `flags`, as another program would.
    fn add_with_certutil(database: &NssDatabase, pem: &str, nickname: &str, flags: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), pem).unwrap();
        let input = file.path().to_str().unwrap();
        let db = database.database_arg().into_string().unwrap();
        CERTUTIL
            .run([
                "-A", "-d", &db, "-n", nickname, "-t", flags, "-a", "-i", input,
            ])
            .unwrap();
    }

    /// Returns the DER form of the certificates that `certutil -L -n`
    /// prints for `nickname`: every certificate with its subject.
    fn certificates_named(database: &NssDatabase, nickname: &str) -> Vec<Vec<u8>> {
        let db = database.database_arg().into_string().unwrap();
        let output = CERTUTIL
            .run(["-L", "-d", &db, "-n", nickname, "-a"])
            .unwrap();
        pem::parse_many(&output.stdout)
            .unwrap()
            .into_iter()
            .map(|block| block.into_contents())
            .collect()
    }

    #[test]
    fn uninstall_keeps_other_certificate_with_our_nickname() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let database = chromium_database(home.path());
        database.create().unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let other = CaCertificate::from_pem(OTHER_CA).unwrap();
        add_with_certutil(&database, OTHER_CA, &ca.nickname(), "C,,");

        let state = database.status(&ca).unwrap();
        let TrustState::Incomplete(reason) = state else {
            panic!("expected incomplete, got {state:?}");
        };
        assert!(reason.contains("another certificate"), "{reason}");
        assert_eq!(database.uninstall(&ca).unwrap(), Change::NotPresent);
        assert_eq!(database.trust_flags(&ca.nickname()).unwrap(), ["C,,"]);
        assert_eq!(
            certificates_named(&database, &ca.nickname()),
            [other.der().to_vec()]
        );

        let err = database.install(&ca).unwrap_err().to_string();
        assert!(err.contains("another certificate"), "{err}");
        assert!(err.contains("webwarden test other CA"), "{err}");
        assert_eq!(database.trust_flags(&ca.nickname()).unwrap(), ["C,,"]);
    }

    #[test]
    fn uninstall_deletes_only_ours_of_shared_nickname() {
        if !certutil_available() {
            return;
        }
        // Each CA in turn is the one uninstalled, so both key types (P-256
        // and RSA) select the certificate to delete.
        let cases = [(TEST_CA, SAME_SUBJECT_CA), (SAME_SUBJECT_CA, TEST_CA)];
        for (ours_pem, sibling_pem) in cases {
            let home = tempfile::tempdir().unwrap();
            let database = chromium_database(home.path());
            database.create().unwrap();
            let ca = CaCertificate::from_pem(ours_pem).unwrap();
            let sibling = CaCertificate::from_pem(sibling_pem).unwrap();
            add_with_certutil(&database, ours_pem, &ca.nickname(), "C,,");
            add_with_certutil(&database, sibling_pem, &ca.nickname(), ",,");
            assert_eq!(database.trust_flags(&ca.nickname()).unwrap().len(), 2);

            assert_eq!(database.uninstall(&ca).unwrap(), Change::Removed);
            assert_eq!(database.trust_flags(&ca.nickname()).unwrap(), [",,"]);
            assert_eq!(
                certificates_named(&database, &ca.nickname()),
                [sibling.der().to_vec()],
                "uninstall of {}",
                ca.subject()
            );
            let state = database.status(&ca).unwrap();
            assert!(matches!(state, TrustState::Incomplete(_)), "{state:?}");
        }
    }

    #[test]
    fn nickname_of_sibling_is_not_ours() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let database = chromium_database(home.path());
        database.create().unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let sibling = CaCertificate::from_pem(SAME_SUBJECT_CA).unwrap();
        // The CA under another name, and a certificate with its subject
        // under its nickname.
        add_with_certutil(&database, TEST_CA, "imported by hand", "C,,");
        add_with_certutil(&database, SAME_SUBJECT_CA, &ca.nickname(), "C,,");

        let state = database.status(&ca).unwrap().to_string();
        assert!(
            state.starts_with("not trusted yet: another certificate"),
            "{state}"
        );
        assert_eq!(database.uninstall(&ca).unwrap(), Change::NotPresent);
        let named = certificates_named(&database, &ca.nickname());
        assert!(named.contains(&sibling.der().to_vec()));
        assert!(named.contains(&ca.der().to_vec()));
    }

    #[test]
    fn rotated_ca_with_same_subject_is_told_apart() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let database = chromium_database(home.path());
        let old = CaCertificate::from_pem(TEST_CA).unwrap();
        let new = CaCertificate::from_pem(SAME_SUBJECT_CA).unwrap();
        assert_eq!(database.install(&old).unwrap(), Change::Installed);
        assert_eq!(database.install(&new).unwrap(), Change::Installed);
        assert_eq!(database.status(&old).unwrap(), TrustState::Trusted);
        assert_eq!(database.status(&new).unwrap(), TrustState::Trusted);

        assert_eq!(database.uninstall(&old).unwrap(), Change::Removed);
        assert_eq!(database.status(&old).unwrap(), TrustState::Absent);
        assert_eq!(database.status(&new).unwrap(), TrustState::Trusted);
        assert_eq!(
            certificates_named(&database, &new.nickname()),
            [new.der().to_vec()]
        );
    }

    #[test]
    fn failed_certutil_command_quotes_nickname() {
        let home = tempfile::tempdir().unwrap();
        let mut database = chromium_database(home.path());
        std::fs::create_dir_all(database.dir()).unwrap();
        std::fs::write(database.dir().join(DATABASE_FILE), "").unwrap();
        // A stand-in for certutil that lists an empty database and fails
        // every other command.
        let script = home.path().join("certutil");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = -L ] && exit 0\necho 'certutil: broken' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        database.certutil = Tool {
            program: script.display().to_string().leak(),
            provided_by: CERTUTIL.provided_by,
        };
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();

        let err = database.install(&ca).unwrap_err().to_string();
        let quoted = format!("-n 'webwarden local CA {}' ", ca.id());
        assert!(err.contains(&quoted), "{err}");
        assert!(err.ends_with(": certutil: broken"), "{err}");
    }

    #[test]
    fn missing_certutil_names_its_package() {
        let home = tempfile::tempdir().unwrap();
        let mut database = chromium_database(home.path());
        database.certutil = Tool {
            program: "webwarden-no-such-certutil",
            provided_by: CERTUTIL.provided_by,
        };
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let err = database.install(&ca).unwrap_err();
        assert!(matches!(err, TrustError::Command(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "webwarden-no-such-certutil was not found in PATH; install the libnss3-tools package"
        );
    }
}
