use time::macros::datetime;
use webwarden::{AgentStatus, ListStatus, SinkView};
use webwarden_tray_state::BlockedRequest;

use super::*;

fn running_status() -> AgentStatus {
    AgentStatus {
        listen: "127.0.0.1:8899".to_owned(),
        list_version: "0123456789ab".to_owned(),
        lists: vec![ListStatus {
            source: "https://lists.corp.test/blacklist.csv".to_owned(),
            rules: 1200,
            checked_at: Some("2026-12-05T10:00:00Z".to_owned()),
            ..ListStatus::default()
        }],
        sinks: vec![SinkView {
            name: "qradar-http https://qradar.corp.test:12469".to_owned(),
            pending: 0,
            healthy: true,
            last_error: None,
        }],
        ..AgentStatus::default()
    }
}

fn view_of(phase: &Phase, status: Option<AgentStatus>, policy: &TraySection) -> View {
    let mut recent = RecentBlocks::new(10);
    recent.push(BlockedRequest {
        time: "2026-12-05T10:01:00Z".to_owned(),
        host: "casino.test".to_owned(),
        category: "Gambling".to_owned(),
    });
    build(ViewInput {
        phase,
        status,
        policy,
        recent: &recent,
        notifications: false,
        autostart: true,
    })
}

#[test]
fn running_agent_lists_blocks() {
    let view = view_of(
        &Phase::Running,
        Some(running_status()),
        &TraySection::default(),
    );
    assert_eq!(view.state, "filtering");
    assert_eq!(view.status_line, "Filtering: all is well");
    assert_eq!(view.recent[0].host, "casino.test");
    assert!(view.can_pause);
    assert!(view.can_quit);
    let lines = menu_lines(&view, datetime!(2026-12-05 10:05 UTC));
    assert_eq!(
        lines.lists,
        "Lists: version 0123456789ab, checked 5 min ago"
    );
    assert_eq!(lines.queued, "Events waiting for the SIEM: 0");
    assert_eq!(lines.pause, Some(PAUSE_LABEL));
}

#[test]
fn unreachable_siem_counts_queue() {
    let mut status = running_status();
    status.sinks[0].healthy = false;
    status.sinks[0].pending = 120;
    let view = view_of(&Phase::Running, Some(status), &TraySection::default());
    assert_eq!(view.state, "degraded");
    assert_eq!(view.queued, 120);
    assert!(
        view.status_line.contains("120 events queued"),
        "{}",
        view.status_line
    );
}

#[test]
fn failed_start_shows_reason() {
    let policy = TraySection {
        allow_quit: false,
        ..TraySection::default()
    };
    let phase = Phase::Stopped(Some("address in use".to_owned()));
    let view = view_of(&phase, None, &policy);
    assert_eq!(view.state, "stopped");
    assert_eq!(view.error.as_deref(), Some("address in use"));
    assert!(!view.can_pause, "nothing to pause");
    assert!(view.can_quit, "quitting a stopped agent weakens nothing");
}

#[test]
fn policy_hides_pause_and_quit() {
    let policy = TraySection {
        allow_pause: false,
        allow_quit: false,
        force_notifications: true,
        request_access_url: Some("https://it.corp.test/access".to_owned()),
    };
    let view = view_of(&Phase::Running, Some(running_status()), &policy);
    let lines = menu_lines(&view, datetime!(2026-12-05 10:05 UTC));
    assert_eq!(lines.pause, None);
    assert!(!lines.quit);
    assert!(view.notifications.enabled);
    assert!(view.notifications.forced);
    assert_eq!(
        view.request_access_url.as_deref(),
        Some("https://it.corp.test/access")
    );
}

#[test]
fn paused_agent_offers_resume() {
    let mut status = running_status();
    status.paused_until = Some("2026-12-05T10:20:00Z".to_owned());
    let view = view_of(&Phase::Running, Some(status), &TraySection::default());
    assert_eq!(view.state, "stopped");
    assert!(view.status_line.starts_with("Not filtering: paused until"));
    let lines = menu_lines(&view, datetime!(2026-12-05 10:05 UTC));
    assert_eq!(lines.pause, Some(RESUME_LABEL));
}

#[test]
fn starting_agent_says_so() {
    let view = view_of(&Phase::Starting, None, &TraySection::default());
    assert_eq!(view.status_line, "Starting webwarden…");
    assert!(
        !view.can_quit,
        "the policy is not known before the agent starts"
    );
    assert_eq!(
        menu_lines(&view, datetime!(2026-12-05 10:05 UTC)).lists,
        "Lists: not loaded"
    );
}

#[test]
fn unparsed_clock_time_kept() {
    assert_eq!(clock_time("not a time"), "not a time");
}
