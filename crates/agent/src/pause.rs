//! Pausing filtering for a while, when the policy allows it.
//!
//! The proxy reads its rules from its own [`SharedPolicy`]. Normally that
//! contains the lists' current policy. While paused it contains an empty
//! one, so every check (by host, by resolved address, for tunnels) lets
//! requests through and they are reported as allowed. The SIEM gets one event when
//! the pause starts and one when filtering runs again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use time::OffsetDateTime;
use webwarden_events::{
    AgentEvent, EventSender, FILTERING_PAUSED_EVENT_NAME, FILTERING_RESUMED_EVENT_NAME,
};
use webwarden_policy::{Policy, PolicyBuilder};
use webwarden_proxy::SharedPolicy;

/// The maximum pause the agent accepts.
pub const MAX_PAUSE: Duration = Duration::from_secs(60 * 60);

/// The reason a pause was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PauseError {
    /// The `[tray] allow_pause` setting is false.
    #[error("the administrator's policy does not allow pausing filtering")]
    NotAllowed,
    /// The duration is zero or longer than [`MAX_PAUSE`].
    #[error("a pause must last from 1 second to 60 minutes, not {0:?}")]
    BadDuration(Duration),
}

/// Switches the proxy between the lists' policy and no rules.
#[derive(Clone)]
pub struct PauseSwitch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PauseSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseSwitch")
            .field("allowed", &self.inner.allowed)
            .field("until", &self.paused_until())
            .finish_non_exhaustive()
    }
}

struct Inner {
    allowed: bool,
    lists: SharedPolicy,
    proxy: SharedPolicy,
    empty: Arc<Policy>,
    events: EventSender,
    /// The agent's runtime, which runs the timer that ends a pause; the
    /// tray app calls [`PauseSwitch::pause`] from its own thread.
    runtime: tokio::runtime::Handle,
    /// The end of the current pause; `None` while filtering.
    until: Mutex<Option<OffsetDateTime>>,
}

impl PauseSwitch {
    /// Creates the switch and the policy the proxy reads, which starts as
    /// the lists' policy. Must be called on the agent's runtime.
    pub fn new(lists: SharedPolicy, events: EventSender, allowed: bool) -> PauseSwitch {
        let proxy = Arc::new(ArcSwap::new(lists.load_full()));
        let empty = PolicyBuilder::new()
            .build()
            .expect("an empty policy compiles");
        PauseSwitch {
            inner: Arc::new(Inner {
                allowed,
                lists,
                proxy,
                empty: Arc::new(empty),
                events,
                runtime: tokio::runtime::Handle::current(),
                until: Mutex::new(None),
            }),
        }
    }

    /// Returns the policy the proxy reads.
    pub fn proxy_policy(&self) -> SharedPolicy {
        Arc::clone(&self.inner.proxy)
    }

    /// Returns the end of the current pause, or `None` while filtering.
    pub fn paused_until(&self) -> Option<OffsetDateTime> {
        *self.lock()
    }

    /// Pauses filtering for `duration` (a later call extends or shortens
    /// the pause) and returns its end. A task started here resumes
    /// filtering when the pause ends.
    ///
    /// # Errors
    ///
    /// Fails when the policy forbids pausing or the duration is out of range.
    pub fn pause(&self, duration: Duration) -> Result<OffsetDateTime, PauseError> {
        if !self.inner.allowed {
            return Err(PauseError::NotAllowed);
        }
        if duration.is_zero() || duration > MAX_PAUSE {
            return Err(PauseError::BadDuration(duration));
        }
        let until = OffsetDateTime::now_utc() + duration;
        {
            let mut current = self.lock();
            *current = Some(until);
            self.inner.proxy.store(Arc::clone(&self.inner.empty));
        }
        let minutes = duration.as_secs().div_ceil(60);
        tracing::warn!(minutes, "filtering paused by the employee");
        let mut event = AgentEvent::now(
            FILTERING_PAUSED_EVENT_NAME,
            format!("the employee paused filtering for {minutes} minutes"),
        );
        event.details.insert(
            "pausedUntil".into(),
            webwarden_events::Event::timestamp_of(until).into(),
        );
        self.inner.events.send(event);

        let switch = self.clone();
        self.inner.runtime.spawn(async move {
            tokio::time::sleep(duration).await;
            switch.resume_if(until);
        });
        Ok(until)
    }

    /// Ends the pause now. Does nothing while filtering.
    pub fn resume(&self) {
        let current = *self.lock();
        if let Some(until) = current {
            self.resume_if(until);
        }
    }

    /// Ends the pause that ends at `until`, unless another pause replaced it.
    fn resume_if(&self, until: OffsetDateTime) {
        {
            let mut current = self.lock();
            if *current != Some(until) {
                return;
            }
            *current = None;
            self.inner.proxy.store(self.inner.lists.load_full());
        }
        tracing::info!("filtering runs again after a pause");
        self.inner.events.send(AgentEvent::now(
            FILTERING_RESUMED_EVENT_NAME,
            "filtering runs again after a pause".to_owned(),
        ));
    }

    /// Hands a new list policy to the proxy unless paused; called after
    /// every list update.
    pub fn lists_changed(&self) {
        let current = self.lock();
        if current.is_none() {
            self.inner.proxy.store(self.inner.lists.load_full());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OffsetDateTime>> {
        self.inner.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use webwarden_events::{event_channel, SiemEvent};
    use webwarden_policy::{Action, Host, Target};

    use super::*;

    fn lists_blocking(host: &str) -> SharedPolicy {
        let mut builder = PolicyBuilder::new();
        builder.add_text(
            "test.csv",
            format!("{host},Test\n").as_bytes(),
            &Default::default(),
        );
        Arc::new(ArcSwap::from_pointee(builder.build().unwrap()))
    }

    fn action(policy: &SharedPolicy, host: &str) -> Action {
        let target = Target::new(Host::parse(host).unwrap(), None);
        policy.load().evaluate(&target).action
    }

    #[tokio::test(start_paused = true)]
    async fn pause_allows_until_end() {
        let lists = lists_blocking("blocked\\.test");
        let (events, rx) = event_channel(8);
        let switch = PauseSwitch::new(Arc::clone(&lists), events, true);
        let proxy = switch.proxy_policy();
        assert_eq!(action(&proxy, "blocked.test"), Action::Block);

        switch.pause(Duration::from_secs(15 * 60)).unwrap();
        assert_eq!(action(&proxy, "blocked.test"), Action::Allow);
        assert!(switch.paused_until().is_some());
        // A list update during the pause does not end it.
        switch.lists_changed();
        assert_eq!(action(&proxy, "blocked.test"), Action::Allow);

        tokio::time::sleep(Duration::from_secs(15 * 60 + 1)).await;
        assert_eq!(action(&proxy, "blocked.test"), Action::Block);
        assert_eq!(switch.paused_until(), None);

        let names: Vec<String> = std::iter::from_fn(|| rx.try_recv())
            .map(|event| match event {
                SiemEvent::Agent(event) => event.event_name,
                SiemEvent::Request(_) => panic!("no request events here"),
            })
            .collect();
        assert_eq!(
            names,
            [FILTERING_PAUSED_EVENT_NAME, FILTERING_RESUMED_EVENT_NAME]
        );
    }

    #[tokio::test]
    async fn policy_can_forbid_pausing() {
        let lists = lists_blocking("blocked\\.test");
        let (events, _rx) = event_channel(8);
        let switch = PauseSwitch::new(lists, events, false);
        assert_eq!(
            switch.pause(Duration::from_secs(60)),
            Err(PauseError::NotAllowed)
        );
        assert_eq!(
            action(&switch.proxy_policy(), "blocked.test"),
            Action::Block
        );
    }

    #[test]
    fn pause_from_thread_outside_runtime() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let switch = runtime.block_on(async {
            let (events, _rx) = event_channel(8);
            PauseSwitch::new(lists_blocking("blocked\\.test"), events, true)
        });
        // The tray app's menu runs on the GUI thread, outside any runtime.
        switch.pause(Duration::from_secs(60)).unwrap();
        assert!(switch.paused_until().is_some());
        switch.resume();
        assert_eq!(switch.paused_until(), None);
    }

    #[tokio::test]
    async fn resume_takes_newest_lists() {
        let lists = lists_blocking("blocked\\.test");
        let (events, _rx) = event_channel(8);
        let switch = PauseSwitch::new(Arc::clone(&lists), events, true);
        switch.pause(Duration::from_secs(60)).unwrap();
        lists.store(lists_blocking("other\\.test").load_full());
        switch.resume();
        let proxy = switch.proxy_policy();
        assert_eq!(action(&proxy, "other.test"), Action::Block);
        assert_eq!(action(&proxy, "blocked.test"), Action::Allow);
        assert!(switch.pause(Duration::ZERO).is_err());
        assert!(switch.pause(MAX_PAUSE + Duration::from_secs(1)).is_err());
    }
}
