//! Output of the `webwarden ca` subcommands: the CA, one line per store, the
//! JSON status, and failures with the command that fixes them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use webwarden_system::trust::{StoreKind, TrustError, TrustState, TrustStore};

use super::{LoadedCa, StoreChoice};
use crate::CliError;

pub(super) fn exit_code(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Formats a store's failure, adding the command to run as administrator
/// when rights were missing.
pub(super) fn failure_text(err: &TrustError, admin_command: &str) -> String {
    let mut text = format!("FAILED: {}", error_chain(err));
    if matches!(err, TrustError::AdminRequired { .. }) {
        let program = std::env::current_exe()
            .map(|exe| shell_quote(&exe))
            .unwrap_or_else(|_| "webwarden".to_owned());
        if cfg!(windows) {
            text.push_str(&format!(
                "; run from an administrator prompt: {program} {admin_command}"
            ));
        } else {
            text.push_str(&format!("; run: sudo {program} {admin_command}"));
        }
    }
    text
}

/// Prints a note on standard error when running under sudo, because HOME
/// is then usually root's, so the browser databases changed are root's and
/// not those of the user who ran sudo.
pub(super) fn warn_about_sudo_home(choice: StoreChoice, action: &str) {
    let Some(user) = std::env::var_os("SUDO_USER") else {
        return;
    };
    if !cfg!(target_os = "linux") || !choice.includes(StoreKind::Browser) {
        return;
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    eprintln!(
        "note: running under sudo, so the browser databases under HOME={} were used; \
         for the browsers of {}, run `webwarden ca {action} --store browsers` as that user",
        Path::new(&home).display(),
        user.to_string_lossy(),
    );
}

/// One line of the per-store table.
pub(super) struct Row {
    pub(super) name: String,
    pub(super) location: String,
    pub(super) result: String,
}

pub(super) fn print_ca(ca: &LoadedCa) -> Result<(), CliError> {
    let certificate = &ca.certificate;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "CA: {} ({})",
        certificate.nickname(),
        certificate.subject()
    )?;
    writeln!(out, "file: {}", ca.source.path().display())?;
    writeln!(out, "SHA-256: {}", certificate.sha256_hex())?;
    Ok(())
}

/// Prints rows as aligned columns: store name, location, result.
pub(super) fn print_rows(rows: &[Row]) -> Result<(), CliError> {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let location_width = rows.iter().map(|r| r.location.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for row in rows {
        writeln!(
            out,
            "{:name_width$}  {:location_width$}  {}",
            row.name, row.location, row.result
        )?;
    }
    Ok(())
}

pub(super) fn print_status_json(
    ca: &LoadedCa,
    stores: &[Box<dyn TrustStore>],
    states: &[Result<TrustState, TrustError>],
    all_trusted: bool,
) -> Result<(), CliError> {
    let store_values: Vec<_> = stores
        .iter()
        .zip(states)
        .map(|(store, state)| {
            let (state, detail) = match state {
                Ok(TrustState::Trusted) => ("trusted", None),
                Ok(TrustState::Absent) => ("absent", None),
                Ok(TrustState::Incomplete(reason)) => ("incomplete", Some(reason.clone())),
                Err(err) => ("error", Some(error_chain(err))),
            };
            json!({
                "name": store.name(),
                "kind": match store.kind() {
                    StoreKind::System => "system",
                    StoreKind::Browser => "browser",
                },
                "location": store.location(),
                "state": state,
                "detail": detail,
            })
        })
        .collect();
    let value = json!({
        "ca": {
            "file": ca.source.path(),
            "subject": ca.certificate.subject(),
            "sha256": ca.certificate.sha256_hex(),
            "nickname": ca.certificate.nickname(),
        },
        "trusted": all_trusted,
        "stores": store_values,
    });
    writeln!(std::io::stdout().lock(), "{value}")?;
    Ok(())
}

/// Formats an error and its sources as one line, outermost first.
pub(super) fn error_chain(err: &TrustError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Quotes a path for a POSIX shell when it contains characters the shell
/// would split or expand.
pub(super) fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c));
    if plain && !text.is_empty() {
        return text;
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_only_when_needed() {
        assert_eq!(
            shell_quote(Path::new("/usr/bin/webwarden")),
            "/usr/bin/webwarden"
        );
        assert_eq!(shell_quote(Path::new("/home/a b/data")), "'/home/a b/data'");
        assert_eq!(shell_quote(Path::new("/x/it's")), r"'/x/it'\''s'");
    }

    #[test]
    fn admin_failure_names_the_command() {
        let err = TrustError::AdminRequired {
            location: "/usr/local/share/ca-certificates".to_owned(),
        };
        let text = failure_text(&err, "ca install --store system --data-dir /d");
        assert!(
            text.starts_with(
                "FAILED: administrator rights are needed to change /usr/local/share/ca-certificates; run: sudo "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(" ca install --store system --data-dir /d"),
            "{text}"
        );
    }

    #[test]
    fn store_choice_selects_kinds() {
        assert!(StoreChoice::System.includes(StoreKind::System));
        assert!(!StoreChoice::System.includes(StoreKind::Browser));
        assert!(StoreChoice::Browsers.includes(StoreKind::Browser));
        assert!(!StoreChoice::Browsers.includes(StoreKind::System));
        assert!(StoreChoice::All.includes(StoreKind::System));
        assert!(StoreChoice::All.includes(StoreKind::Browser));
    }
}
