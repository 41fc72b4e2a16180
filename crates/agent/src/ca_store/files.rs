//! File operations on the data directory that stay safe when it belongs
//! to another user than the process, as under sudo: nothing follows a
//! symbolic link planted there, reads are bounded, and new files go to the
//! directory's owner.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use webwarden_system::file::{read_regular_file, ReadFileError};

use super::CaStoreError;

/// The largest certificate file read; a CA certificate is about 650 bytes.
const MAX_CERT_BYTES: u64 = 64 * 1024;

/// Reads a PEM certificate file: a regular file of at most
/// [`MAX_CERT_BYTES`], as UTF-8. A FIFO or device fails at once.
///
/// # Errors
///
/// Returns [`CaStoreError::NoCa`] when the file does not exist, and
/// [`CaStoreError::Io`] when it cannot be read, is not a regular file, is
/// larger, or is not text.
pub fn read_cert_file(path: &Path) -> Result<String, CaStoreError> {
    let io_error = |source| CaStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = match read_regular_file(path, MAX_CERT_BYTES) {
        Ok(bytes) => bytes,
        Err(ReadFileError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {
            return Err(CaStoreError::NoCa {
                cert: path.to_owned(),
            })
        }
        Err(ReadFileError::Io(err)) => return Err(io_error(err)),
        Err(err) => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{err}; a CA certificate is a small PEM file, so move this one away"),
            )))
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        io_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a PEM certificate (the file is not text); move it away to create a new CA",
        ))
    })
}

/// Writes `cert_pem` to a new temporary file, syncs it and renames it over
/// `path`. The temporary file is created exclusively, so a symbolic link in
/// its place is replaced rather than followed.
pub(super) fn write_cert(path: &Path, cert_pem: &str) -> Result<(), CaStoreError> {
    let io_error = |source| CaStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = std::path::PathBuf::from(temp);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(err)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_error)?;
    file.write_all(cert_pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error)?;
    fs::rename(&temp, path).map_err(io_error)
}

/// Opens the lock file, creating it when missing, and refuses a symbolic
/// link in its place.
pub(super) fn open_lock_file(path: &Path) -> Result<fs::File, CaStoreError> {
    let io_error = |source| CaStoreError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => return Ok(file),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_error(err)),
    }
    let metadata = fs::symlink_metadata(path).map_err(io_error)?;
    if !metadata.file_type().is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the CA lock is not a regular file; remove it",
        )));
    }
    // Opening for writing neither creates nor truncates, so even a link
    // swapped in after the check changes no file.
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error)
}

/// Gives `path` the owner and group of `dir` when they differ, which only
/// root can do; for other users the call fails and is ignored.
pub(super) fn chown_to_owner_of(dir: &Path, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(dir_meta), Ok(file_meta)) = (fs::metadata(dir), fs::symlink_metadata(path)) else {
            return;
        };
        if dir_meta.uid() == file_meta.uid() && dir_meta.gid() == file_meta.gid() {
            return;
        }
        if let Err(err) =
            std::os::unix::fs::lchown(path, Some(dir_meta.uid()), Some(dir_meta.gid()))
        {
            tracing::debug!(path = %path.display(), error = %err, "failed to give the file to the data directory's owner");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, path);
    }
}

/// Logs a warning when a key file can be read by users other than its
/// owner, and tightens it to owner-only.
pub(super) fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = fs::metadata(path) else {
            return;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        let tightened = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), tightened = tightened.is_ok(), "the CA key file was readable by other users; set it to 0600");
    }
    #[cfg(not(unix))]
    {
        let _ = path;
    }
}
