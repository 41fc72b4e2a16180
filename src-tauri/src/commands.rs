//! The commands the status window calls.

use std::sync::Arc;

use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use crate::shared::{refresh, Shared};
use crate::view::View;

/// Returns what the window shows now.
#[tauri::command]
pub fn snapshot(shared: State<'_, Arc<Shared>>) -> View {
    shared.view()
}

/// Turns block notifications on or off, unless the policy forces them.
#[tauri::command]
pub fn set_notifications(
    app: AppHandle,
    shared: State<'_, Arc<Shared>>,
    enabled: bool,
) -> Result<View, String> {
    shared
        .set_notifications(enabled)
        .map_err(|err| format!("{err:#}"))?;
    refresh(&app, &shared);
    Ok(shared.view())
}

/// Adds or removes the entry that starts the tray app at login.
#[tauri::command]
pub fn set_autostart(
    app: AppHandle,
    shared: State<'_, Arc<Shared>>,
    enabled: bool,
) -> Result<View, String> {
    let launcher = app.autolaunch();
    let changed = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    changed.map_err(|err| format!("failed to change the login entry: {err}"))?;
    shared.set_autostart(launcher.is_enabled().unwrap_or(enabled));
    refresh(&app, &shared);
    Ok(shared.view())
}

/// Pauses filtering for 15 minutes, or resumes it while paused.
#[tauri::command]
pub fn toggle_pause(app: AppHandle, shared: State<'_, Arc<Shared>>) -> View {
    crate::tray::toggle_pause(&shared);
    refresh(&app, &shared);
    shared.view()
}

/// Opens the administrator's request-access link in the default browser.
/// The link comes from the policy, never from the window.
#[tauri::command]
pub fn open_request_access(app: AppHandle, shared: State<'_, Arc<Shared>>) -> Result<(), String> {
    use tauri_plugin_opener::OpenerExt;

    let Some(url) = shared.request_access_url() else {
        return Err("the administrator has not set a request-access link".to_owned());
    };
    app.opener()
        .open_url(&url, None::<&str>)
        .map_err(|err| format!("failed to open {url}: {err}"))
}

/// Receives the window's rendered text. With `WEBWARDEN_TRAY_RENDER_REPORT`
/// set to a file path, writes it there, so an end-to-end test can check
/// what the real window shows.
#[tauri::command]
pub fn window_rendered(text: String) {
    let Some(path) = std::env::var_os("WEBWARDEN_TRAY_RENDER_REPORT") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), error = %err, "failed to write the render report");
    }
}
