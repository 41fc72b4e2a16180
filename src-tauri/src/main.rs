//! `webwarden-tray`: the webwarden tray app.

// Windows release builds open no console window beside the tray.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    webwarden_tray::main()
}
