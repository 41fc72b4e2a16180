//! Reads small files named by users or found in their home directories,
//! such as a CA certificate or Firefox's `profiles.ini`, without hanging on
//! a FIFO or reading a huge file into memory.

use std::fmt;
use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// The reason [`read_regular_file`] failed.
#[derive(Debug)]
pub enum ReadFileError {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The path names something other than a regular file, such as a FIFO
    /// or a directory, described by the text.
    NotRegular(&'static str),
    /// The file is longer than the limit.
    TooLarge {
        /// The file's length in bytes.
        len: u64,
        /// The limit in bytes.
        max_len: u64,
    },
}

impl std::error::Error for ReadFileError {}

impl fmt::Display for ReadFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFileError::Io(err) => write!(f, "{err}"),
            ReadFileError::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            ReadFileError::TooLarge { len, max_len } => write!(
                f,
                "it is {len} bytes long, more than the limit of {max_len} bytes"
            ),
        }
    }
}

/// Reads the regular file at `path` (following symbolic links), which must
/// be at most `max_len` bytes long.
///
/// # Errors
///
/// Returns a [`ReadFileError`] when the file cannot be opened or read, is
/// not a regular file, or is longer than `max_len`.
///
/// The file is opened without blocking, so a FIFO is rejected at once
/// instead of waiting for a writer, and its length is checked before any
/// byte is read, so a large sparse file costs no memory.
pub fn read_regular_file(path: &Path, max_len: u64) -> Result<Vec<u8>, ReadFileError> {
    let file = open_without_blocking(path).map_err(ReadFileError::Io)?;
    let metadata = file.metadata().map_err(ReadFileError::Io)?;
    if !metadata.is_file() {
        return Err(ReadFileError::NotRegular(describe(metadata.file_type())));
    }
    if metadata.len() > max_len {
        return Err(ReadFileError::TooLarge {
            len: metadata.len(),
            max_len,
        });
    }
    // The file may grow after the check, so the read stops one byte past
    // the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_len + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFileError::Io)?;
    let len = bytes.len() as u64;
    if len > max_len {
        return Err(ReadFileError::TooLarge { len, max_len });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;

    // O_NONBLOCK makes opening a FIFO return at once, and O_NOCTTY keeps a
    // terminal device from becoming this process's controlling terminal.
    // Reads from a regular file ignore O_NONBLOCK.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

/// Names a file type that is not a regular file, for messages.
fn describe(file_type: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;

        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    if file_type.is_dir() {
        return "directory";
    }
    "special file"
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `read_regular_file` on another thread and fails the test when
    /// it takes longer than 10 seconds, so a regression hangs no test run.
    fn read_with_timeout(path: &Path, max_len: u64) -> Result<Vec<u8>, ReadFileError> {
        let (sender, receiver) = mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let _ = sender.send(read_regular_file(&path, max_len));
        });
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("read_regular_file blocked for 10 seconds")
    }

    #[test]
    fn regular_file_within_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_with_timeout(&path, 5).unwrap(), b"12345");
        let err = read_with_timeout(&path, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is 5 bytes long, more than the limit of 4 bytes"
        );
    }

    #[test]
    fn fifo_is_rejected_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let status = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        let err = read_with_timeout(&path, 1024).unwrap_err();
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
    }

    #[test]
    fn directory_and_device_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_with_timeout(dir.path(), 1024).unwrap_err();
        assert_eq!(err.to_string(), "it is a directory, not a regular file");
        let err = read_with_timeout(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is a character device, not a regular file"
        );
    }

    #[test]
    fn sparse_file_is_rejected_by_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(2 << 30).unwrap();
        let err = read_with_timeout(&path, 1 << 20).unwrap_err();
        assert!(
            matches!(err, ReadFileError::TooLarge { len, .. } if len == 2 << 30),
            "{err:?}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_with_timeout(&dir.path().join("none"), 1024).unwrap_err();
        let ReadFileError::Io(source) = err else {
            panic!("expected an I/O error, got {err:?}");
        };
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }
}
