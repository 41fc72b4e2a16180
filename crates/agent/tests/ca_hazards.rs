//! The CA files under damage, bad timing and a hostile data directory:
//! an expired CA, a rotation cut short, a reader that opens the CA while
//! `ca rotate` runs, temporary-file symlinks, and a key the command cannot
//! reach. Each test runs the real `webwarden` binary on a temporary data
//! directory, with the key in the owner-only file (no session bus).
//!
//! The timing test needs `strace` to hold `ca rotate` between two steps,
//! and the install check needs `certutil`. Without them, those parts skip
//! with a note on standard error.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// How long `strace` delays the key's `fsync` in `ca rotate`, which leaves
/// `ca.pem.next` on disk without its key for that long.
const KEY_SYNC_DELAY: Duration = Duration::from_secs(2);

/// The bound on waiting for `ca rotate` to write `ca.pem.next`.
const NEXT_FILE_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds `webwarden ARGS` with HOME set to `home`, away from the user's
/// keychain, configuration and sudo.
fn webwarden_command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webwarden"));
    command
        .args(args)
        .env("HOME", home)
        .env_remove("SUDO_USER")
        .stdin(Stdio::null());
    support::isolate_environment(&mut command, home);
    command
}

/// Runs `webwarden ARGS` with HOME set to `home`.
fn webwarden(home: &Path, args: &[&str]) -> Output {
    webwarden_command(home, args)
        .output()
        .expect("webwarden starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Formats a command's output for an assertion message.
fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Creates a CA in `data` with `ca export` and returns its certificate.
fn create_ca(home: &Path, data: &Path) -> String {
    let output = webwarden(home, &["ca", "export", "--data-dir", path_str(data)]);
    assert!(output.status.success(), "{}", describe(&output));
    std::fs::read_to_string(data.join("ca.pem")).expect("ca export wrote ca.pem")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Writes a note that the test skips, which libtest shows even for passing
/// tests, unlike `eprintln!`.
fn note_skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipping: {reason}");
}

/// Returns a self-signed CA certificate for `key_pem` that expired in 2021.
fn expired_ca_for(key_pem: &str) -> String {
    let key = KeyPair::from_pem(key_pem).expect("ca.key is a PKCS#8 PEM key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "webwarden expired test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    params.self_signed(&key).expect("sign the expired CA").pem()
}

/// `ca rotate` is the command that replaces a CA, and an expired CA is the
/// one that most needs replacing, because the agent does not start with it.
#[test]
fn expired_ca_can_be_rotated() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    create_ca(home.path(), &data);
    let key = std::fs::read_to_string(data.join("ca.key")).unwrap();
    let expired = expired_ca_for(&key);
    std::fs::write(data.join("ca.pem"), &expired).unwrap();

    let rotate = webwarden(
        home.path(),
        &["ca", "rotate", "--data-dir", path_str(&data)],
    );
    assert!(rotate.status.success(), "{}", describe(&rotate));
    let export = webwarden(
        home.path(),
        &["ca", "export", "--data-dir", path_str(&data)],
    );
    assert!(export.status.success(), "{}", describe(&export));
    assert_ne!(text(&export.stdout), expired);
    let previous = std::fs::read_to_string(data.join("ca-previous.pem")).unwrap_or_default();
    assert_eq!(previous, expired);
}

/// A rotation killed after storing the new key and before renaming
/// `ca.pem.next` is finished by the next command that opens the CA. The
/// replaced certificate must then still be kept, because the trust stores
/// contain it and removing it there needs a copy.
#[test]
fn cut_short_rotation_keeps_previous_certificate() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let next_data = home.path().join("next");
    let old_pem = create_ca(home.path(), &data);
    let next_pem = create_ca(home.path(), &next_data);
    // The files as `ca rotate` leaves them when killed before its rename
    // of ca.pem.next: in file storage the new key has replaced the old one.
    std::fs::copy(next_data.join("ca.key"), data.join("ca.key")).unwrap();
    std::fs::copy(next_data.join("ca.pem"), data.join("ca.pem.next")).unwrap();

    let export = webwarden(
        home.path(),
        &["ca", "export", "--data-dir", path_str(&data)],
    );
    assert!(export.status.success(), "{}", describe(&export));
    assert_eq!(text(&export.stdout), next_pem);
    let previous = std::fs::read_to_string(data.join("ca-previous.pem")).unwrap_or_default();
    assert_eq!(previous, old_pem, "the replaced CA was not kept");
    assert!(
        text(&export.stderr).contains("rotation"),
        "the finished rotation was not reported: {}",
        describe(&export)
    );
}

/// The running agent opens the CA whenever ca.pem changes, and `ca export`
/// and `ca install` open it too. A process that opens it while `ca rotate`
/// has written ca.pem.next but not yet stored the key must not make the
/// rotation leave a certificate with another CA's key.
#[test]
fn open_during_rotation_keeps_ca_whole() {
    if support::desktop::find_program("strace").is_none() {
        note_skip("strace is not installed (apt-get install strace)");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    create_ca(home.path(), &data);

    // In file storage, saving the key is the only fsync of `ca rotate`.
    let delay = format!("fsync:delay_enter={}", KEY_SYNC_DELAY.as_micros());
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-o", "/dev/null", "-e", "trace=fsync", "-e"])
        .arg(format!("inject={delay}"))
        .arg(env!("CARGO_BIN_EXE_webwarden"))
        .args(["ca", "rotate", "--data-dir", path_str(&data)])
        .env("HOME", home.path())
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::isolate_environment(&mut strace, home.path());
    let rotate = strace.spawn().expect("start strace");

    let started = Instant::now();
    while !data.join("ca.pem.next").exists() {
        assert!(
            started.elapsed() < NEXT_FILE_TIMEOUT,
            "ca rotate wrote no ca.pem.next within {NEXT_FILE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = webwarden(
        home.path(),
        &["ca", "export", "--data-dir", path_str(&data)],
    );
    let rotate = rotate.wait_with_output().expect("wait for ca rotate");

    let after = webwarden(
        home.path(),
        &["ca", "export", "--data-dir", path_str(&data)],
    );
    assert!(
        after.status.success(),
        "the CA no longer loads\nca rotate: {}\nca export during it: {}\nca export after it: {}",
        describe(&rotate),
        describe(&during),
        describe(&after)
    );
}

/// Root runs `ca install --data-dir` on a user's data directory, as the
/// README and the failure hint of `ca install` suggest. The user owns that
/// directory, so a symlink there named like a temporary file must not
/// make webwarden write through it.
#[test]
fn temporary_file_symlinks_not_followed() {
    let cases = [
        // (temporary file, whether a CA exists first, subcommand)
        ("ca.pem.new", false, "export"),
        ("ca.pem.next.new", true, "rotate"),
        ("ca-previous.pem.new", true, "rotate"),
    ];
    for (name, existing_ca, subcommand) in cases {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if existing_ca {
            create_ca(home.path(), &data);
        }
        let victim = home.path().join("victim");
        std::fs::write(&victim, "not webwarden's\n").unwrap();
        std::os::unix::fs::symlink(&victim, data.join(name)).unwrap();

        let output = webwarden(
            home.path(),
            &["ca", subcommand, "--data-dir", path_str(&data)],
        );
        let content = std::fs::read_to_string(&victim).unwrap();
        assert_eq!(
            content,
            "not webwarden's\n",
            "ca {subcommand} wrote through the symlink {name}: {}",
            describe(&output)
        );
    }
}

/// `sudo webwarden ca install --store system --data-dir DIR` cannot reach
/// the user's keychain, where the key lives on a desktop. Installing and
/// exporting only need the certificate, so a key out of reach must not
/// stop them.
#[test]
fn export_and_install_without_key_access() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let pem = create_ca(home.path(), &data);
    // The key is elsewhere, as in a keychain of another session.
    std::fs::rename(data.join("ca.key"), home.path().join("key-elsewhere")).unwrap();

    let export = webwarden(
        home.path(),
        &["ca", "export", "--data-dir", path_str(&data)],
    );
    assert!(export.status.success(), "{}", describe(&export));
    assert_eq!(text(&export.stdout), pem);

    if support::desktop::find_program("certutil").is_none() {
        note_skip("certutil is not installed (apt-get install libnss3-tools)");
        return;
    }
    let install = webwarden(
        home.path(),
        &[
            "ca",
            "install",
            "--store",
            "browsers",
            "--data-dir",
            path_str(&data),
        ],
    );
    assert!(install.status.success(), "{}", describe(&install));
    assert!(
        !data.join("ca.key").exists(),
        "ca install made a new key file"
    );
    assert_eq!(std::fs::read_to_string(data.join("ca.pem")).unwrap(), pem);
}
