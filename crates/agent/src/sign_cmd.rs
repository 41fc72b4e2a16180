//! `webwarden list keygen`, `list sign` and `list verify`: the
//! administrator's side of signed lists. The key and signature files use
//! the minisign formats, so the minisign tool reads them as well.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use clap::Args;
use minisign::{KeyPair, SecretKey, SecretKeyBox};
use sha2::{Digest, Sha256};

use crate::signing::{self, ListPublicKey, SIGNATURE_SUFFIX};
use crate::CliError;

/// The environment variable with the password of the list secret key.
pub const PASSWORD_VAR: &str = "WEBWARDEN_LIST_KEY_PASSWORD";

/// The secret key file that `keygen` writes.
const SECRET_KEY_FILE: &str = "webwarden-list.key";

/// The public key file that `keygen` writes.
const PUBLIC_KEY_FILE: &str = "webwarden-list.pub";

/// The start of the key line of an unencrypted minisign secret key: the
/// base64 of the algorithm IDs `Ed`, no KDF (two zero bytes) and `B2`.
const UNENCRYPTED_KEY_PREFIX: &str = "RWQAAEIy";

/// The start of the key line of a scrypt-encrypted minisign secret key:
/// the base64 of the algorithm IDs `Ed`, `Sc` and `B2`.
const ENCRYPTED_KEY_PREFIX: &str = "RWRTY0Iy";

/// Arguments of `webwarden list keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write `webwarden-list.key` (secret) and
    /// `webwarden-list.pub` (public) to; created when missing. The secret
    /// key is encrypted with the password in WEBWARDEN_LIST_KEY_PASSWORD,
    /// or unencrypted when the variable is not set.
    #[arg(long, value_name = "DIR")]
    output_dir: PathBuf,
    /// Replace existing key files. Lists signed with the old key then fail
    /// verification until the agents have the new public key.
    #[arg(long)]
    force: bool,
}

/// Arguments of `webwarden list sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Secret key file from `webwarden list keygen` (or `minisign -G`). An
    /// encrypted key is decrypted with the password in
    /// WEBWARDEN_LIST_KEY_PASSWORD.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// List file to sign. The signature is written to LIST.minisig.
    #[arg(value_name = "LIST")]
    list: PathBuf,
    /// One line of text that the signature covers and `verify` prints
    /// [default: the file name, size, SHA-256 and the UTC signing time].
    #[arg(long, value_name = "TEXT", value_parser = parse_trusted_comment)]
    trusted_comment: Option<String>,
}

/// Arguments of `webwarden list verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public key: the `RW...` line that `keygen` printed, or a .pub file.
    #[arg(long, value_name = "KEY_OR_FILE")]
    public_key: String,
    /// List file to verify.
    #[arg(value_name = "LIST")]
    list: PathBuf,
    /// Signature file [default: LIST.minisig].
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
}

/// Runs `webwarden list keygen`.
pub fn run_keygen(args: &KeygenArgs) -> Result<ExitCode, CliError> {
    let secret_path = args.output_dir.join(SECRET_KEY_FILE);
    let public_path = args.output_dir.join(PUBLIC_KEY_FILE);
    if !args.force {
        for path in [&secret_path, &public_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(CliError::Usage(anyhow!(
                    "{} already exists; pass --force to replace the key pair, after which lists \
                     signed with the old key fail verification until the agents have the new \
                     public key",
                    path.display()
                )));
            }
        }
    }
    let password = match read_password()? {
        Some(password) if password.is_empty() => {
            return Err(CliError::Usage(anyhow!(
                "{PASSWORD_VAR} is set but empty; set it to the password for the secret key, or \
                 unset it to write an unencrypted key"
            )));
        }
        password => password,
    };

    let encrypted = password.is_some();
    let pair = match password {
        Some(password) => KeyPair::generate_encrypted_keypair(Some(password)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|err| CliError::Failed(anyhow!("failed to generate the key pair: {err}")))?;
    let key_id = signing::format_key_id(pair.pk.keynum());
    let comment = if encrypted {
        "webwarden list secret key, encrypted"
    } else {
        "webwarden list secret key, unencrypted"
    };
    let secret_box = pair
        .sk
        .to_box(Some(comment))
        .map_err(|err| CliError::Failed(anyhow!("failed to encode the secret key: {err}")))?;
    let public_box = pair
        .pk
        .to_box()
        .map_err(|err| CliError::Failed(anyhow!("failed to encode the public key: {err}")))?;

    fs::create_dir_all(&args.output_dir).map_err(|err| {
        CliError::Failed(anyhow!(
            "failed to create {}: {err}",
            args.output_dir.display()
        ))
    })?;
    write_new_file(&secret_path, &secret_box.to_bytes(), true, args.force)?;
    write_new_file(&public_path, &public_box.to_bytes(), false, args.force)?;

    if !encrypted {
        eprintln!(
            "warning: {PASSWORD_VAR} is not set, so {} is not encrypted and anyone who can read \
             it can sign lists; set {PASSWORD_VAR} and run keygen with --force for an encrypted \
             key",
            secret_path.display()
        );
    }
    let public_line = pair.pk.to_base64();
    let mut out = io::stdout().lock();
    writeln!(out, "{public_line}")?;
    writeln!(out)?;
    writeln!(
        out,
        "Put this public key (key ID {key_id}) in the configuration of every agent:"
    )?;
    writeln!(out)?;
    writeln!(out, "    [updates]")?;
    writeln!(out, "    public_key = \"{public_line}\"")?;
    writeln!(out)?;
    writeln!(
        out,
        "Secret key: {} ({}). Keep it off the workstations.",
        secret_path.display(),
        if encrypted {
            "encrypted"
        } else {
            "not encrypted"
        }
    )?;
    writeln!(out, "Public key: {}", public_path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `webwarden list sign`.
pub fn run_sign(args: &SignArgs) -> Result<ExitCode, CliError> {
    let list = fs::read(&args.list).map_err(|err| {
        CliError::Usage(anyhow!(
            "failed to read the list {}: {err}",
            args.list.display()
        ))
    })?;
    let secret_key = load_secret_key(&args.key)?;
    let trusted_comment = match &args.trusted_comment {
        Some(comment) => comment.clone(),
        None => default_trusted_comment(&args.list, &list, SystemTime::now()),
    };
    let signature = signing::sign_list(&list, &secret_key, &trusted_comment)
        .map_err(|err| CliError::Failed(err.context("failed to sign the list")))?;
    let signature_path = default_signature_path(&args.list);
    write_replacing(&signature_path, signature.as_bytes())?;

    let key_id = signing::format_key_id(secret_key.keynum());
    let mut out = io::stdout().lock();
    writeln!(out, "Wrote {} (key ID {key_id}).", signature_path.display())?;
    writeln!(out, "Trusted comment: {trusted_comment}")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `webwarden list verify`.
pub fn run_verify(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let key = resolve_public_key(&args.public_key)?;
    let list = fs::read(&args.list).map_err(|err| {
        CliError::Usage(anyhow!(
            "failed to read the list {}: {err}",
            args.list.display()
        ))
    })?;
    let signature_path = args
        .signature
        .clone()
        .unwrap_or_else(|| default_signature_path(&args.list));
    let signature = fs::read(&signature_path).map_err(|err| {
        CliError::Failed(anyhow!(
            "failed to read the signature {}: {err}; sign the list with `webwarden list sign`, \
             or pass the signature file with --signature",
            signature_path.display()
        ))
    })?;
    let info = signing::verify_list_with_key(&list, &signature, &key).map_err(|err| {
        CliError::Failed(
            anyhow::Error::new(err)
                .context(format!("signature check of {} failed", args.list.display())),
        )
    })?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}: signature verified (key ID {})",
        args.list.display(),
        info.key_id
    )?;
    writeln!(out, "Trusted comment: {}", info.trusted_comment)?;
    Ok(ExitCode::SUCCESS)
}

/// Checks `--trusted-comment` while clap parses it, so a bad one exits
/// with status 2.
fn parse_trusted_comment(text: &str) -> Result<String, String> {
    signing::check_trusted_comment(text)?;
    Ok(text.to_owned())
}

/// Reads the key password from the environment; `None` when it is not set.
fn read_password() -> Result<Option<String>, CliError> {
    match std::env::var(PASSWORD_VAR) {
        Ok(password) => Ok(Some(password)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::Usage(anyhow!(
            "{PASSWORD_VAR} is not valid UTF-8; set it to a UTF-8 password"
        ))),
    }
}

/// Loads a minisign secret key file, decrypting it with the password from
/// [`PASSWORD_VAR`] when it is encrypted.
fn load_secret_key(path: &Path) -> Result<SecretKey, CliError> {
    let usage = |message: String| CliError::Usage(anyhow!(message));
    let text = fs::read_to_string(path).map_err(|err| {
        usage(format!(
            "failed to read the secret key {}: {err}",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(path);
    let key_line = text.lines().nth(1).map(str::trim).unwrap_or_default();
    let secret_box = SecretKeyBox::from_string(&text)
        .map_err(|err| usage(format!("failed to read {}: {err}", path.display())))?;

    if key_line.starts_with(UNENCRYPTED_KEY_PREFIX) {
        if read_password()?.is_some_and(|password| !password.is_empty()) {
            eprintln!(
                "warning: {} is not encrypted, so {PASSWORD_VAR} is not used",
                path.display()
            );
        }
        // NOTE: the C minisign tool (0.11) writes unencrypted keys
        // (`minisign -G -W`) with an all-zero checksum, which the minisign
        // crate rejects as corrupted, so such keys cannot sign here.
        return secret_box.into_unencrypted_secret_key().map_err(|err| {
            usage(format!(
                "{} is not a valid minisign secret key ({err}); an unencrypted key from \
                 `minisign -G -W` has no checksum and is rejected, so generate the key pair with \
                 `webwarden list keygen` or with `minisign -G` and a password",
                path.display()
            ))
        });
    }

    if !key_line.starts_with(ENCRYPTED_KEY_PREFIX) {
        let hint = if signing::parse_public_key(&text).is_ok() {
            "it is a public key, and --key takes the secret key file (webwarden-list.key)"
        } else {
            "use the webwarden-list.key file that `webwarden list keygen` wrote"
        };
        return Err(usage(format!(
            "{} is not a minisign Ed25519 secret key; {hint}",
            path.display()
        )));
    }

    let password = match read_password()? {
        None => {
            return Err(usage(format!(
                "{} is encrypted; set {PASSWORD_VAR} to its password",
                path.display()
            )))
        }
        Some(password) if password.is_empty() => {
            return Err(usage(format!(
                "{PASSWORD_VAR} is set but empty, and {} is encrypted; set it to the key's \
                 password",
                path.display()
            )))
        }
        Some(password) => password,
    };
    secret_box.into_secret_key(Some(password)).map_err(|err| {
        // NOTE: minisign 0.10 reports a checksum mismatch after decryption as
        // "Wrong password for that key", and a damaged file fails the same way.
        if err.to_string().contains("Wrong password") {
            usage(format!(
                "wrong password for {}: {PASSWORD_VAR} does not decrypt it (or the file is \
                 damaged); set {PASSWORD_VAR} to the password used at keygen",
                path.display()
            ))
        } else {
            usage(format!(
                "{} is not a valid minisign secret key ({err}); generate a new key pair with \
                 `webwarden list keygen`",
                path.display()
            ))
        }
    })
}

/// Warns when a secret key file is readable by the group or other users.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    if let Ok(metadata) = fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: the secret key {} is readable by other users (mode {mode:04o}); run \
                 `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

/// Unix file modes do not apply elsewhere.
#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Parses `--public-key`: a public key line or `.pub` contents first, then
/// a file that contains one.
fn resolve_public_key(value: &str) -> Result<ListPublicKey, CliError> {
    let key_err = match signing::parse_public_key(value) {
        Ok(key) => return Ok(key),
        Err(err) => err,
    };
    let path = Path::new(value);
    match fs::read_to_string(path) {
        Ok(text) => signing::parse_public_key(&text)
            .map_err(|err| CliError::Usage(anyhow!("--public-key {}: {err}", path.display()))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(CliError::Usage(anyhow!(
            "--public-key {value}: no such file, and {key_err}"
        ))),
        Err(err) => Err(CliError::Usage(anyhow!(
            "failed to read the public key file {}: {err}",
            path.display()
        ))),
    }
}

/// Returns `LIST.minisig` for `LIST`.
fn default_signature_path(list: &Path) -> PathBuf {
    let mut name = OsString::from(list.as_os_str());
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// Builds the default trusted comment, with fields separated by tabs as in
/// minisign's own: `file:NAME`, `size:BYTES`, `sha256:HEX` and
/// `signed:RFC3339-UTC`.
fn default_trusted_comment(path: &Path, list: &[u8], now: SystemTime) -> String {
    let name: String = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let sha256: String = Sha256::digest(list)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let unix_seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    format!(
        "file:{name}\tsize:{}\tsha256:{sha256}\tsigned:{}",
        list.len(),
        format_utc(unix_seconds)
    )
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time,
/// `2025-01-02T03:04:05Z`.
fn format_utc(unix_seconds: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Writes a file that must not exist yet; with `replace`, an existing file
/// is removed first. A `private` file is created owner-only (0600) on Unix.
fn write_new_file(path: &Path, bytes: &[u8], private: bool, replace: bool) -> Result<(), CliError> {
    if replace {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(CliError::Failed(anyhow!(
                    "failed to remove {}: {err}",
                    path.display()
                )))
            }
        }
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            CliError::Usage(anyhow!(
                "{} already exists; pass --force to replace it",
                path.display()
            ))
        } else {
            CliError::Failed(anyhow!("failed to create {}: {err}", path.display()))
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| CliError::Failed(anyhow!("failed to write {}: {err}", path.display())))
}

/// Writes a file through a temporary file and a rename, so a web server
/// that serves it never sends half a signature.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let result = fs::write(&temporary, bytes).and_then(|()| fs::rename(&temporary, path));
    if let Err(err) = result {
        let _ = fs::remove_file(&temporary);
        return Err(CliError::Failed(anyhow!(
            "failed to write {}: {err}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn format_utc_matches_known_times() {
        // Expected values from Python's datetime.fromisoformat().timestamp().
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (946_684_799, "1999-12-31T23:59:59Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_107_628_799, "2100-03-01T23:59:59Z"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(format_utc(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn default_comment_names_file_size_hash_time() {
        let now = UNIX_EPOCH + Duration::from_secs(951_868_799);
        let comment = default_trusted_comment(Path::new("/srv/lists/black\nlist.csv"), b"abc", now);
        assert_eq!(
            comment,
            "file:black?list.csv\tsize:3\t\
             sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\t\
             signed:2000-02-29T23:59:59Z"
        );
        assert!(signing::check_trusted_comment(&comment).is_ok());
    }

    #[test]
    fn signature_path_appends_suffix() {
        assert_eq!(
            default_signature_path(Path::new("lists/blacklist.csv")),
            PathBuf::from("lists/blacklist.csv.minisig")
        );
    }

    #[test]
    fn key_prefixes_match_minisign_boxes() {
        let pair = KeyPair::generate_unencrypted_keypair().unwrap();
        let text = pair.sk.to_box(None).unwrap().into_string();
        let key_line = text.lines().nth(1).unwrap();
        assert!(key_line.starts_with(UNENCRYPTED_KEY_PREFIX), "{key_line}");
    }

    #[test]
    fn zero_checksum_key_names_minisign_w() {
        // The checksum is the last 32 of the key's 158 bytes. It starts at
        // byte 126, a multiple of 3, so it is the last 44 base64 characters.
        let pair = KeyPair::generate_unencrypted_keypair().unwrap();
        let text = pair.sk.to_box(None).unwrap().into_string();
        let key_line = text.lines().nth(1).unwrap();
        let zeroed = format!("{}{}=", &key_line[..168], "A".repeat(43));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zero.key");
        fs::write(&path, format!("untrusted comment: x\n{zeroed}\n")).unwrap();
        let Err(CliError::Usage(err)) = load_secret_key(&path) else {
            panic!("a zero checksum is a usage error");
        };
        assert!(err.to_string().contains("minisign -G -W"), "{err}");
    }
}
