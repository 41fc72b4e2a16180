//! The changes webwarden makes to the operating system, each part behind a
//! trait with one implementation per OS:
//!
//! - [`command`]: runs the OS tools these parts call, with errors that name
//!   the tool and the package that provides it.
//! - [`file`](mod@file): reads small files named by users without hanging on a FIFO
//!   or reading a huge file into memory.
//! - [`secret`]: one secret in the OS keychain, or in an owner-only file
//!   where no keychain exists.
//! - [`sysproxy`]: points the OS proxy settings at webwarden's PAC file and
//!   restores the user's settings, also after a crash.
//! - [`trust`]: adds the root CA to the system and browser trust stores,
//!   removes it, and reports whether each store trusts it.

pub mod command;
pub mod file;
pub mod secret;
pub mod sysproxy;
pub mod trust;
