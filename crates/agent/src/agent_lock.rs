//! One agent per data directory: two agents on the same spool would write
//! over each other's events.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::anyhow;

use crate::CliError;

/// The lock file's name in the data directory.
pub const AGENT_LOCK_FILE: &str = "agent.lock";

/// An exclusive lock on a data directory, held while the agent runs.
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

/// Locks `data_dir` for this agent and writes its PID into the lock file.
///
/// # Errors
///
/// [`CliError::Usage`] naming the other agent's PID when another agent
/// holds the lock, [`CliError::Failed`] when the file cannot be opened.
pub fn acquire(data_dir: &Path) -> Result<AgentLock, CliError> {
    let path = data_dir.join(AGENT_LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| CliError::Failed(anyhow!("failed to open {}: {err}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(CliError::Usage(anyhow!(
                "another webwarden agent (pid {}) uses the data directory {}; stop it first (the tray app or `webwarden run`), or give this one another --data-dir",
                pid.trim(),
                data_dir.display()
            )));
        }
        Err(TryLockError::Error(err)) => {
            return Err(CliError::Failed(anyhow!(
                "failed to lock {}: {err}",
                path.display()
            )))
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()));
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), error = %err, "failed to write the PID into the agent lock file");
    }
    Ok(AgentLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_agent_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let Err(CliError::Usage(err)) = acquire(dir.path()) else {
            panic!("the second lock must fail");
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        acquire(dir.path()).unwrap();
    }
}
