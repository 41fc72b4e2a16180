//! Finds Firefox profile directories through `profiles.ini`, the file in
//! which Firefox lists its profiles.
//!
//! Each `[ProfileN]` section has a `Path`, relative to the directory of
//! `profiles.ini` when `IsRelative=1` and absolute otherwise. Sections of
//! other names (`[General]`, `[InstallXXXX]`) are skipped.

use std::fs;
use std::path::{Path, PathBuf};

/// The Firefox configuration directories under a home directory: the
/// Debian and Mozilla packages, the Snap package and the Flatpak.
pub const FIREFOX_DIRS: [&str; 3] = [
    ".mozilla/firefox",
    "snap/firefox/common/.mozilla/firefox",
    ".var/app/org.mozilla.firefox/.mozilla/firefox",
];

/// A profile listed in `profiles.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's `Name`, or its directory name when it has none.
    pub name: String,
    /// The profile directory.
    pub dir: PathBuf,
}

/// Returns the profiles listed in every `profiles.ini` of [`FIREFOX_DIRS`]
/// under `home` whose directory exists, each directory once.
pub fn profiles(home: &Path) -> Vec<Profile> {
    let mut found: Vec<Profile> = Vec::new();
    for relative in FIREFOX_DIRS {
        let base = home.join(relative);
        let Ok(text) = fs::read_to_string(base.join("profiles.ini")) else {
            continue;
        };
        for profile in parse_profiles_ini(&text, &base) {
            if !profile.dir.is_dir() {
                tracing::debug!(dir = %profile.dir.display(), "skipping a missing Firefox profile");
                continue;
            }
            if found.iter().all(|known| known.dir != profile.dir) {
                found.push(profile);
            }
        }
    }
    found
}

/// Parses `profiles.ini` whose directory is `base`, and returns its
/// profiles in file order. Lines that are not `key=value` are skipped.
pub fn parse_profiles_ini(text: &str, base: &Path) -> Vec<Profile> {
    let mut profiles = Vec::new();
    let mut section: Option<Section> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            profiles.extend(section.take().and_then(|s| s.into_profile(base)));
            let name = &line[1..line.len() - 1];
            if name.starts_with("Profile") {
                section = Some(Section::default());
            }
            continue;
        }
        let (Some(current), Some((key, value))) = (section.as_mut(), line.split_once('=')) else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "Name" => current.name = Some(value),
            "Path" => current.path = Some(value),
            "IsRelative" => current.is_relative = Some(value == "1"),
            _ => {}
        }
    }
    profiles.extend(section.and_then(|s| s.into_profile(base)));
    profiles
}

/// The keys of one `[ProfileN]` section.
#[derive(Debug, Default)]
struct Section {
    name: Option<String>,
    path: Option<String>,
    is_relative: Option<bool>,
}

impl Section {
    fn into_profile(self, base: &Path) -> Option<Profile> {
        let path = self.path.filter(|p| !p.is_empty())?;
        let path = PathBuf::from(path);
        // Without `IsRelative`, a relative path can only mean relative to
        // the profiles.ini directory.
        let relative = self.is_relative.unwrap_or(path.is_relative());
        let dir = if relative { base.join(&path) } else { path };
        let name = self.name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Some(Profile { name, dir })
    }
}

#[cfg(test)]
mod tests {
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
        let profiles = parse_profiles_ini(PROFILES_INI, base);
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
        let profiles = parse_profiles_ini(text, base);
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

        let names: Vec<String> = profiles(home.path()).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["a", "outside", "s"]);
    }
}
