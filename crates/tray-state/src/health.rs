//! The tray's three states and the words behind them.
//!
//! The agent reports its lists, SIEM sinks, CA trust and OS proxy
//! settings. [`assess`] turns that into filtering (all well), degraded
//! (filtering, but something needs attention) or stopped (not filtering).
//! It also words the status line that heads the tray menu, because Linux
//! trays show no tooltips.

use std::fmt;

/// The tray icon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    /// Filtering, and nothing needs attention.
    Filtering,
    /// Filtering, with at least one problem.
    Degraded,
    /// Not filtering: the agent is not running or filtering is paused.
    Stopped,
}

impl TrayState {
    /// Returns the lower-case name, such as `degraded`, which also names
    /// the state's tray icon.
    pub fn as_str(self) -> &'static str {
        match self {
            TrayState::Filtering => "filtering",
            TrayState::Degraded => "degraded",
            TrayState::Stopped => "stopped",
        }
    }
}

/// The agent's state, as the tray reads it from the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether the agent runs and responds.
    pub running: bool,
    /// When a pause ends, as the text to show, while filtering is paused.
    pub paused_until: Option<String>,
    /// Each list.
    pub lists: Vec<ListHealth>,
    /// Each SIEM sink.
    pub sinks: Vec<SinkHealth>,
    /// Whether every trust store found trusts the CA, when known.
    pub ca_trusted: Option<bool>,
    /// Whether every available OS proxy setting points at webwarden, when
    /// the agent manages them.
    pub system_proxy_set: Option<bool>,
}

/// One list's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListHealth {
    /// The list's path, URL or built-in name.
    pub name: String,
    /// Rules of the copy in use.
    pub rules: usize,
    /// Not confirmed current within the stale limit.
    pub stale: bool,
    /// The last failed check.
    pub last_error: Option<String>,
}

/// One SIEM sink's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkHealth {
    /// The sink's name.
    pub name: String,
    /// False after a failed delivery, until one succeeds.
    pub healthy: bool,
    /// Events queued for it.
    pub pending: u64,
}

/// Something that needs attention, in the order the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The agent is not running.
    NotRunning,
    /// Filtering is paused until the given time.
    Paused(String),
    /// No list has any rule, so nothing is blocked.
    NoRules,
    /// A list's last update failed.
    ListFailing(String),
    /// A list was not confirmed current for too long.
    ListStale(String),
    /// A SIEM sink cannot deliver; events wait in the queue.
    SiemUnreachable {
        /// The sink.
        name: String,
        /// Events queued for it.
        pending: u64,
    },
    /// A trust store does not trust webwarden's CA, so browsers show
    /// certificate errors.
    CaNotTrusted,
    /// The OS proxy settings do not point at webwarden, so traffic may
    /// bypass the filter.
    ProxyNotSet,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotRunning => write!(f, "webwarden is not running"),
            Problem::Paused(until) => write!(f, "paused until {until}"),
            Problem::NoRules => write!(f, "the block lists are empty"),
            Problem::ListFailing(name) => write!(f, "the list {name} failed to update"),
            Problem::ListStale(name) => write!(f, "the list {name} is out of date"),
            Problem::SiemUnreachable { name, pending } => {
                let events = if *pending == 1 { "event" } else { "events" };
                write!(
                    f,
                    "the SIEM ({name}) is unreachable, {pending} {events} queued"
                )
            }
            Problem::CaNotTrusted => write!(f, "the webwarden certificate is not trusted"),
            Problem::ProxyNotSet => write!(f, "the system proxy does not point at webwarden"),
        }
    }
}

/// The tray's view of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The icon's state.
    pub state: TrayState,
    /// Every problem, most important first.
    pub problems: Vec<Problem>,
    /// The first line of the tray menu.
    pub status_line: String,
}

/// Assesses `health`: stopped when the agent does not run or is paused,
/// degraded when anything needs attention, filtering otherwise.
pub fn assess(health: &Health) -> Assessment {
    let problems = problems(health);
    let stopped = !health.running || health.paused_until.is_some();
    let state = if stopped {
        TrayState::Stopped
    } else if problems.is_empty() {
        TrayState::Filtering
    } else {
        TrayState::Degraded
    };
    let status_line = status_line(state, &problems);
    Assessment {
        state,
        problems,
        status_line,
    }
}

fn problems(health: &Health) -> Vec<Problem> {
    if !health.running {
        return vec![Problem::NotRunning];
    }
    let mut problems = Vec::new();
    if let Some(until) = &health.paused_until {
        problems.push(Problem::Paused(until.clone()));
    }
    if health.lists.iter().all(|list| list.rules == 0) {
        problems.push(Problem::NoRules);
    }
    for list in &health.lists {
        if list.last_error.is_some() {
            problems.push(Problem::ListFailing(list.name.clone()));
        } else if list.stale {
            problems.push(Problem::ListStale(list.name.clone()));
        }
    }
    for sink in health.sinks.iter().filter(|sink| !sink.healthy) {
        problems.push(Problem::SiemUnreachable {
            name: sink.name.clone(),
            pending: sink.pending,
        });
    }
    if health.ca_trusted == Some(false) {
        problems.push(Problem::CaNotTrusted);
    }
    if health.system_proxy_set == Some(false) {
        problems.push(Problem::ProxyNotSet);
    }
    problems
}

fn status_line(state: TrayState, problems: &[Problem]) -> String {
    let first = problems.first().map(ToString::to_string);
    let more = match problems.len() {
        0 | 1 => String::new(),
        2 => " (and 1 more problem)".to_owned(),
        n => format!(" (and {} more problems)", n - 1),
    };
    match (state, first) {
        (TrayState::Filtering, _) | (_, None) => "Filtering: all is well".to_owned(),
        (TrayState::Degraded, Some(first)) => format!("Filtering, but {first}{more}"),
        (TrayState::Stopped, Some(first)) => format!("Not filtering: {first}{more}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        Health {
            running: true,
            paused_until: None,
            lists: vec![ListHealth {
                name: "https://lists.corp.test/blacklist.csv".to_owned(),
                rules: 1200,
                stale: false,
                last_error: None,
            }],
            sinks: vec![SinkHealth {
                name: "qradar-http https://qradar.corp.test:12469".to_owned(),
                healthy: true,
                pending: 0,
            }],
            ca_trusted: Some(true),
            system_proxy_set: Some(true),
        }
    }

    #[test]
    fn all_well_is_filtering() {
        let view = assess(&healthy());
        assert_eq!(view.state, TrayState::Filtering);
        assert!(view.problems.is_empty());
        assert_eq!(view.status_line, "Filtering: all is well");
    }

    #[test]
    fn unknown_ca_and_proxy_state_do_not_degrade() {
        let mut health = healthy();
        health.ca_trusted = None;
        health.system_proxy_set = None;
        assert_eq!(assess(&health).state, TrayState::Filtering);
    }

    /// A change that breaks one part of a healthy agent.
    type Breakage = fn(&mut Health);

    #[test]
    fn each_problem_degrades() {
        let cases: Vec<(Breakage, Problem)> = vec![
            (
                |h| h.lists[0].stale = true,
                Problem::ListStale("https://lists.corp.test/blacklist.csv".to_owned()),
            ),
            (
                |h| h.lists[0].last_error = Some("timed out".to_owned()),
                Problem::ListFailing("https://lists.corp.test/blacklist.csv".to_owned()),
            ),
            (|h| h.lists[0].rules = 0, Problem::NoRules),
            (
                |h| {
                    h.sinks[0].healthy = false;
                    h.sinks[0].pending = 120;
                },
                Problem::SiemUnreachable {
                    name: "qradar-http https://qradar.corp.test:12469".to_owned(),
                    pending: 120,
                },
            ),
            (|h| h.ca_trusted = Some(false), Problem::CaNotTrusted),
            (|h| h.system_proxy_set = Some(false), Problem::ProxyNotSet),
        ];
        for (break_it, expected) in cases {
            let mut health = healthy();
            break_it(&mut health);
            let view = assess(&health);
            assert_eq!(view.state, TrayState::Degraded, "{expected:?}");
            assert_eq!(view.problems, std::slice::from_ref(&expected));
            assert_eq!(view.status_line, format!("Filtering, but {expected}"));
        }
    }

    #[test]
    fn failing_list_is_not_also_stale() {
        let mut health = healthy();
        health.lists[0].stale = true;
        health.lists[0].last_error = Some("HTTP 503".to_owned());
        let view = assess(&health);
        assert_eq!(view.problems.len(), 1);
        assert!(matches!(view.problems[0], Problem::ListFailing(_)));
    }

    #[test]
    fn not_running_is_stopped_whatever_else() {
        let mut health = healthy();
        health.running = false;
        health.ca_trusted = Some(false);
        let view = assess(&health);
        assert_eq!(view.state, TrayState::Stopped);
        assert_eq!(view.problems, [Problem::NotRunning]);
        assert_eq!(view.status_line, "Not filtering: webwarden is not running");
    }

    #[test]
    fn paused_is_stopped_with_the_end_time() {
        let mut health = healthy();
        health.paused_until = Some("14:30".to_owned());
        let view = assess(&health);
        assert_eq!(view.state, TrayState::Stopped);
        assert_eq!(view.status_line, "Not filtering: paused until 14:30");
    }

    #[test]
    fn status_line_counts_further_problems() {
        let mut health = healthy();
        health.sinks[0].healthy = false;
        health.sinks[0].pending = 5;
        health.ca_trusted = Some(false);
        health.system_proxy_set = Some(false);
        let view = assess(&health);
        assert_eq!(view.problems.len(), 3);
        assert_eq!(
            view.status_line,
            "Filtering, but the SIEM (qradar-http https://qradar.corp.test:12469) is \
             unreachable, 5 events queued (and 2 more problems)"
        );

        health.system_proxy_set = Some(true);
        assert!(assess(&health)
            .status_line
            .ends_with(" (and 1 more problem)"));
    }

    #[test]
    fn no_lists_means_no_rules() {
        let mut health = healthy();
        health.lists.clear();
        assert_eq!(assess(&health).problems, [Problem::NoRules]);
    }
}
