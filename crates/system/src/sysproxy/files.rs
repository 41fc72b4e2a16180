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
    replace_file(path, contents, false)
}

/// Replaces `path` like [`write_atomically`], but readable and writable
/// only by the owner (mode 0600 on Unix) whatever its earlier mode, for
/// files that contain the user's settings.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), SysProxyError> {
    replace_file(path, contents, true)
}

/// Replaces the file that `path` names like [`write_atomically`]. When
/// `path` is a symbolic link, as dotfile managers such as GNU Stow create,
/// the file it points to is replaced and the link stays, so the user's
/// setup keeps working. A link to a missing file is an error.
pub(crate) fn write_through_links(path: &Path, contents: &[u8]) -> Result<(), SysProxyError> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_symlink());
    if !is_link {
        return write_atomically(path, contents);
    }
    let target = fs::canonicalize(path).map_err(|source| {
        io_error(
            "resolve the symbolic link",
            path,
            io::Error::new(
                source.kind(),
                format!("{source}; point the link at an existing file or delete it"),
            ),
        )
    })?;
    write_atomically(&target, contents)
}

fn replace_file(path: &Path, contents: &[u8], private: bool) -> Result<(), SysProxyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| io_error("create", dir, source))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));

    let written = write_and_sync(&temporary, contents, private)
        .and_then(|()| {
            if private {
                Ok(())
            } else {
                copy_permissions(path, &temporary)
            }
        })
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

fn write_and_sync(path: &Path, contents: &[u8], private: bool) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private {
        // A temporary file left by an earlier crash keeps its mode when
        // opened again, so the mode is set explicitly.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
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

    #[cfg(unix)]
    #[test]
    fn private_write_sets_owner_mode() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restore.json");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn write_through_links_keeps_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dotfiles").join("kioslaverc");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, "old").unwrap();
        let link = dir.path().join("kioslaverc");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        write_through_links(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn dangling_link_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("kioslaverc");
        std::os::unix::fs::symlink(dir.path().join("missing"), &link).unwrap();

        let err = write_through_links(&link, b"new").unwrap_err();
        let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(message.contains("point the link"), "{message}");
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn missing_file_reads_as_none_and_removes_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        assert_eq!(read_optional(&path).unwrap(), None);
        remove_if_exists(&path).unwrap();
    }
}
