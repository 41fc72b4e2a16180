//! What webwarden changes in the operating system, each part behind a
//! trait with one implementation per OS:
//!
//! - [`command`]: runs the OS tools these parts call, with errors that name
//!   the tool and the package that provides it.
//! - [`secret`]: one secret in the OS keychain, or in an owner-only file
//!   where no keychain exists.

pub mod command;
pub mod secret;
