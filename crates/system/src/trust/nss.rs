//! NSS databases, where Chromium, Chrome and Firefox on Linux look for
//! local root CAs, changed through `certutil` from the libnss3-tools
//! package. Chromium 156 on Debian 12 ignores the system bundle.
//!
//! Chromium and Chrome share `~/.pki/nssdb`, which webwarden creates when
//! it is missing so a browser started later finds the CA. Each Firefox
//! profile has its own database in the profile directory.

use std::path::{Path, PathBuf};

use super::certificate::bundle_contains;
use super::firefox;
use super::{
    run_tool, temp_pem_file, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
};
use crate::command::Tool;

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

/// Bound on the deletions of one nickname, in case several certificates
/// share it.
const MAX_DELETIONS: usize = 16;

/// Returns the NSS databases of the user whose home directory is `home`:
/// Chromium's, whether it exists yet or not, then one per Firefox profile.
pub fn browser_databases(home: &Path) -> Vec<NssDatabase> {
    let mut databases = vec![NssDatabase::new(
        "Chrome/Chromium".to_owned(),
        home.join(".pki").join("nssdb"),
    )];
    for profile in firefox::profiles(home) {
        let name = format!("Firefox profile {}", profile.name);
        databases.push(NssDatabase::new(name, profile.dir));
    }
    databases
}

/// One NSS database directory, which install creates when it does not
/// exist.
#[derive(Debug, Clone)]
pub struct NssDatabase {
    name: String,
    dir: PathBuf,
    certutil: Tool,
}

impl NssDatabase {
    /// Creates the store of the database in `dir`, named `name` in reports.
    pub fn new(name: String, dir: PathBuf) -> NssDatabase {
        NssDatabase {
            name,
            dir,
            certutil: CERTUTIL,
        }
    }

    /// Returns the directory that contains `cert9.db` and `key4.db`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exists(&self) -> bool {
        self.dir.join(DATABASE_FILE).is_file()
    }

    fn database_arg(&self) -> String {
        format!("sql:{}", self.dir.display())
    }

    /// Creates an empty database with an empty password, as the browsers
    /// do on first start.
    fn create(&self) -> Result<(), TrustError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| TrustError::io("create", &self.dir, &self.location(), source))?;
        run_tool(
            &self.certutil,
            &["-N", "--empty-password", "-d", &self.database_arg()],
        )?;
        Ok(())
    }

    /// Returns the trust flags of every entry named `nickname`.
    fn trust_flags(&self, nickname: &str) -> Result<Vec<String>, TrustError> {
        let output = run_tool(&self.certutil, &["-L", "-d", &self.database_arg()])?;
        let listing = String::from_utf8_lossy(&output.stdout);
        Ok(parse_listing(&listing)
            .into_iter()
            .filter(|(name, _)| name == nickname)
            .map(|(_, flags)| flags)
            .collect())
    }

    /// Checks whether a certificate named `ca`'s nickname is `ca` itself,
    /// not another certificate that happens to share the name.
    fn contains_same_certificate(&self, ca: &CaCertificate) -> Result<bool, TrustError> {
        let output = run_tool(
            &self.certutil,
            &["-L", "-d", &self.database_arg(), "-n", &ca.nickname(), "-a"],
        )?;
        let pem = String::from_utf8_lossy(&output.stdout);
        Ok(bundle_contains(&pem, ca.der()))
    }

    fn add(&self, ca: &CaCertificate) -> Result<(), TrustError> {
        let file = temp_pem_file(ca)?;
        let input = file.path().to_string_lossy().into_owned();
        let nickname = ca.nickname();
        let db = self.database_arg();
        run_tool(
            &self.certutil,
            &[
                "-A",
                "-d",
                &db,
                "-n",
                &nickname,
                "-t",
                TRUST_FLAGS,
                "-a",
                "-i",
                &input,
            ],
        )?;
        Ok(())
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
        if !self.exists() {
            self.create()?;
        }
        if self.status(ca)?.is_trusted() {
            return Ok(Change::AlreadyInstalled);
        }
        // `certutil -A` on an existing nickname replaces its trust flags,
        // which also repairs an entry added without `C`.
        self.add(ca)?;
        if !self.status(ca)?.is_trusted() {
            return Err(TrustError::Unexpected(format!(
                "certutil added {:?} to {} but does not list it as a trusted CA",
                ca.nickname(),
                self.dir.display()
            )));
        }
        Ok(Change::Installed)
    }

    fn uninstall(&self, ca: &CaCertificate) -> Result<Change, TrustError> {
        if !self.exists() {
            return Ok(Change::NotPresent);
        }
        let nickname = ca.nickname();
        let db = self.database_arg();
        let mut deleted = 0;
        while !self.trust_flags(&nickname)?.is_empty() {
            if deleted == MAX_DELETIONS {
                return Err(TrustError::Unexpected(format!(
                    "{nickname:?} is still in {} after {MAX_DELETIONS} deletions",
                    self.dir.display()
                )));
            }
            run_tool(&self.certutil, &["-D", "-d", &db, "-n", &nickname])?;
            deleted += 1;
        }
        Ok(if deleted == 0 {
            Change::NotPresent
        } else {
            Change::Removed
        })
    }

    fn status(&self, ca: &CaCertificate) -> Result<TrustState, TrustError> {
        if !self.exists() {
            return Ok(TrustState::Absent);
        }
        let flags = self.trust_flags(&ca.nickname())?;
        if flags.is_empty() {
            return Ok(TrustState::Absent);
        }
        if !self.contains_same_certificate(ca)? {
            return Ok(TrustState::Incomplete(format!(
                "another certificate is named {:?}",
                ca.nickname()
            )));
        }
        if !flags.iter().any(|f| trusts_tls_servers(f)) {
            return Ok(TrustState::Incomplete(format!(
                "the certificate is listed with trust flags {:?}, without C for TLS",
                flags.join(" ")
            )));
        }
        Ok(TrustState::Trusted)
    }
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
    fn chromium_database_listed_before_firefox_profiles() {
        let home = tempfile::tempdir().unwrap();
        let firefox = home.path().join(".mozilla/firefox");
        std::fs::create_dir_all(firefox.join("p.default")).unwrap();
        std::fs::write(
            firefox.join("profiles.ini"),
            "[Profile0]\nName=default\nIsRelative=1\nPath=p.default\n",
        )
        .unwrap();
        let databases = browser_databases(home.path());
        let names: Vec<String> = databases.iter().map(TrustStore::name).collect();
        assert_eq!(names, ["Chrome/Chromium", "Firefox profile default"]);
        assert_eq!(databases[0].dir(), home.path().join(".pki/nssdb"));
        assert_eq!(databases[1].dir(), firefox.join("p.default"));
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
        let database = browser_databases(home.path()).remove(0);
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
        let database = browser_databases(home.path()).remove(0);
        database.create().unwrap();
        let pem_path = home.path().join("ca.pem");
        std::fs::write(&pem_path, ca.pem()).unwrap();
        let db = database.database_arg();
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
    fn nss_in_firefox_profile_is_created() {
        if !certutil_available() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let profile = home.path().join(".mozilla/firefox/x.default-release");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(
            home.path().join(".mozilla/firefox/profiles.ini"),
            "[Profile0]\nName=default-release\nIsRelative=1\nPath=x.default-release\n",
        )
        .unwrap();
        let ca = CaCertificate::from_pem(TEST_CA).unwrap();
        let firefox = browser_databases(home.path()).remove(1);
        assert_eq!(firefox.install(&ca).unwrap(), Change::Installed);
        assert!(profile.join("cert9.db").is_file());
        assert_eq!(firefox.status(&ca).unwrap(), TrustState::Trusted);
    }

    #[test]
    fn failed_certutil_command_quotes_nickname() {
        let home = tempfile::tempdir().unwrap();
        let mut database = browser_databases(home.path()).remove(0);
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
        let mut database = browser_databases(home.path()).remove(0);
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
