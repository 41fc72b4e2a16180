use std::sync::{Arc, Mutex};

use super::*;

/// The settings of a fake backend: one PAC URL, `None` for no proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FakeSettings {
    url: Option<String>,
}

/// The setting of a fake backend and a record of the calls to it.
#[derive(Debug, Default)]
struct FakeState {
    url: Option<String>,
    unavailable: bool,
    fail_read: bool,
    fail_restore: bool,
    /// Makes read, apply and restore take a few milliseconds, which widens
    /// the window for races between processes.
    slow: bool,
    applied: usize,
    /// For each apply: whether the restore file already held this
    /// backend's saved settings.
    saved_before_apply: Vec<bool>,
}

/// A backend that keeps its setting in memory.
struct FakeBackend {
    name: &'static str,
    state: Arc<Mutex<FakeState>>,
    restore_path: PathBuf,
}

impl FakeBackend {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn pause(&self) {
        let slow = self.state().slow;
        if slow {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    }

    fn failure(&self, operation: &str) -> SysProxyError {
        SysProxyError::NotStored {
            backend: self.name.to_owned(),
            message: format!("{operation} failed on purpose"),
        }
    }
}

impl ProxySettingsBackend for FakeBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn is_available(&self) -> bool {
        !self.state().unavailable
    }

    fn read(&self) -> Result<Snapshot, SysProxyError> {
        self.pause();
        if self.state().fail_read {
            return Err(self.failure("read"));
        }
        let url = self.state().url.clone();
        Ok(Snapshot::new(self.name, &FakeSettings { url }))
    }

    fn apply(&self, target: &ProxyTarget) -> Result<(), SysProxyError> {
        self.pause();
        let saved = std::fs::read_to_string(&self.restore_path)
            .ok()
            .and_then(|text| serde_json::from_str::<RestoreFile>(&text).ok())
            .is_some_and(|file| file.saved.iter().any(|s| s.backend == self.name));
        let mut state = self.state();
        state.saved_before_apply.push(saved);
        state.applied += 1;
        state.url = Some(target.pac_url.clone());
        Ok(())
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), SysProxyError> {
        self.pause();
        if self.state().fail_restore {
            return Err(self.failure("restore"));
        }
        let saved: FakeSettings = snapshot.decode(self.name)?;
        self.state().url = saved.url;
        Ok(())
    }

    fn points_at(&self, snapshot: &Snapshot, target: &ProxyTarget) -> Result<bool, SysProxyError> {
        let current: FakeSettings = snapshot.decode(self.name)?;
        Ok(current.url.as_deref() == Some(target.pac_url.as_str()))
    }

    fn is_webwarden(&self, snapshot: &Snapshot) -> Result<bool, SysProxyError> {
        let current: FakeSettings = snapshot.decode(self.name)?;
        Ok(current
            .url
            .as_deref()
            .is_some_and(super::super::is_webwarden_pac_url))
    }

    fn proxy_off(&self, _snapshot: &Snapshot) -> Result<Snapshot, SysProxyError> {
        Ok(Snapshot::new(self.name, &FakeSettings { url: None }))
    }
}

/// A manager of fake backends in a temporary data directory.
struct Fixture {
    dir: tempfile::TempDir,
    states: Vec<Arc<Mutex<FakeState>>>,
}

impl Fixture {
    /// Creates backends `a`, `b`, ... whose settings start as `urls`.
    fn new(urls: &[Option<&str>]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let states = urls
            .iter()
            .map(|url| {
                Arc::new(Mutex::new(FakeState {
                    url: url.map(str::to_owned),
                    ..FakeState::default()
                }))
            })
            .collect();
        Fixture { dir, states }
    }

    /// Creates a manager, as each run of the agent does.
    fn manager(&self) -> SystemProxy {
        const NAMES: [&str; 3] = ["a", "b", "c"];
        let restore_path = self.dir.path().join(RESTORE_FILE);
        let backends = self
            .states
            .iter()
            .zip(NAMES)
            .map(|(state, name)| {
                Box::new(FakeBackend {
                    name,
                    state: Arc::clone(state),
                    restore_path: restore_path.clone(),
                }) as Box<dyn ProxySettingsBackend>
            })
            .collect();
        SystemProxy::new(backends, self.dir.path())
    }

    fn state(&self, index: usize) -> std::sync::MutexGuard<'_, FakeState> {
        self.states[index].lock().unwrap()
    }

    fn url(&self, index: usize) -> Option<String> {
        self.state(index).url.clone()
    }

    fn saved_urls(&self) -> Vec<(String, Option<String>)> {
        let text = std::fs::read_to_string(self.dir.path().join(RESTORE_FILE)).unwrap();
        let file: RestoreFile = serde_json::from_str(&text).unwrap();
        file.saved
            .iter()
            .map(|s| {
                let settings: FakeSettings = serde_json::from_value(s.settings.clone()).unwrap();
                (s.backend.clone(), settings.url)
            })
            .collect()
    }

    fn restore_file_exists(&self) -> bool {
        self.dir.path().join(RESTORE_FILE).exists()
    }
}

fn target(port: u16) -> ProxyTarget {
    ProxyTarget {
        pac_url: format!("http://127.0.0.1:{port}/proxy.pac"),
        proxy: "127.0.0.1:8899".parse().unwrap(),
    }
}

fn outcome_names<T: std::fmt::Debug>(outcomes: &[(String, T)]) -> Vec<String> {
    outcomes
        .iter()
        .map(|(name, outcome)| format!("{name} {outcome:?}"))
        .collect()
}

#[test]
fn enable_saves_settings_before_applying() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat"), None]);
    let report = fixture.manager().enable(&target(8898)).unwrap();

    assert!(!report.kept_earlier);
    assert_eq!(outcome_names(&report.backends), ["a Applied", "b Applied"]);
    for index in 0..2 {
        assert_eq!(fixture.state(index).saved_before_apply, [true]);
        assert_eq!(fixture.url(index), Some(target(8898).pac_url));
    }
    assert_eq!(
        fixture.saved_urls(),
        [
            (
                "a".to_owned(),
                Some("http://wpad.corp.test/wpad.dat".to_owned())
            ),
            ("b".to_owned(), None)
        ]
    );
}

#[test]
fn disable_restores_and_deletes_file() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat"), None]);
    fixture.manager().enable(&target(8898)).unwrap();
    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");

    assert_eq!(
        outcome_names(&report.backends),
        ["a Restored", "b Restored"]
    );
    assert!(!report.file_kept);
    assert!(!fixture.restore_file_exists());
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
    assert_eq!(fixture.url(1), None);
}

#[test]
fn disable_without_file_restores_nothing() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    assert!(fixture.manager().disable().unwrap().is_none());
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[test]
fn leftover_file_keeps_earlier_settings() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    fixture.manager().enable(&target(8898)).unwrap();
    // The agent was killed here, so nothing was restored. The next run
    // serves the PAC file on another port.
    let report = fixture.manager().enable(&target(9000)).unwrap();

    assert!(report.kept_earlier);
    assert_eq!(outcome_names(&report.backends), ["a Applied"]);
    assert_eq!(fixture.url(0), Some(target(9000).pac_url));
    assert_eq!(
        fixture.saved_urls(),
        [(
            "a".to_owned(),
            Some("http://wpad.corp.test/wpad.dat".to_owned())
        )],
        "the saved settings are the user's, not the first run's"
    );

    fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[test]
fn changed_port_keeps_saved_settings() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    fixture.manager().enable(&target(8898)).unwrap();
    // The agent was killed, and the next run, where this backend was not
    // available, rewrote the restore file's target with another port.
    fixture.state(0).unavailable = true;
    fixture.manager().enable(&target(9000)).unwrap();
    fixture.state(0).unavailable = false;

    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(outcome_names(&report.backends), ["a Restored"]);
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[test]
fn other_data_dir_saves_webwarden_as_off() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    let other = Fixture::new(&[]);
    let other_manager = SystemProxy::new(
        vec![Box::new(FakeBackend {
            name: "a",
            state: Arc::clone(&fixture.states[0]),
            restore_path: other.dir.path().join(RESTORE_FILE),
        })],
        other.dir.path(),
    );
    fixture.manager().enable(&target(8898)).unwrap();
    other_manager.enable(&target(9000)).unwrap();
    assert_eq!(
        other.saved_urls(),
        [("a".to_owned(), None)],
        "the first agent's PAC URL is not saved as the user's"
    );

    fixture.manager().disable().unwrap().expect("saved");
    other_manager.disable().unwrap().expect("saved");
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[test]
fn concurrent_managers_keep_user_settings() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    fixture.state(0).slow = true;
    // Two processes on one data directory, such as an agent that starts
    // while `proxy enable` runs, each enabling and disabling in turn.
    std::thread::scope(|scope| {
        for port in [8898, 9000] {
            let manager = fixture.manager();
            scope.spawn(move || {
                for _ in 0..20 {
                    manager.enable(&target(port)).unwrap();
                    manager.disable().unwrap();
                }
            });
        }
    });

    assert!(!fixture.restore_file_exists());
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[cfg(unix)]
#[test]
fn symlinked_lock_file_is_rejected() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    let elsewhere = fixture.dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, fixture.dir.path().join(LOCK_FILE)).unwrap();

    let err = fixture.manager().enable(&target(8898)).unwrap_err();
    let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(message.contains("symbolic link"), "{message}");
    assert!(!elsewhere.exists(), "nothing is created through the link");
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://wpad.corp.test/wpad.dat")
    );
}

#[test]
fn leftover_file_gains_new_backend() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat"), Some("kept")]);
    fixture.state(1).unavailable = true;
    fixture.manager().enable(&target(8898)).unwrap();
    fixture.state(1).unavailable = false;
    fixture.manager().enable(&target(8898)).unwrap();

    assert_eq!(fixture.saved_urls().len(), 2);
    assert_eq!(fixture.state(1).saved_before_apply, [true]);
    fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(fixture.url(1).as_deref(), Some("kept"));
}

#[test]
fn failed_restore_keeps_file_for_retry() {
    let fixture = Fixture::new(&[Some("first"), Some("second")]);
    fixture.manager().enable(&target(8898)).unwrap();
    fixture.state(0).fail_restore = true;

    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert!(report.file_kept);
    assert!(matches!(report.backends[0].1, RestoreOutcome::Failed(_)));
    assert!(matches!(report.backends[1].1, RestoreOutcome::Restored));
    assert_eq!(
        fixture.saved_urls(),
        [("a".to_owned(), Some("first".to_owned()))]
    );
    assert_eq!(fixture.url(1).as_deref(), Some("second"));

    fixture.state(0).fail_restore = false;
    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(outcome_names(&report.backends), ["a Restored"]);
    assert!(!fixture.restore_file_exists());
    assert_eq!(fixture.url(0).as_deref(), Some("first"));
}

#[test]
fn failed_restore_records_restore_start() {
    let fixture = Fixture::new(&[Some("first")]);
    fixture.manager().enable(&target(8898)).unwrap();
    fixture.state(0).fail_restore = true;
    fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");

    let text = std::fs::read_to_string(fixture.dir.path().join(RESTORE_FILE)).unwrap();
    let file: RestoreFile = serde_json::from_str(&text).unwrap();
    assert_eq!(file.saved.len(), 1);
    assert!(
        file.saved[0].restore_started,
        "the next attempt knows that a restore began: {text}"
    );
}

#[test]
fn unavailable_backend_at_disable_keeps_file() {
    let fixture = Fixture::new(&[Some("first")]);
    fixture.manager().enable(&target(8898)).unwrap();
    fixture.state(0).unavailable = true;

    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert!(report.file_kept);
    assert!(fixture.restore_file_exists());
}

#[test]
fn user_change_is_kept_on_disable() {
    let fixture = Fixture::new(&[Some("first"), Some("second")]);
    fixture.manager().enable(&target(8898)).unwrap();
    fixture.state(0).url = Some("http://chosen.by.user/proxy.pac".to_owned());

    let report = fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(
        outcome_names(&report.backends),
        ["a ChangedByUser", "b Restored"]
    );
    assert!(!report.file_kept);
    assert_eq!(
        fixture.url(0).as_deref(),
        Some("http://chosen.by.user/proxy.pac")
    );
    assert_eq!(fixture.url(1).as_deref(), Some("second"));
}

#[test]
fn settings_already_ours_restore_to_off() {
    let fixture = Fixture::new(&[Some(&target(8898).pac_url)]);
    fixture.manager().enable(&target(8898)).unwrap();
    assert_eq!(fixture.saved_urls(), [("a".to_owned(), None)]);

    fixture
        .manager()
        .disable()
        .unwrap()
        .expect("settings were saved");
    assert_eq!(fixture.url(0), None);
}

#[test]
fn unavailable_backend_is_skipped() {
    let fixture = Fixture::new(&[Some("first"), Some("second")]);
    fixture.state(1).unavailable = true;
    let report = fixture.manager().enable(&target(8898)).unwrap();

    assert_eq!(
        outcome_names(&report.backends),
        ["a Applied", "b Unavailable"]
    );
    assert_eq!(fixture.state(1).applied, 0);
    assert_eq!(
        fixture.saved_urls(),
        [("a".to_owned(), Some("first".to_owned()))]
    );
}

#[test]
fn no_available_backend_writes_no_file() {
    let fixture = Fixture::new(&[Some("first")]);
    fixture.state(0).unavailable = true;
    fixture.manager().enable(&target(8898)).unwrap();
    assert!(!fixture.restore_file_exists());
}

#[test]
fn unreadable_backend_is_not_applied() {
    let fixture = Fixture::new(&[Some("first"), Some("second")]);
    fixture.state(0).fail_read = true;
    let report = fixture.manager().enable(&target(8898)).unwrap();

    assert!(matches!(report.backends[0].1, EnableOutcome::Failed(_)));
    assert!(matches!(report.backends[1].1, EnableOutcome::Applied));
    assert_eq!(
        fixture.state(0).applied,
        0,
        "nothing saved, so nothing applied"
    );
    assert_eq!(
        fixture.saved_urls(),
        [("b".to_owned(), Some("second".to_owned()))]
    );
}

#[test]
fn invalid_restore_file_blocks_enable() {
    let fixture = Fixture::new(&[Some("first")]);
    let path = fixture.dir.path().join(RESTORE_FILE);
    std::fs::write(&path, "{ not json").unwrap();

    let err = fixture.manager().enable(&target(8898)).unwrap_err();
    assert!(
        matches!(err, SysProxyError::InvalidRestoreFile { .. }),
        "{err}"
    );
    assert_eq!(fixture.state(0).applied, 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
}

#[test]
fn damaged_restore_file_names_cause_and_fix() {
    let cases: [(&str, &str); 3] = [
        ("{\"version\": 1, \"target\": {", "not a valid restore file"),
        (
            "{\"version\": 7, \"target\": {\"pacUrl\": \"x\", \"proxy\": \"127.0.0.1:1\"}, \
             \"saved\": []}",
            "format version 7 is not supported",
        ),
        ("[]", "not a valid restore file"),
    ];
    for (text, expected) in cases {
        let fixture = Fixture::new(&[Some("first")]);
        let path = fixture.dir.path().join(RESTORE_FILE);
        std::fs::write(&path, text).unwrap();

        for err in [
            fixture.manager().enable(&target(8898)).unwrap_err(),
            fixture.manager().disable().unwrap_err(),
        ] {
            let message = err.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("by hand"), "{message}");
        }
        assert_eq!(fixture.state(0).applied, 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn directory_restore_file_is_rejected() {
    let fixture = Fixture::new(&[Some("first")]);
    std::fs::create_dir(fixture.dir.path().join(RESTORE_FILE)).unwrap();
    let message = fixture
        .manager()
        .enable(&target(8898))
        .unwrap_err()
        .to_string();
    assert!(message.contains("is a directory"), "{message}");
    assert_eq!(fixture.state(0).applied, 0);
}

#[test]
fn empty_restore_file_is_moved_aside() {
    let fixture = Fixture::new(&[Some("http://wpad.corp.test/wpad.dat")]);
    std::fs::write(fixture.dir.path().join(RESTORE_FILE), "").unwrap();

    let report = fixture.manager().enable(&target(8898)).unwrap();
    assert!(!report.kept_earlier);
    assert_eq!(outcome_names(&report.backends), ["a Applied"]);
    let names: Vec<String> = std::fs::read_dir(fixture.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("proxy-restore.json.damaged-")),
        "{names:?}"
    );
    assert_eq!(
        fixture.saved_urls(),
        [(
            "a".to_owned(),
            Some("http://wpad.corp.test/wpad.dat".to_owned())
        )]
    );
}

#[test]
fn unknown_backend_is_kept_with_fix() {
    let fixture = Fixture::new(&[Some("first")]);
    fixture.manager().enable(&target(8898)).unwrap();
    let path = fixture.dir.path().join(RESTORE_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"backend\": \"a\"", "\"backend\": \"plan9\"");
    std::fs::write(&path, text).unwrap();

    let report = fixture.manager().disable().unwrap().expect("saved");
    assert!(report.file_kept);
    let message = format!("{:?}", report.backends);
    assert!(message.contains("plan9"), "{message}");
    let RestoreOutcome::Failed(err) = &report.backends[0].1 else {
        panic!("{message}");
    };
    let err = err.to_string();
    assert!(err.contains("[system_proxy] backends"), "{err}");
}

#[cfg(unix)]
#[test]
fn restore_file_is_private() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::new(&[Some("first")]);
    fixture.manager().enable(&target(8898)).unwrap();
    let metadata = std::fs::metadata(fixture.dir.path().join(RESTORE_FILE)).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
}

#[test]
fn unwritable_restore_file_blocks_enable() {
    let fixture = Fixture::new(&[Some("first")]);
    // A directory in place of the temporary file makes the write fail.
    let temporary = format!(".{RESTORE_FILE}.{}.tmp", std::process::id());
    std::fs::create_dir(fixture.dir.path().join(temporary)).unwrap();

    let err = fixture.manager().enable(&target(8898)).unwrap_err();
    assert!(err.to_string().starts_with("failed to write"), "{err}");
    assert!(!fixture.restore_file_exists());
    assert_eq!(fixture.state(0).applied, 0);
    assert_eq!(fixture.url(0).as_deref(), Some("first"));
}

#[test]
fn status_reports_each_backend() {
    let fixture = Fixture::new(&[Some("first"), Some("second"), None]);
    fixture.state(2).unavailable = true;
    let manager = fixture.manager();
    manager.enable(&target(8898)).unwrap();
    fixture.state(1).url = Some("other".to_owned());

    let states: Vec<_> = manager
        .status(&target(8898))
        .into_iter()
        .map(|status| (status.backend, status.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a".to_owned(), ProxyState::Webwarden),
            ("b".to_owned(), ProxyState::Other),
            ("c".to_owned(), ProxyState::Unavailable),
        ]
    );
}
