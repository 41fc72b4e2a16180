//! Runs an OS tool (`certutil`, `gsettings`, `update-ca-certificates`) and
//! turns its failures into errors that name the tool, the failure, and the
//! package to install when it is missing.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, Output, Stdio};

use thiserror::Error;

/// The maximum length of tool output kept in an error, so a chatty tool
/// cannot flood logs.
const MAX_OUTPUT: usize = 2000;

/// An OS tool and the package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The program name, looked up in `PATH`.
    pub program: &'static str,
    /// The package to install when the program is missing, for example
    /// `the libnss3-tools package`.
    pub provided_by: &'static str,
}

/// The reason a tool failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The program is not installed.
    #[error("{program} was not found in PATH; install {provided_by}")]
    NotFound {
        /// The program.
        program: &'static str,
        /// The package that provides it.
        provided_by: &'static str,
    },
    /// The program could not be started.
    #[error("failed to start {program}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The program ran and reported failure.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line, for the reader to repeat by hand.
        command: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// The program's standard error, or its standard output when
        /// standard error was empty.
        output: String,
    },
}

impl Tool {
    /// Runs the tool with `args` and no standard input, and returns its
    /// output when it exits with status 0.
    ///
    /// # Errors
    ///
    /// Returns [`CommandError::NotFound`] when the program is missing and
    /// [`CommandError::Failed`] with its output when it exits with another
    /// status.
    pub fn run<I, S>(&self, args: I) -> Result<Output, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.output_any_status(&args)?;
        if output.status.success() {
            return Ok(output);
        }
        Err(CommandError::Failed {
            command: command_line(self.program, &args),
            status: output.status,
            output: failure_text(&output),
        })
    }

    /// Runs the tool with `args` and returns its output whatever its exit
    /// status, for tools whose status answers a question (`certutil -L -n`).
    ///
    /// # Errors
    ///
    /// Returns [`CommandError::NotFound`] when the program is missing and
    /// [`CommandError::Spawn`] when it cannot be started.
    pub fn output_any_status<I, S>(&self, args: I) -> Result<Output, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(self.program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.output().map_err(|source| self.spawn_error(source))
    }

    fn spawn_error(&self, source: io::Error) -> CommandError {
        if source.kind() == io::ErrorKind::NotFound {
            CommandError::NotFound {
                program: self.program,
                provided_by: self.provided_by,
            }
        } else {
            CommandError::Spawn {
                program: self.program,
                source,
            }
        }
    }

    /// Checks whether the program can be found in `PATH`.
    pub fn is_installed(&self) -> bool {
        let Some(path) = std::env::var_os("PATH") else {
            return false;
        };
        std::env::split_paths(&path).any(|dir| dir.join(self.program).is_file())
    }
}

fn command_line(program: &str, args: &[std::ffi::OsString]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Standard error, or standard output when that is empty, trimmed and cut
/// to [`MAX_OUTPUT`] bytes.
fn failure_text(output: &Output) -> String {
    let stream = if output.stderr.iter().all(u8::is_ascii_whitespace) {
        &output.stdout
    } else {
        &output.stderr
    };
    let text = String::from_utf8_lossy(stream);
    let text = text.trim();
    if text.is_empty() {
        return "no output".to_owned();
    }
    if text.len() <= MAX_OUTPUT {
        return text.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SH: Tool = Tool {
        program: "sh",
        provided_by: "a POSIX shell",
    };

    #[test]
    fn failure_names_the_command_and_its_error_output() {
        let err = SH.run(["-c", "echo oops >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`sh -c echo oops >&2; exit 3` failed"),
            "{text}"
        );
        assert!(text.ends_with(": oops"), "{text}");
    }

    #[test]
    fn missing_program_names_its_package() {
        let tool = Tool {
            program: "webwarden-no-such-tool",
            provided_by: "the imaginary package",
        };
        assert!(!tool.is_installed());
        let err = tool.run(["--version"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "webwarden-no-such-tool was not found in PATH; install the imaginary package"
        );
    }

    #[test]
    fn long_output_is_cut() {
        let err = SH
            .run(["-c", "head -c 5000 /dev/zero | tr '\\0' x; exit 1"])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("..."), "{}", &err[err.len() - 20..]);
        assert!(err.len() < MAX_OUTPUT + 100);
    }

    #[test]
    fn success_returns_standard_output() {
        let output = SH.run(["-c", "echo ok"]).unwrap();
        assert_eq!(output.stdout, b"ok\n");
        assert!(SH.is_installed());
    }
}
