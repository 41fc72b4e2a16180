//! What webwarden changes in the operating system, each part behind a
//! trait with one implementation per OS:
//!
//! - [`command`]: runs the OS tools these parts call, with errors that name
//!   the tool and the package that provides it.
//! - [`sysproxy`]: points the OS proxy settings at webwarden's PAC file and
//!   restores the user's settings, also after a crash.

pub mod command;
pub mod sysproxy;
