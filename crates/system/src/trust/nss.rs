//! NSS databases, where Chromium, Chrome and Firefox on Linux look for
//! local root CAs, changed through `certutil` from the libnss3-tools
//! package. Chromium 156 on Debian 12 ignores the system bundle.
//!
//! Chromium and Chrome share `~/.pki/nssdb`, which webwarden creates when
//! it is missing so a browser started later finds the CA. Each Firefox
//! profile has its own database in the profile directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::certificate::bundle_contains;
use super::firefox;
use super::tool::shell_word;
use super::{
    run_tool, temp_pem_file, CaCertificate, Change, StoreKind, TrustError, TrustState, TrustStore,
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

/// Bound on the deletions of one nickname, in case several certificates
/// share it.
const MAX_DELETIONS: usize = 16;

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
pub fn browser_databases(home: &Path) -> Vec<NssDatabase> {
    let mut databases = vec![NssDatabase::chromium(home.join(".pki").join("nssdb"))];
    for profile in firefox::profiles(home) {
        databases.push(NssDatabase::firefox_profile(&profile.name, profile.dir));
    }
    databases
}

/// The browser that reads a database, which decides what to tell the user
/// when the database has a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Browser {
    Chromium,
    Firefox,
}

/// One NSS database directory, which install creates when it does not
/// exist.
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
    Ours { flags: String },
    /// Another certificate has the nickname.
    Other,
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
        self.dir.join(DATABASE_FILE).is_file()
    }

    fn database_arg(&self) -> String {
        format!("sql:{}", self.dir.display())
    }

    /// Runs `certutil COMMAND -d sql:DIR -f /dev/null ARGS`.
    fn certutil(&self, command: &str, args: &[&str]) -> Result<Output, CommandError> {
        let db = self.database_arg();
        let mut all_args = vec![command, "-d", &db, "-f", EMPTY_PASSWORD_FILE];
        all_args.extend_from_slice(args);
        run_tool(&self.certutil, &all_args)
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

    /// Checks whether the database has a password other than the empty
    /// one. Listing the private keys needs a login, which fails with the
    /// empty password only then.
    fn has_password(&self) -> Result<bool, TrustError> {
        match self.certutil("-K", &[]) {
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
                shell_word(&self.database_arg())
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
        let output = self.certutil("-L", &[])?;
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
        let output = self.certutil("-L", &["-n", &ca.nickname(), "-a"])?;
        let pem = String::from_utf8_lossy(&output.stdout);
        Ok(bundle_contains(&pem, ca.der()))
    }

    /// Finds what the database contains under `ca`'s nickname.
    fn lookup(&self, ca: &CaCertificate) -> Result<Entry, TrustError> {
        let flags = self.trust_flags(&ca.nickname())?;
        if flags.is_empty() {
            return Ok(Entry::Absent);
        }
        if !self.contains_same_certificate(ca)? {
            return Ok(Entry::Other);
        }
        let trusted = flags.iter().find(|f| trusts_tls_servers(f));
        let flags = trusted.unwrap_or(&flags[0]).clone();
        Ok(Entry::Ours { flags })
    }

    /// Adds `ca` with the trust flags for a TLS root. When certutil fails,
    /// any entry it left is removed again, because `certutil -A` imports
    /// the certificate before it logs in to set the trust flags.
    fn add(&self, ca: &CaCertificate) -> Result<(), TrustError> {
        let file = temp_pem_file(ca)?;
        let input = file.path().to_string_lossy().into_owned();
        let nickname = ca.nickname();
        let args = ["-n", &nickname, "-t", TRUST_FLAGS, "-a", "-i", &input];
        if let Err(err) = self.certutil("-A", &args) {
            let err = self.command_error(err);
            return Err(self.remove_after_failure(ca, err));
        }
        Ok(())
    }

    /// Removes `ca`, which this install added, after `err` stopped the
    /// install, and returns `err`, extended when the removal failed too.
    fn remove_after_failure(&self, ca: &CaCertificate, err: TrustError) -> TrustError {
        let removal = match self.lookup(ca) {
            Ok(Entry::Ours { .. }) => self
                .certutil("-D", &["-n", &ca.nickname()])
                .map(drop)
                .map_err(TrustError::from),
            Ok(_) => Ok(()),
            Err(lookup_err) => Err(lookup_err),
        };
        match removal {
            Ok(()) => err,
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

    /// Sets the trust flags of `ca`, which the database contains, to those
    /// of a TLS root.
    fn repair_trust(&self, ca: &CaCertificate) -> Result<(), TrustError> {
        self.certutil("-M", &["-n", &ca.nickname(), "-t", TRUST_FLAGS])
            .map_err(|err| self.command_error(err))?;
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
        let entry = self.lookup(ca)?;
        if matches!(&entry, Entry::Ours { flags } if trusts_tls_servers(flags)) {
            return Ok(Change::AlreadyInstalled);
        }
        // Setting trust flags needs a login, so a database with a password
        // is reported before anything is added.
        if self.has_password()? {
            return Err(self.password_error());
        }
        let added = match entry {
            Entry::Ours { .. } => {
                self.repair_trust(ca)?;
                false
            }
            Entry::Absent | Entry::Other => {
                self.add(ca)?;
                true
            }
        };
        if !matches!(self.lookup(ca)?, Entry::Ours { flags } if trusts_tls_servers(&flags)) {
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
        let nickname = ca.nickname();
        let mut deleted = 0;
        while !self.trust_flags(&nickname)?.is_empty() {
            if deleted == MAX_DELETIONS {
                return Err(TrustError::Unexpected(format!(
                    "{nickname:?} is still in {} after {MAX_DELETIONS} deletions",
                    self.dir.display()
                )));
            }
            self.certutil("-D", &["-n", &nickname])?;
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
        match self.lookup(ca)? {
            Entry::Absent => Ok(TrustState::Absent),
            Entry::Other => Ok(TrustState::Incomplete(format!(
                "another certificate is named {:?}",
                ca.nickname()
            ))),
            Entry::Ours { flags } if trusts_tls_servers(&flags) => Ok(TrustState::Trusted),
            Entry::Ours { flags } => {
                let mut reason = format!(
                    "the certificate is listed with trust flags {flags:?}, without C for TLS"
                );
                if self.has_password()? {
                    reason.push_str(&format!(
                        ", and the database has a password, so install cannot set them; {}",
                        self.password_fix()
                    ));
                }
                Ok(TrustState::Incomplete(reason))
            }
        }
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
        browser_databases(home).remove(1)
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
                database.database_arg().as_ref(),
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
