//! The webwarden tray app. It runs the same agent as `webwarden run` inside
//! its own process and shows the agent's state to the employee: a tray icon
//! (filtering, degraded, stopped), a menu whose first line states it in
//! words, a notification per block within limits, and a status window built
//! from `ui/`.
//!
//! The state comes from `webwarden-tray-state` and [`view`]. This crate
//! wires them to Tauri and adds no filtering of its own.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tauri::{RunEvent, WindowEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt};
use webwarden::RunArgs;

mod commands;
mod runner;
pub mod settings;
mod shared;
mod tray;
pub mod view;

pub use shared::Shared;

/// The argument the login entry passes, so the window stays hidden.
pub const HIDDEN_FLAG: &str = "--hidden";

/// The tray app's command line: the options of `webwarden run`, plus
/// `--hidden`.
#[derive(Debug, Parser)]
#[command(name = "webwarden-tray", version, about = "The webwarden tray app")]
pub struct TrayArgs {
    /// Start with the window hidden, as at login.
    #[arg(long)]
    pub hidden: bool,
    /// The agent's options, as for `webwarden run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the tray app until Quit or a stop signal.
pub fn main() -> ExitCode {
    view::read_local_offset();
    let args = TrayArgs::parse();
    webwarden::init_logging();
    let shared = Arc::new(Shared::default());
    let setup_shared = Arc::clone(&shared);
    let hidden = args.hidden;
    let run_args = args.run;
    let built = tauri::Builder::default()
        // First, so a second start only shows the first one's window.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            tray::show_window(app);
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec![HIDDEN_FLAG]),
        ))
        .plugin(tauri_plugin_opener::init())
        .manage(Arc::clone(&shared))
        .invoke_handler(tauri::generate_handler![
            commands::snapshot,
            commands::set_notifications,
            commands::set_autostart,
            commands::toggle_pause,
            commands::open_request_access,
            commands::window_rendered,
        ])
        .on_window_event(|window, event| {
            // Closing the window only hides it; filtering goes on.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .setup(move |app| {
            let handle = app.handle().clone();
            let shared = setup_shared;
            shared.set_autostart(handle.autolaunch().is_enabled().unwrap_or(false));
            tray::create(&handle, &shared.view())?;
            if !hidden {
                tray::show_window(&handle);
            }
            runner::spawn(handle, shared, run_args);
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match built {
        Ok(app) => app,
        Err(err) => {
            eprintln!("error: failed to start the tray app: {err}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|_, event| {
        // The last window closing does not end the app; Quit does.
        if let RunEvent::ExitRequested {
            api, code: None, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    ExitCode::SUCCESS
}
