//! Runs `webwarden list keygen`, `list sign` and `list verify` as an
//! administrator would, in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const PASSWORD_VAR: &str = "WEBWARDEN_LIST_KEY_PASSWORD";

const LIST: &str = ".*4399\\.com,Entertainment\n(.*\\.)?hacker\\.com,Malicious Host\n";

/// Runs webwarden with `args`, with the key password variable set to
/// `password` or removed.
fn webwarden(args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
    command.args(args);
    match password {
        Some(password) => command.env(PASSWORD_VAR, password),
        None => command.env_remove(PASSWORD_VAR),
    };
    command.output().expect("webwarden starts")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A temporary directory with a list file and, after `keygen`, a key pair.
struct Workspace {
    dir: TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("blacklist.csv"), LIST).unwrap();
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn keys_dir(&self) -> PathBuf {
        self.path("keys")
    }

    fn list(&self) -> PathBuf {
        self.path("blacklist.csv")
    }

    fn secret_key(&self) -> PathBuf {
        self.keys_dir().join("webwarden-list.key")
    }

    fn public_key(&self) -> PathBuf {
        self.keys_dir().join("webwarden-list.pub")
    }

    fn keygen(&self, password: Option<&str>, force: bool) -> Output {
        let keys_dir = self.keys_dir();
        let mut args = vec!["list", "keygen", "--output-dir", path_arg(&keys_dir)];
        if force {
            args.push("--force");
        }
        webwarden(&args, password)
    }

    fn sign(&self, password: Option<&str>) -> Output {
        let key = self.secret_key();
        let list = self.list();
        webwarden(
            &["list", "sign", "--key", path_arg(&key), path_arg(&list)],
            password,
        )
    }

    fn verify(&self, public_key: &str) -> Output {
        let list = self.list();
        webwarden(
            &[
                "list",
                "verify",
                "--public-key",
                public_key,
                path_arg(&list),
            ],
            None,
        )
    }
}

/// Returns the public key line, the first line `keygen` prints.
fn public_key_line(keygen: &Output) -> String {
    stdout(keygen).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn keygen_sign_verify_round_trip() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(None, false);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let key_line = public_key_line(&keygen);
    assert_eq!(key_line.len(), 56, "{}", stdout(&keygen));
    assert!(key_line.starts_with("RW"), "{key_line}");
    assert!(
        stdout(&keygen).contains(&format!("public_key = \"{key_line}\"")),
        "{}",
        stdout(&keygen)
    );
    assert!(stdout(&keygen).contains("[updates]"), "{}", stdout(&keygen));
    assert!(
        stderr(&keygen).contains("not encrypted"),
        "{}",
        stderr(&keygen)
    );
    let pub_file = fs::read_to_string(workspace.public_key()).unwrap();
    assert_eq!(pub_file.lines().nth(1), Some(key_line.as_str()));

    let sign = workspace.sign(None);
    assert!(sign.status.success(), "{}", stderr(&sign));
    let signature = fs::read_to_string(workspace.path("blacklist.csv.minisig")).unwrap();
    assert_eq!(signature.lines().count(), 4, "{signature}");
    let comment_line = signature.lines().nth(2).unwrap();
    let expected_start = format!(
        "trusted comment: file:blacklist.csv\tsize:{}\tsha256:",
        LIST.len()
    );
    assert!(comment_line.starts_with(&expected_start), "{comment_line}");
    assert!(comment_line.contains("\tsigned:20"), "{comment_line}");

    let verify = workspace.verify(&key_line);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("Trusted comment: file:blacklist.csv\t"),
        "{}",
        stdout(&verify)
    );

    let verify_with_file = workspace.verify(path_arg(&workspace.public_key()));
    assert!(
        verify_with_file.status.success(),
        "{}",
        stderr(&verify_with_file)
    );
}

#[test]
fn verify_rejects_modified_list() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(None, false);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let sign = workspace.sign(None);
    assert!(sign.status.success(), "{}", stderr(&sign));

    let mut list = fs::read(workspace.list()).unwrap();
    list[3] = b'5';
    fs::write(workspace.list(), &list).unwrap();
    let verify = workspace.verify(&public_key_line(&keygen));
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert!(
        stderr(&verify).contains("does not match its signature"),
        "{}",
        stderr(&verify)
    );
    assert!(stdout(&verify).is_empty(), "{}", stdout(&verify));
}

#[test]
fn verify_rejects_other_key() {
    let workspace = Workspace::new();
    assert!(workspace.keygen(None, false).status.success());
    assert!(workspace.sign(None).status.success());
    let other = Workspace::new();
    let other_keygen = other.keygen(None, false);
    assert!(other_keygen.status.success());

    let verify = workspace.verify(&public_key_line(&other_keygen));
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert!(stderr(&verify).contains("key ID"), "{}", stderr(&verify));
}

#[test]
fn verify_reports_missing_signature() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(None, false);
    assert!(keygen.status.success());
    let verify = workspace.verify(&public_key_line(&keygen));
    assert_eq!(verify.status.code(), Some(1), "{}", stderr(&verify));
    assert!(
        stderr(&verify).contains("blacklist.csv.minisig"),
        "{}",
        stderr(&verify)
    );
}

#[test]
fn verify_rejects_malformed_public_key() {
    let workspace = Workspace::new();
    let verify = workspace.verify("RWQnot-a-key");
    assert_eq!(verify.status.code(), Some(2), "{}", stderr(&verify));
    assert!(
        stderr(&verify).contains("not a minisign public key"),
        "{}",
        stderr(&verify)
    );
}

#[test]
fn keygen_rejects_overwrite() {
    let workspace = Workspace::new();
    let first = workspace.keygen(None, false);
    assert!(first.status.success(), "{}", stderr(&first));
    let secret_before = fs::read(workspace.secret_key()).unwrap();

    let second = workspace.keygen(None, false);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("webwarden-list.key already exists"),
        "{}",
        stderr(&second)
    );
    assert!(stderr(&second).contains("--force"), "{}", stderr(&second));
    assert_eq!(fs::read(workspace.secret_key()).unwrap(), secret_before);

    let forced = workspace.keygen(None, true);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(fs::read(workspace.secret_key()).unwrap(), secret_before);
    assert_ne!(public_key_line(&forced), public_key_line(&first));
}

#[test]
fn keygen_rejects_existing_public_key() {
    let workspace = Workspace::new();
    fs::create_dir_all(workspace.keys_dir()).unwrap();
    fs::write(workspace.public_key(), "keep me").unwrap();
    let keygen = workspace.keygen(None, false);
    assert_eq!(keygen.status.code(), Some(2), "{}", stderr(&keygen));
    assert!(
        stderr(&keygen).contains("webwarden-list.pub already exists"),
        "{}",
        stderr(&keygen)
    );
    assert!(!workspace.secret_key().exists());
}

#[cfg(unix)]
#[test]
fn secret_key_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let workspace = Workspace::new();
    assert!(workspace.keygen(None, false).status.success());
    let mode = fs::metadata(workspace.secret_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    // --force replaces a key that had looser permissions with an 0600 one.
    fs::set_permissions(workspace.secret_key(), fs::Permissions::from_mode(0o644)).unwrap();
    let sign = workspace.sign(None);
    assert!(sign.status.success(), "{}", stderr(&sign));
    assert!(
        stderr(&sign).contains("readable by other users"),
        "{}",
        stderr(&sign)
    );
    assert!(workspace.keygen(None, true).status.success());
    let mode = fs::metadata(workspace.secret_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn encrypted_key_needs_right_password() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(Some("correct horse"), false);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    assert!(!stderr(&keygen).contains("warning"), "{}", stderr(&keygen));
    let secret = fs::read_to_string(workspace.secret_key()).unwrap();
    assert!(
        secret.lines().nth(1).unwrap().starts_with("RWRTY0Iy"),
        "the key is scrypt-encrypted: {secret}"
    );

    let wrong = workspace.sign(Some("wrong horse"));
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("wrong password"),
        "{}",
        stderr(&wrong)
    );
    assert!(!workspace.path("blacklist.csv.minisig").exists());

    let missing = workspace.sign(None);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("is encrypted; set WEBWARDEN_LIST_KEY_PASSWORD"),
        "{}",
        stderr(&missing)
    );

    let right = workspace.sign(Some("correct horse"));
    assert!(right.status.success(), "{}", stderr(&right));
    let verify = workspace.verify(&public_key_line(&keygen));
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn keygen_rejects_empty_password() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(Some(""), false);
    assert_eq!(keygen.status.code(), Some(2), "{}", stderr(&keygen));
    assert!(
        stderr(&keygen).contains("set but empty"),
        "{}",
        stderr(&keygen)
    );
    assert!(!workspace.secret_key().exists());
}

#[test]
fn sign_uses_given_trusted_comment() {
    let workspace = Workspace::new();
    let keygen = workspace.keygen(None, false);
    assert!(keygen.status.success());
    let key = workspace.secret_key();
    let list = workspace.list();
    let sign = webwarden(
        &[
            "list",
            "sign",
            "--key",
            path_arg(&key),
            path_arg(&list),
            "--trusted-comment",
            "release 42",
        ],
        None,
    );
    assert!(sign.status.success(), "{}", stderr(&sign));
    let verify = workspace.verify(&public_key_line(&keygen));
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("Trusted comment: release 42\n"),
        "{}",
        stdout(&verify)
    );

    let bad = webwarden(
        &[
            "list",
            "sign",
            "--key",
            path_arg(&key),
            path_arg(&list),
            "--trusted-comment",
            "two\nlines",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("one line"), "{}", stderr(&bad));
}

#[test]
fn sign_rejects_public_key_as_key() {
    let workspace = Workspace::new();
    assert!(workspace.keygen(None, false).status.success());
    let public_key = workspace.public_key();
    let list = workspace.list();
    let sign = webwarden(
        &[
            "list",
            "sign",
            "--key",
            path_arg(&public_key),
            path_arg(&list),
        ],
        None,
    );
    assert_eq!(sign.status.code(), Some(2), "{}", stderr(&sign));
    assert!(
        stderr(&sign).contains("it is a public key"),
        "{}",
        stderr(&sign)
    );
}
