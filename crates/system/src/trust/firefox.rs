//! Finds Firefox profile directories through `profiles.ini`, the file in
//! which Firefox lists its profiles.
//!
//! Each `[ProfileN]` section has a `Path`, relative to the directory of
//! `profiles.ini` when `IsRelative=1` and absolute otherwise. Sections of
//! other names (`[General]`, `[InstallXXXX]`) are skipped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::file::{read_regular_file, ReadFileError};

/// The Firefox configuration directories under a home directory: the
/// Debian and Mozilla packages, the Snap package and the Flatpak.
pub const FIREFOX_DIRS: [&str; 3] = [
    ".mozilla/firefox",
    "snap/firefox/common/.mozilla/firefox",
    ".var/app/org.mozilla.firefox/.mozilla/firefox",
];

/// Maximum length in bytes of a `profiles.ini` that is read. Each profile
/// takes a few short lines, so a real file is far shorter.
const MAX_PROFILES_INI_LEN: u64 = 1024 * 1024;

/// A profile listed in `profiles.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's `Name`, or its directory name when it has none.
    pub name: String,
    /// The profile directory.
    pub dir: PathBuf,
}

/// A `profiles.ini` that exists but could not be read, so the profiles it
/// lists are unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableProfilesIni {
    /// The file.
    pub path: PathBuf,
    /// The reason it could not be read.
    pub reason: String,
}

/// Returns the profiles listed in every `profiles.ini` of [`FIREFOX_DIRS`]
/// under `home` whose directory exists, each directory once, and an error
/// for each `profiles.ini` that exists but could not be read.
pub fn profiles(home: &Path) -> Vec<Result<Profile, UnreadableProfilesIni>> {
    let mut found: Vec<Result<Profile, UnreadableProfilesIni>> = Vec::new();
    for relative in FIREFOX_DIRS {
        let base = home.join(relative);
        let path = base.join("profiles.ini");
        let text = match read_regular_file(&path, MAX_PROFILES_INI_LEN) {
            Ok(text) => text,
            Err(ReadFileError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                found.push(Err(UnreadableProfilesIni {
                    path,
                    reason: err.to_string(),
                }));
                continue;
            }
        };
        for profile in parse_profiles_ini(&text, &base) {
            if !profile.dir.is_dir() {
                tracing::debug!(dir = %profile.dir.display(), "skipping a missing Firefox profile");
                continue;
            }
            let known = found
                .iter()
                .any(|known| known.as_ref().is_ok_and(|known| known.dir == profile.dir));
            if !known {
                found.push(Ok(profile));
            }
        }
    }
    found
}

/// Parses `profiles.ini` whose directory is `base`, and returns its
/// profiles in file order. Lines that are not `key=value` are skipped.
///
/// The file is parsed as bytes, not as UTF-8 text, because a Unix path is
/// a byte string: a `Path` value names its directory exactly even when it
/// is not UTF-8, and only the `Name` is decoded, replacing invalid UTF-8.
pub fn parse_profiles_ini(text: &[u8], base: &Path) -> Vec<Profile> {
    let mut profiles = Vec::new();
    let mut section: Option<Section> = None;
    for line in text.split(|&byte| byte == b'\n') {
        let line = line.trim_ascii();
        if let Some(name) = line.strip_prefix(b"[").and_then(|l| l.strip_suffix(b"]")) {
            profiles.extend(section.take().and_then(|s| s.into_profile(base)));
            if name.starts_with(b"Profile") {
                section = Some(Section::default());
            }
            continue;
        }
        let Some(current) = section.as_mut() else {
            continue;
        };
        let Some(equals) = line.iter().position(|&byte| byte == b'=') else {
            continue;
        };
        let key = line[..equals].trim_ascii();
        let value = line[equals + 1..].trim_ascii().to_vec();
        match key {
            b"Name" => current.name = Some(value),
            b"Path" => current.path = Some(value),
            b"IsRelative" => current.is_relative = Some(value == b"1"),
            _ => {}
        }
    }
    profiles.extend(section.and_then(|s| s.into_profile(base)));
    profiles
}

/// The keys of one `[ProfileN]` section, as bytes.
#[derive(Debug, Default)]
struct Section {
    name: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    is_relative: Option<bool>,
}

impl Section {
    fn into_profile(self, base: &Path) -> Option<Profile> {
        let path = self.path.filter(|p| !p.is_empty())?;
        let path = PathBuf::from(OsStr::from_bytes(&path));
        // Without `IsRelative`, a relative path can only mean relative to
        // the profiles.ini directory. Firefox allows absolute paths
        // (`IsRelative=0`) for profiles in any directory.
        let relative = self.is_relative.unwrap_or(path.is_relative());
        let dir = if relative { base.join(&path) } else { path };
        let name = match self.name {
            Some(name) => String::from_utf8_lossy(&name).into_owned(),
            None => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Some(Profile { name, dir })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const PROFILES_INI: &str = "\
[Install4F96D1932A9F858E]
Default=abcd1234.default-release
Locked=1

[Profile1]
Name=default
IsRelative=1
Path=wxyz5678.default
Default=1

[Profile0]
Name=default-release
IsRelative=1
Path=abcd1234.default-release

[Profile2]
Name=work
IsRelative=0
Path=/srv/profiles/work

[Profile3]
IsRelative=1

[General]
StartWithLastProfile=1
Version=2
";

    #[test]
    fn profiles_ini_relative_and_absolute_paths() {
        let base = Path::new("/home/u/.mozilla/firefox");
        let profiles = parse_profiles_ini(PROFILES_INI.as_bytes(), base);
        assert_eq!(
            profiles,
            vec![
                Profile {
                    name: "default".to_owned(),
                    dir: base.join("wxyz5678.default"),
                },
                Profile {
                    name: "default-release".to_owned(),
                    dir: base.join("abcd1234.default-release"),
                },
                Profile {
                    name: "work".to_owned(),
                    dir: PathBuf::from("/srv/profiles/work"),
                },
            ]
        );
    }

    #[test]
    fn profiles_ini_without_is_relative_or_name() {
        let base = Path::new("/b");
        let text = "[Profile0]\r\nPath = rel.dir \r\n[Profile1]\nPath=/abs/p\n";
        let profiles = parse_profiles_ini(text.as_bytes(), base);
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].dir, PathBuf::from("/b/rel.dir"));
        assert_eq!(profiles[0].name, "rel.dir");
        assert_eq!(profiles[1].dir, PathBuf::from("/abs/p"));
    }

    #[test]
    fn profiles_found_in_every_firefox_dir() {
        let home = tempfile::tempdir().unwrap();
        let deb = home.path().join(FIREFOX_DIRS[0]);
        let snap = home.path().join(FIREFOX_DIRS[1]);
        let outside = home.path().join("elsewhere");
        fs::create_dir_all(deb.join("a.default")).unwrap();
        fs::create_dir_all(snap.join("s.default")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let deb_ini = format!(
            "[Profile0]\nName=a\nIsRelative=1\nPath=a.default\n\
             [Profile1]\nName=gone\nIsRelative=1\nPath=gone.default\n\
             [Profile2]\nName=outside\nIsRelative=0\nPath={}\n",
            outside.display()
        );
        fs::write(deb.join("profiles.ini"), deb_ini).unwrap();
        let snap_ini = format!(
            "[Profile0]\nName=s\nIsRelative=1\nPath=s.default\n\
             [Profile1]\nName=same\nIsRelative=0\nPath={}\n",
            outside.display()
        );
        fs::write(snap.join("profiles.ini"), snap_ini).unwrap();

        let names: Vec<String> = profiles(home.path())
            .into_iter()
            .map(|p| p.unwrap().name)
            .collect();
        assert_eq!(names, ["a", "outside", "s"]);
    }

    #[test]
    fn profiles_ini_not_utf8_is_parsed() {
        let home = tempfile::tempdir().unwrap();
        let base = home.path().join(FIREFOX_DIRS[0]);
        // A directory name in Latin-1, which is not UTF-8.
        let dir_name = OsStr::from_bytes(b"caf\xe9.default");
        fs::create_dir_all(base.join(dir_name)).unwrap();
        fs::write(
            base.join("profiles.ini"),
            b"[Profile0]\nName=J\xf6rg\nIsRelative=1\nPath=caf\xe9.default\n",
        )
        .unwrap();

        let found = profiles(home.path());
        assert_eq!(
            found,
            [Ok(Profile {
                name: "J\u{fffd}rg".to_owned(),
                dir: base.join(dir_name),
            })]
        );
    }

    #[test]
    fn unreadable_profiles_ini_is_reported() {
        let home = tempfile::tempdir().unwrap();
        let deb = home.path().join(FIREFOX_DIRS[0]);
        let snap = home.path().join(FIREFOX_DIRS[1]);
        fs::create_dir_all(deb.join("profiles.ini")).unwrap();
        fs::create_dir_all(&snap).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(snap.join("profiles.ini"))
            .status()
            .unwrap();
        assert!(status.success());

        let found = profiles(home.path());
        assert_eq!(
            found,
            [
                Err(UnreadableProfilesIni {
                    path: deb.join("profiles.ini"),
                    reason: "it is a directory, not a regular file".to_owned(),
                }),
                Err(UnreadableProfilesIni {
                    path: snap.join("profiles.ini"),
                    reason: "it is a FIFO, not a regular file".to_owned(),
                }),
            ]
        );
    }
}
