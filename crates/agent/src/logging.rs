//! Log output for long-running commands: `tracing` to stderr, filtered by
//! `RUST_LOG` (default `info`, with hudsucker's per-request spans and the
//! shutdown library's steps at `warn`, since spans cost time per request).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hudsucker=warn,tokio_graceful=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
