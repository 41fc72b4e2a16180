//! The built tray app on a throwaway X desktop. One allowed and one blocked
//! request go through its proxy, and the test checks the window's list of
//! blocks, the notification and the tray icon's colour. It then pauses and
//! resumes from the tray menu, closes the window, starts a second copy and
//! quits.
//!
//! Needs Xvfb, dbus-daemon, dbus-monitor, trayer, xdotool and ImageMagick;
//! skipped without them unless `WEBWARDEN_REQUIRE_DESKTOP=1`. The
//! screenshots are kept as `artifacts/tray-window.png` and
//! `artifacts/tray-menu-paused.png`.

mod desktop;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use desktop::{missing_program, wait_for, Desktop};

const TRAY_APP: &str = env!("CARGO_BIN_EXE_webwarden-tray");

/// The tray menu's enabled entries, counted from the top with the keyboard.
const MENU_PAUSE: usize = 2;
const MENU_QUIT: usize = 3;

/// Colours of the tray icons' shield, as drawn in `icons/`.
const GREEN: &str = "#2F9E44";
const AMBER: &str = "#F08C00";
const RED: &str = "#C92A2A";

/// Returns the workspace's `artifacts` directory, which git ignores.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts an origin on a loopback address that responds `ok` to up to 50
/// connections.
fn origin(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    addr
}

/// Sends a GET through the proxy with curl and returns the HTTP status.
fn curl(proxy: &str, url: &str) -> u16 {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--noproxy", "", "-x", proxy, url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

fn status_json(data_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(data_dir.join("status.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Returns the text between the "Recently blocked" heading and the next one.
fn recent_blocks_text(report: &str) -> String {
    let lower = report.to_lowercase();
    let start = lower.find("recently blocked").unwrap_or(0);
    let end = lower.find("block lists").unwrap_or(lower.len());
    report[start..end.max(start)].to_owned()
}

fn start_tray(desktop: &Desktop, data_dir: &Path, list: &Path, report: &Path) -> Child {
    desktop
        .command(TRAY_APP)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--list")
        .arg(list)
        .env("WEBWARDEN_TRAY_RENDER_REPORT", report)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.with_extension("log")).unwrap())
        .spawn()
        .expect("the tray app starts")
}

#[test]
fn tray_app_window_and_menu() {
    if let Some((program, package)) = missing_program() {
        assert!(
            std::env::var_os("WEBWARDEN_REQUIRE_DESKTOP").is_none(),
            "{program} is missing: install the Debian package {package}"
        );
        eprintln!("skipped: {program} is missing (Debian package {package})");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut desktop = Desktop::start(root.path());
    let shots = screenshots();

    // Notifications go to org.freedesktop.Notifications on the session
    // bus; dbus-monitor records each call whether or not a daemon handles it.
    let notifications = root.path().join("notifications.txt");
    let monitor = desktop
        .command("dbus-monitor")
        .args([
            "--session",
            "interface='org.freedesktop.Notifications',member='Notify'",
        ])
        .stdout(std::fs::File::create(&notifications).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    desktop.adopt(monitor);

    let data_dir = root.path().join("webwarden");
    let list = root.path().join("list.csv");
    let rules = "blocked\\.test,Gambling\nquiet\\.test,Gambling\n127\\.0\\.0\\.2,Testing\n";
    std::fs::write(&list, rules).unwrap();
    let report = root.path().join("render.txt");
    let tray = start_tray(&desktop, &data_dir, &list, &report);
    let tray_pid = tray.id();
    desktop.adopt(tray);

    let listen = wait_for(Duration::from_secs(60), "the agent's status file", || {
        status_json(&data_dir).and_then(|s| s["listen"].as_str().map(str::to_owned))
    });
    let proxy = format!("http://{listen}");
    let allowed = origin("127.0.0.1");
    let pausable = origin("127.0.0.2");

    // One allowed and one blocked request.
    assert_eq!(curl(&proxy, &format!("http://{allowed}/page")), 200);
    assert_eq!(curl(&proxy, "http://blocked.test/casino"), 403);

    let listed = wait_for(
        Duration::from_secs(30),
        "the window to list the block",
        || {
            let text = std::fs::read_to_string(&report).ok()?;
            let blocks = recent_blocks_text(&text);
            blocks.contains("blocked.test").then_some(blocks)
        },
    );
    assert!(listed.contains("Gambling"), "{listed}");
    assert!(
        !listed.contains(&allowed.to_string()),
        "the allowed request is not listed as blocked: {listed}"
    );
    std::thread::sleep(Duration::from_millis(3000));
    desktop.screenshot(&shots.join("tray-window.png"));

    wait_for(Duration::from_secs(10), "the notification", || {
        let text = std::fs::read_to_string(&notifications).ok()?;
        text.contains("blocked.test was blocked (Gambling)")
            .then_some(())
    });

    // The window's settings, reached with the keyboard: Tab goes to the
    // pause button, the notification box, then the login entry box.
    desktop.type_keys("webwarden", &["Tab", "Tab", "Tab", "space"]);
    // The autostart plugin writes to ~/.config and ignores XDG_CONFIG_HOME.
    let entry = root.path().join("home/.config/autostart/webwarden.desktop");
    let entry = wait_for(Duration::from_secs(10), "the login entry", || {
        std::fs::read_to_string(&entry).ok()
    });
    assert!(entry.contains("webwarden-tray --hidden"), "{entry}");
    desktop.type_keys("webwarden", &["shift+Tab", "space"]);
    wait_for(Duration::from_secs(10), "notifications turned off", || {
        let text = std::fs::read_to_string(data_dir.join("tray-settings.json")).ok()?;
        text.contains("\"notifications\": false").then_some(())
    });
    assert_eq!(curl(&proxy, "http://quiet.test/"), 403);
    wait_for(
        Duration::from_secs(10),
        "the window to list the quiet block",
        || {
            let text = std::fs::read_to_string(&report).ok()?;
            recent_blocks_text(&text)
                .contains("quiet.test")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let calls = std::fs::read_to_string(&notifications).unwrap();
    assert!(
        !calls.contains("quiet.test"),
        "notified although turned off"
    );

    // The CA is not in this machine's stores for a throwaway data
    // directory, so the icon is amber (degraded), not green.
    let icon = desktop.tray_icon();
    wait_for(Duration::from_secs(10), "an amber tray icon", || {
        (desktop.count_colour(icon, AMBER) > 40).then_some(())
    });
    assert_eq!(desktop.count_colour(icon, GREEN), 0);

    // Pause from the tray menu: the icon turns red and blocked addresses
    // are let through, then resume restores filtering.
    assert_eq!(curl(&proxy, &format!("http://{pausable}/")), 403);
    desktop.pick_tray_entry(MENU_PAUSE);
    wait_for(Duration::from_secs(10), "the pause", || {
        status_json(&data_dir).and_then(|s| s["pausedUntil"].as_str().map(str::to_owned))
    });
    assert_eq!(curl(&proxy, &format!("http://{pausable}/")), 200);
    wait_for(Duration::from_secs(10), "a red tray icon", || {
        (desktop.count_colour(icon, RED) > 40).then_some(())
    });
    desktop.open_tray_menu();
    desktop.screenshot(&shots.join("tray-menu-paused.png"));
    desktop.run("xdotool", &["key", "Escape"]);

    desktop.pick_tray_entry(MENU_PAUSE);
    wait_for(Duration::from_secs(10), "the pause to end", || {
        status_json(&data_dir)
            .filter(|s| s["pausedUntil"].is_null())
            .map(|_| ())
    });
    assert_eq!(curl(&proxy, &format!("http://{pausable}/")), 403);

    // Closing the window hides it and filtering goes on.
    assert!(!desktop.visible_windows("webwarden").is_empty());
    desktop.close_windows("webwarden");
    wait_for(Duration::from_secs(10), "the window to close", || {
        desktop
            .visible_windows("webwarden")
            .is_empty()
            .then_some(())
    });
    assert_eq!(curl(&proxy, "http://blocked.test/again"), 403);

    // A second start shows the first one's window and exits.
    let mut second = start_tray(&desktop, &root.path().join("second"), &list, &report);
    let exited = wait_for(Duration::from_secs(20), "the second start to exit", || {
        second.try_wait().unwrap()
    });
    assert!(exited.success(), "{exited:?}");
    wait_for(Duration::from_secs(10), "the window to show again", || {
        (!desktop.visible_windows("webwarden").is_empty()).then_some(())
    });
    assert_eq!(status_json(&data_dir).unwrap()["pid"], tray_pid);

    // Quit stops the agent and the app.
    desktop.pick_tray_entry(MENU_QUIT);
    wait_for(Duration::from_secs(15), "the tray app to exit", || {
        let alive = Path::new(&format!("/proc/{tray_pid}/stat"))
            .exists()
            .then(|| std::fs::read_to_string(format!("/proc/{tray_pid}/stat")).unwrap_or_default())
            .is_some_and(|stat| !stat.contains(") Z "));
        (!alive).then_some(())
    });
    assert_ne!(
        curl(&proxy, &format!("http://{allowed}/")),
        200,
        "the proxy is gone"
    );
    let events = std::fs::read_to_string(data_dir.join("events.jsonl")).unwrap();
    assert!(events.contains("FilteringPaused"));
    assert!(events.contains("FilteringResumed"));
    assert!(
        events.contains("AgentStopped"),
        "the SIEM learns that filtering stopped"
    );
    let status = status_json(&data_dir).unwrap();
    assert!(status["stoppedAt"].is_string(), "{status}");
}
