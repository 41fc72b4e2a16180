//! The tray icon and its menu. Linux trays show no tooltips, so the menu's
//! first line states the status in words.

use std::sync::Mutex;
use std::time::Duration;

use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};
use time::OffsetDateTime;

use crate::shared::{refresh, Shared};
use crate::view::{menu_lines, MenuLines, View};

/// The tray icon's ID.
pub const TRAY_ID: &str = "webwarden";

/// The duration of "Pause filtering".
pub const PAUSE_FOR: Duration = Duration::from_secs(15 * 60);

const OPEN_ID: &str = "open";
const PAUSE_ID: &str = "pause";
const QUIT_ID: &str = "quit";

/// Returns the icon of a view state (`filtering`, `degraded`, `stopped`).
pub fn icon(state: &str) -> Image<'static> {
    let bytes: &'static [u8] = match state {
        "filtering" => include_bytes!("../icons/tray-filtering.png"),
        "degraded" => include_bytes!("../icons/tray-degraded.png"),
        _ => include_bytes!("../icons/tray-stopped.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are valid PNG files")
}

/// The menu entries whose text changes.
struct Items<R: Runtime> {
    status: MenuItem<R>,
    lists: MenuItem<R>,
    queued: MenuItem<R>,
    pause: Option<MenuItem<R>>,
    lines: MenuLines,
    state: &'static str,
}

/// The current menu, kept as managed state.
struct TrayMenu<R: Runtime>(Mutex<Option<Items<R>>>);

/// Creates the tray icon with the stopped icon and a menu for `view`.
///
/// # Errors
///
/// Returns Tauri's error when the tray or its menu cannot be created.
pub fn create<R: Runtime>(app: &AppHandle<R>, view: &View) -> tauri::Result<()> {
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon("stopped"))
        .tooltip("webwarden")
        .show_menu_on_left_click(true)
        .on_menu_event(on_menu_event)
        .build(app)?;
    app.manage(TrayMenu::<R>(Mutex::new(None)));
    update(app, view);
    Ok(())
}

/// Shows `view` in the tray: the icon, the status line, the list and
/// queue lines, and the pause and quit entries the policy allows.
pub fn update<R: Runtime>(app: &AppHandle<R>, view: &View) {
    let (Some(tray), Some(menu)) = (app.tray_by_id(TRAY_ID), app.try_state::<TrayMenu<R>>()) else {
        return;
    };
    let lines = menu_lines(view, OffsetDateTime::now_utc());
    let mut items = menu.0.lock().unwrap_or_else(|p| p.into_inner());
    let same_shape = items.as_ref().is_some_and(|items| {
        items.lines.pause.is_some() == lines.pause.is_some() && items.lines.quit == lines.quit
    });
    if same_shape {
        let items = items.as_mut().expect("checked above");
        set_text(&items.status, &items.lines.status, &lines.status);
        set_text(&items.lists, &items.lines.lists, &lines.lists);
        set_text(&items.queued, &items.lines.queued, &lines.queued);
        if let (Some(item), Some(old), Some(new)) = (&items.pause, items.lines.pause, lines.pause) {
            set_text(item, old, new);
        }
        items.lines = lines;
    } else {
        match build_menu(app, lines) {
            Ok((new_menu, new_items)) => {
                if let Err(err) = tray.set_menu(Some(new_menu)) {
                    tracing::warn!(error = %err, "failed to set the tray menu");
                }
                let state = items.as_ref().map_or("", |items| items.state);
                *items = Some(Items { state, ..new_items });
            }
            Err(err) => tracing::warn!(error = %err, "failed to build the tray menu"),
        }
    }
    if let Some(items) = items.as_mut() {
        if items.state != view.state {
            items.state = view.state;
            if let Err(err) = tray.set_icon(Some(icon(view.state))) {
                tracing::warn!(error = %err, "failed to set the tray icon");
            }
            let _ = tray.set_tooltip(Some(&items.lines.status));
        }
    }
}

/// Doubles `&`, which menus otherwise take as a mnemonic marker and hide.
fn menu_text(text: &str) -> String {
    text.replace('&', "&&")
}

fn set_text<R: Runtime>(item: &MenuItem<R>, old: &str, new: &str) {
    if old != new {
        if let Err(err) = item.set_text(menu_text(new)) {
            tracing::debug!(error = %err, "failed to change a tray menu entry");
        }
    }
}

fn build_menu<R: Runtime>(
    app: &AppHandle<R>,
    lines: MenuLines,
) -> tauri::Result<(Menu<R>, Items<R>)> {
    let label = |text: &str| MenuItem::new(app, menu_text(text), false, None::<&str>);
    let status = label(&lines.status)?;
    let lists = label(&lines.lists)?;
    let queued = label(&lines.queued)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &lists,
            &queued,
            &PredefinedMenuItem::separator(app)?,
        ],
    )?;
    menu.append(&MenuItem::with_id(
        app,
        OPEN_ID,
        "Open webwarden",
        true,
        None::<&str>,
    )?)?;
    let pause = match lines.pause {
        Some(text) => {
            let item = MenuItem::with_id(app, PAUSE_ID, text, true, None::<&str>)?;
            menu.append(&item)?;
            Some(item)
        }
        None => None,
    };
    if lines.quit {
        menu.append(&PredefinedMenuItem::separator(app)?)?;
        menu.append(&MenuItem::with_id(
            app,
            QUIT_ID,
            "Quit",
            true,
            None::<&str>,
        )?)?;
    }
    let items = Items {
        status,
        lists,
        queued,
        pause,
        lines,
        state: "",
    };
    Ok((menu, items))
}

fn on_menu_event<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    let shared = app.state::<std::sync::Arc<Shared>>();
    match event.id().as_ref() {
        OPEN_ID => show_window(app),
        PAUSE_ID => {
            toggle_pause(&shared);
            refresh(app, &shared);
        }
        QUIT_ID => quit(app, &shared),
        _ => {}
    }
}

/// Pauses filtering for [`PAUSE_FOR`], or resumes it while paused.
pub fn toggle_pause(shared: &Shared) {
    let Some(agent) = shared.agent() else { return };
    if agent.paused_until().is_some() {
        agent.resume();
    } else if let Err(err) = agent.pause(PAUSE_FOR) {
        tracing::warn!(error = %err, "failed to pause filtering");
    }
}

/// Stops the agent, which restores the OS proxy settings, and exits once
/// it has stopped.
pub fn quit<R: Runtime>(app: &AppHandle<R>, shared: &Shared) {
    if !shared.view().can_quit {
        tracing::warn!("quitting is not allowed by the administrator's policy");
        return;
    }
    shared.start_quitting();
    match shared.agent() {
        Some(agent) => agent.stop(),
        None => app.exit(0),
    }
}

/// Shows and focuses the status window.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}
