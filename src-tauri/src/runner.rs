//! Runs the agent on its own thread and Tokio runtime, and feeds its blocks
//! and status to the tray, the window and the notifications.

use std::sync::Arc;
use std::time::Duration;

use tauri::{AppHandle, Runtime};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::error::RecvError;
use webwarden::{Agent, AgentHandle, BlockNotice, RunArgs};

use crate::shared::{refresh, Shared};

/// How often the tray and the window are refreshed without a block.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Starts the agent with `args` on a new thread. When it stops because of
/// Quit or a stop signal, the app exits. When it fails, the tray shows why.
pub fn spawn<R: Runtime>(app: AppHandle<R>, shared: Arc<Shared>, args: RunArgs) {
    let started = std::thread::Builder::new()
        .name("webwarden-agent".to_owned())
        .spawn(move || {
            // Multi-threaded: compiling a list blocks a worker in place.
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    stopped(
                        &app,
                        &shared,
                        Some(format!("failed to start the runtime: {err}")),
                    );
                    return;
                }
            };
            runtime.block_on(run(app, shared, args));
        });
    if let Err(err) = started {
        tracing::error!(error = %err, "failed to start the agent thread");
    }
}

async fn run<R: Runtime>(app: AppHandle<R>, shared: Arc<Shared>, args: RunArgs) {
    let agent = match Agent::start(&args).await {
        Ok(agent) => agent,
        Err(err) => {
            tracing::error!(error = %err, "webwarden failed to start");
            stopped(&app, &shared, Some(err.to_string()));
            if shared.quitting() {
                app.exit(0);
            }
            return;
        }
    };
    let handle = agent.handle();
    shared.agent_started(handle.clone());
    refresh(&app, &shared);
    let blocks = tokio::spawn(forward_blocks(app.clone(), Arc::clone(&shared), handle));
    let ticker = tokio::spawn(refresh_loop(app.clone(), Arc::clone(&shared)));
    let result = agent.wait().await;
    blocks.abort();
    ticker.abort();
    match result {
        Ok(()) => {
            // Quit, or a stop signal such as the session ending.
            stopped(&app, &shared, None);
            app.exit(0);
        }
        Err(err) => {
            tracing::error!(error = %err, "webwarden stopped with an error");
            stopped(&app, &shared, Some(err.to_string()));
            if shared.quitting() {
                app.exit(0);
            }
        }
    }
}

fn stopped<R: Runtime>(app: &AppHandle<R>, shared: &Shared, reason: Option<String>) {
    shared.agent_stopped(reason);
    refresh(app, shared);
}

async fn refresh_loop<R: Runtime>(app: AppHandle<R>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    loop {
        tick.tick().await;
        refresh(&app, &shared);
    }
}

/// Escapes the characters that notification markup reads, so a category
/// from the list is shown as written.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Lists each block in the window and raises the notifications the
/// limits allow. Blocks that arrived together share one refresh, so a burst
/// of blocks does not rebuild the view once per request.
async fn forward_blocks<R: Runtime>(app: AppHandle<R>, shared: Arc<Shared>, agent: AgentHandle) {
    let mut blocks = agent.subscribe_blocks();
    loop {
        match blocks.recv().await {
            Ok(notice) => notify(&app, &shared, &notice),
            Err(RecvError::Lagged(skipped)) => {
                tracing::debug!(skipped, "the tray fell behind the blocked requests");
            }
            Err(RecvError::Closed) => return,
        }
        while let Ok(notice) = blocks.try_recv() {
            notify(&app, &shared, &notice);
        }
        refresh(&app, &shared);
    }
}

/// Records one block and shows its notification, if any.
fn notify<R: Runtime>(app: &AppHandle<R>, shared: &Shared, notice: &BlockNotice) {
    let Some(notification) = shared.blocked(notice) else {
        return;
    };
    // Notification servers read a subset of HTML in the body.
    let result = app
        .notification()
        .builder()
        .title(format!("webwarden blocked {}", notification.host))
        .body(escape_markup(&notification.body()))
        .show();
    if let Err(err) = result {
        tracing::debug!(error = %err, "failed to show a notification");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_escaped() {
        assert_eq!(
            super::escape_markup("R&D <i>lab</i>"),
            "R&amp;D &lt;i&gt;lab&lt;/i&gt;"
        );
    }
}
