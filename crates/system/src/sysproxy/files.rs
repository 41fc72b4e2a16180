//! File helpers shared by the file backends and the restore file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::SysProxyError;

/// Reads `path` as UTF-8 text, or returns `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, SysProxyError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path, source)),
    }
}

/// Replaces `path` with `contents`, so that readers, and the file after a
/// crash or power cut, show either the old or the new contents in full.
/// Writes a temporary file in the same directory, flushes it to the disk,
/// renames it over `path` and flushes the directory. An existing file's
/// permissions are kept, and missing parent directories are created.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), SysProxyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| io_error("create", dir, source))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));

    let written = write_and_sync(&temporary, contents)
        .and_then(|()| copy_permissions(path, &temporary))
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(source) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", path, source));
    }
    sync_dir(dir);
    Ok(())
}

/// Deletes `path`; a file that is already gone counts as deleted.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), SysProxyError> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path.parent().unwrap_or(Path::new(".")));
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io_error("delete", path, source)),
    }
}

pub(crate) fn io_error(action: &'static str, path: &Path, source: io::Error) -> SysProxyError {
    SysProxyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn write_and_sync(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn copy_permissions(from: &Path, to: &Path) -> io::Result<()> {
    match fs::metadata(from) {
        Ok(metadata) => fs::set_permissions(to, metadata.permissions()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// Flushes a directory's entries, so a rename or delete survives a power
/// cut. Windows cannot open directories this way, and there the rename
/// alone has to do.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file.conf");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("two"));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.conf"], "no temporary file is left");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&path, b"new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_reads_as_none_and_removes_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        assert_eq!(read_optional(&path).unwrap(), None);
        remove_if_exists(&path).unwrap();
    }
}
