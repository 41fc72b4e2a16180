//! Runs the OS tools of the trust stores and shows their failed command
//! lines quoted, so they can be pasted into a shell.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::process::Output;

use crate::command::{CommandError, Tool};

/// Runs `tool` as [`Tool::run`] does, but a failure shows the command line
/// with each argument quoted for a POSIX shell where needed, so a nickname
/// with spaces reads as one argument and the line can be pasted.
pub(crate) fn run_tool<S: AsRef<OsStr>>(tool: &Tool, args: &[S]) -> Result<Output, CommandError> {
    tool.run(args).map_err(|err| match err {
        CommandError::Failed { status, output, .. } => CommandError::Failed {
            command: shell_command_line(tool.program, args),
            status,
            output,
        },
        other => other,
    })
}

/// Formats `program` and `args` as a POSIX shell command line.
fn shell_command_line<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut line = shell_word(program).into_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&shell_word(&arg.as_ref().to_string_lossy()));
    }
    line
}

/// Quotes `word` for a POSIX shell unless it contains only characters the
/// shell passes on unchanged.
pub(crate) fn shell_word(word: &str) -> Cow<'_, str> {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@=%".contains(c));
    if plain && !word.is_empty() {
        return Cow::Borrowed(word);
    }
    Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_command_line_is_quoted() {
        let sh = Tool {
            program: "sh",
            provided_by: "a POSIX shell",
        };
        let err = run_tool(&sh, &["-c", "echo oops >&2; exit 3", "sh", "it's", ""]).unwrap_err();
        let CommandError::Failed { command, .. } = &err else {
            panic!("expected a failed command, got {err:?}");
        };
        assert_eq!(command, r"sh -c 'echo oops >&2; exit 3' sh 'it'\''s' ''");
        assert!(err.to_string().ends_with(": oops"), "{err}");
    }

    #[test]
    fn shell_words_quoted_only_when_needed() {
        assert_eq!(
            shell_word("sql:/home/u/.pki/nssdb"),
            "sql:/home/u/.pki/nssdb"
        );
        assert_eq!(shell_word("C,,"), "C,,");
        assert_eq!(
            shell_word("webwarden local CA 0123456789ab"),
            "'webwarden local CA 0123456789ab'"
        );
        assert_eq!(shell_word("a$b"), "'a$b'");
    }
}
