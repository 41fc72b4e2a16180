//! Blacklists for webwarden: reading list files and deciding, fast and
//! exactly, whether a host or IP address is blocked and by which rule.
//!
//! - [`host`]: normalizing targets (URL, host, `host:port`, IP) to the
//!   canonical form rules are compared with.
//! - [`source`]: the list formats (CSV `regex,category[,action]`, hosts
//!   files, domain lists, IP/CIDR lists) and their bad-row reports, and
//!   [`source::read_entries`], which returns the entries of a hosts file,
//!   domain list or IP list without compiling them.
//! - [`Policy`]: the compiled matcher and its [`Verdict`]s.
//! - [`NaiveMatcher`]: a first-match regex scan that defines the meaning the
//!   compiled matcher must keep; tests and benchmarks compare the two.
//!
//! The crate reads the files it is given and does no other I/O.
//!
//! ```
//! use webwarden_policy::{Action, PolicyBuilder, SourceOptions, Target};
//!
//! let mut builder = PolicyBuilder::new();
//! let list = b".*4399\\.com,Entertainment\n(.*\\.)?hacker\\.com,Malicious Host\n";
//! builder.add_text("blacklist.csv", list, &SourceOptions::default());
//! let policy = builder.build().unwrap();
//!
//! let verdict = policy.evaluate(&Target::parse("https://www.4399.com/games").unwrap());
//! assert_eq!(verdict.action, Action::Block);
//! assert_eq!(verdict.rule.unwrap().category, "Entertainment");
//! assert_eq!(verdict.rule.unwrap().line, 1);
//! ```

pub mod host;
mod literal_table;
mod matcher;
mod naive;
mod pattern;
mod policy;
pub mod source;

pub use host::{Host, HostError, Target};
pub use naive::NaiveMatcher;
pub use pattern::{compile_rule_regex, full_match_regex};
pub use policy::{
    KindCounts, LoadError, MatchedOn, MatchedRule, Policy, PolicyBuilder, SourceOptions,
    SourceSummary, Verdict, MAX_KEPT_BAD_ROWS,
};
pub use source::{Action, BadRow, Format, DEFAULT_CATEGORY};
