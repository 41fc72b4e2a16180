//! The state that the tray app shows, kept apart from Tauri so it is tested
//! without a display:
//!
//! - [`health`]: turns the agent's state into one of three tray states and
//!   the words of the menu's status line.
//! - [`recent`]: the most recent blocked requests, for the window.
//! - [`limiter`]: decides which blocks raise a desktop notification.

pub mod health;
pub mod limiter;
pub mod recent;

pub use health::{assess, Assessment, Health, ListHealth, Problem, SinkHealth, TrayState};
pub use limiter::{Notification, NotificationLimiter};
pub use recent::{BlockedRequest, RecentBlocks};
