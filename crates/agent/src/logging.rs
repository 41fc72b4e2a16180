//! Log output: `tracing` to stderr, filtered by `RUST_LOG`. Long-running
//! commands default to `info`, with hudsucker's per-request spans and the
//! shutdown library's steps at `warn`, since spans cost time per request.
//! Short commands default to `warn`, so their own output stays readable.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber for a long-running command; later calls
/// do nothing.
pub fn init() {
    init_with_default("info,hudsucker=warn,tokio_graceful=warn");
}

/// Installs the stderr subscriber with `default` as the filter when
/// `RUST_LOG` is unset; later calls do nothing.
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
