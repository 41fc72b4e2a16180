//! A throwaway desktop for the tray app: Xvfb, a D-Bus session bus, the
//! `trayer` tray host, and helpers to click and screenshot it with
//! `xdotool` and ImageMagick's `import`. Every program runs with its own
//! home and runtime directories and is ended by PID when the desktop drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The programs the desktop needs, with the Debian package of each.
const PROGRAMS: [(&str, &str); 8] = [
    ("Xvfb", "xvfb"),
    ("dbus-daemon", "dbus-daemon"),
    ("dbus-monitor", "dbus-bin"),
    ("trayer", "trayer"),
    ("xdotool", "xdotool"),
    ("import", "imagemagick"),
    ("dunst", "dunst"),
    ("python3", "python3"),
];

/// dunst's settings: notifications at the bottom right, clear of the tray
/// menu, which opens under the icon at the top right.
const DUNSTRC: &str = "[global]\norigin = bottom-right\noffset = 10x10\n";

/// A running throwaway desktop.
pub struct Desktop {
    pub display: String,
    pub bus: String,
    pub root: PathBuf,
    children: Vec<Child>,
}

/// Returns a missing program and its package, if any.
pub fn missing_program() -> Option<(&'static str, &'static str)> {
    PROGRAMS.into_iter().find(|(program, _)| {
        !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|dir| dir.join(program).is_file())
    })
}

impl Desktop {
    /// Starts Xvfb on a free display, a session bus and the tray host.
    pub fn start(root: &Path) -> Desktop {
        for dir in ["home", "run", "config", "data", "cache"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        set_mode_700(&root.join("run"));
        // The session bus starts dunst on the first notification.
        std::fs::create_dir_all(root.join("config/dunst")).unwrap();
        std::fs::write(root.join("config/dunst/dunstrc"), DUNSTRC).unwrap();
        let mut desktop = Desktop {
            display: String::new(),
            bus: String::new(),
            root: root.to_owned(),
            children: Vec::new(),
        };

        // -displayfd picks a free display and prints its number.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24"])
            .args(["-nolisten", "tcp", "-nolisten", "local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        desktop.children.push(xvfb);
        desktop.display = format!(":{}", line.trim());

        let mut bus = desktop
            .command("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        desktop.children.push(bus);
        desktop.bus = address.trim().to_owned();
        assert!(!desktop.bus.is_empty(), "dbus-daemon printed no address");

        let trayer = desktop
            .command("trayer")
            .args(["--edge", "top", "--align", "right", "--widthtype", "pixel"])
            .args(["--width", "120", "--height", "32", "--transparent", "false"])
            .args(["--tint", "0x333333", "--SetDockType", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("trayer starts");
        desktop.children.push(trayer);
        desktop
    }

    /// Returns a command that runs inside this desktop, with its display,
    /// bus and directories and nothing of the caller's session.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("XDG_RUNTIME_DIR", self.root.join("run"))
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("XDG_DATA_HOME", self.root.join("data"))
            .env("XDG_CACHE_HOME", self.root.join("cache"))
            .env("WEBWARDEN_POLICY_FILE", self.root.join("no-policy.toml"))
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC");
        if !self.display.is_empty() {
            command.env("DISPLAY", &self.display);
        }
        if !self.bus.is_empty() {
            command.env("DBUS_SESSION_BUS_ADDRESS", &self.bus);
        }
        command
    }

    /// Keeps `child` to be ended when the desktop drops.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Runs an X tool and returns its output, failing the test on error.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Saves a screenshot of the whole screen.
    pub fn screenshot(&self, path: &Path) {
        self.run("import", &["-window", "root", path.to_str().unwrap()]);
    }

    /// Counts the pixels of `colour` (`#RRGGBB`) in the 32 by 32 square
    /// centred on `(x, y)`.
    pub fn count_colour(&self, (x, y): (u32, u32), colour: &str) -> usize {
        let crop = format!("32x32+{}+{}", x.saturating_sub(16), y.saturating_sub(16));
        let output = self.run(
            "import",
            &["-window", "root", "-crop", &crop, "-depth", "8", "txt:-"],
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains(&format!("{colour} ")) || line.ends_with(colour))
            .count()
    }

    /// Returns the centre of the tray icon, at the right end of trayer's
    /// panel. The panel is trayer's widest window, because the others are
    /// hidden helpers, and it contains only the tray app's icon.
    pub fn tray_icon(&self) -> (u32, u32) {
        let output = self.run("xdotool", &["search", "--sync", "--class", "trayer"]);
        let windows = String::from_utf8_lossy(&output.stdout).into_owned();
        let (x, y, width, height) = windows
            .lines()
            .map(|window| self.geometry(window))
            .max_by_key(|&(_, _, width, _)| width)
            .expect("trayer has a window");
        (x + width - height / 2, y + height / 2)
    }

    /// Returns a window's X, Y, width and height.
    fn geometry(&self, window: &str) -> (u32, u32, u32, u32) {
        let output = self.run("xdotool", &["getwindowgeometry", "--shell", window]);
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |name: &str| -> u32 {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (field("X"), field("Y"), field("WIDTH"), field("HEIGHT"))
    }

    /// Returns the visible windows titled exactly `title`.
    pub fn visible_windows(&self, title: &str) -> Vec<String> {
        let pattern = format!("^{title}$");
        let output = self
            .command("xdotool")
            .args(["search", "--onlyvisible", "--name", &pattern])
            .output()
            .unwrap();
        // xdotool exits with 1 when nothing matches.
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Asks each visible window titled `title` to close, as a window
    /// manager's close button does.
    pub fn close_windows(&self, title: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/desktop/close_window.py");
        for window in self.visible_windows(title) {
            self.run("python3", &[script, &window]);
        }
    }

    /// Gives the keyboard focus to the visible window titled `title` and
    /// types `keys`, such as `["Tab", "space"]`.
    pub fn type_keys(&self, title: &str, keys: &[&str]) {
        let window = self.visible_windows(title).into_iter().next().unwrap();
        self.run("xdotool", &["windowfocus", "--sync", &window]);
        for key in keys {
            self.run("xdotool", &["key", key]);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Opens the tray menu with a click on the icon.
    pub fn open_tray_menu(&self) {
        let (x, y) = self.tray_icon();
        self.run(
            "xdotool",
            &["mousemove", &x.to_string(), &y.to_string(), "click", "1"],
        );
        std::thread::sleep(Duration::from_millis(800));
    }

    /// Opens the tray menu and picks the `n`th enabled entry (1-based) with
    /// the keyboard, which does not depend on fonts or entry heights.
    pub fn pick_tray_entry(&self, n: usize) {
        self.open_tray_menu();
        for _ in 0..n {
            self.run("xdotool", &["key", "Down"]);
            std::thread::sleep(Duration::from_millis(250));
        }
        self.run("xdotool", &["key", "Return"]);
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        // Reverse order: the tray app and trayer before the bus and display.
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn set_mode_700(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Waits up to `limit` for `check` to return `Some`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
