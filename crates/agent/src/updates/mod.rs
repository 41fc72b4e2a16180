//! The lists of a running agent: local files and downloaded lists, checked
//! on a schedule and replaced only by a copy that passes every check.
//!
//! A new copy must parse (with the strict setting), hold rules, not shrink
//! below a fraction of the last good copy unless allowed, and carry a valid
//! detached signature when a public key is configured. The combined policy
//! is then rebuilt and swapped in atomically: requests in flight finish on
//! the old one. Each update, rejection and staleness is logged, exported as
//! an agent event and written to the status file.

mod cache;
mod fetch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use url::Url;
use webwarden_events::{AgentEvent, Event, EventSender, IdentityHandle, TlsFiles};
use webwarden_policy::{Policy, PolicyBuilder};

pub use cache::sha256_hex;
use cache::{Cached, CachedMeta};
use fetch::{Fetched, Fetcher, Validators};

use crate::lists::{ListSpec, DEFAULT_LIST, DEFAULT_LIST_NAME};

/// The largest detached signature downloaded; minisign's are under 1 KiB.
const MAX_SIGNATURE_BYTES: u64 = 16 * 1024;

/// The maximum refresh interval: a week.
const MAX_REFRESH_SECONDS: u64 = 7 * 24 * 3600;

/// `eventName` of a list that replaced the previous copy.
pub const LIST_UPDATED: &str = "ListUpdated";
/// `eventName` of a downloaded or changed list that failed a check.
pub const LIST_REJECTED: &str = "ListRejected";
/// `eventName` of a list not confirmed current for too long.
pub const LIST_STALE: &str = "ListStale";

/// The refresh and check settings of the lists.
#[derive(Debug, Clone)]
pub struct UpdateSettings {
    /// Time between checks, before jitter.
    pub refresh: Duration,
    /// Bound on one download.
    pub timeout: Duration,
    /// Largest accepted list.
    pub max_bytes: u64,
    /// A new copy with fewer rules than this fraction of the last good one
    /// is rejected unless `allow_shrink` is set.
    pub min_fraction: f64,
    /// Accept a copy however much it shrank.
    pub allow_shrink: bool,
    /// Minisign public key; when set, every list needs a valid signature.
    pub public_key: Option<String>,
    /// Allow `http://` lists on hosts other than loopback.
    pub allow_http: bool,
    /// Age after which a list not confirmed current is reported stale.
    pub stale_after: Duration,
    /// Reject lists with any bad row.
    pub strict: bool,
    /// TLS roots for list servers besides the OS store.
    pub tls: TlsFiles,
}

impl Default for UpdateSettings {
    fn default() -> UpdateSettings {
        UpdateSettings {
            refresh: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(30),
            max_bytes: 64 * 1024 * 1024,
            min_fraction: 0.5,
            allow_shrink: false,
            public_key: None,
            allow_http: false,
            stale_after: Duration::from_secs(24 * 3600),
            strict: false,
            tls: TlsFiles::default(),
        }
    }
}

/// Builds the update settings from the `[updates]` table and the flags.
///
/// # Errors
///
/// Fails on a value that cannot work, naming it and the fix.
pub fn settings(
    section: &crate::config::UpdatesSection,
    refresh_flag: Option<u64>,
    strict: bool,
) -> anyhow::Result<UpdateSettings> {
    let defaults = UpdateSettings::default();
    let refresh = refresh_flag.or(section.refresh_seconds);
    if refresh == Some(0) {
        return Err(anyhow!(
            "a refresh interval of 0 seconds would check without pause; use at least 1 (the default is {})",
            defaults.refresh.as_secs()
        ));
    }
    if refresh.is_some_and(|seconds| seconds > MAX_REFRESH_SECONDS) {
        return Err(anyhow!(
            "a refresh interval of {} seconds is over the limit of {MAX_REFRESH_SECONDS} (a week); agents would not see list changes",
            refresh.unwrap_or_default()
        ));
    }
    if section.timeout_seconds == Some(0) {
        return Err(anyhow!(
            "timeout_seconds = 0 would fail every download; use at least 1"
        ));
    }
    let min_fraction = section.min_fraction.unwrap_or(defaults.min_fraction);
    if !(min_fraction > 0.0 && min_fraction <= 1.0) {
        return Err(anyhow!(
            "min_fraction = {min_fraction} is not between 0 and 1; 0.5 rejects a list that lost half its rules"
        ));
    }
    if section.max_bytes.is_some_and(|bytes| bytes < 1024) {
        return Err(anyhow!(
            "max_bytes under 1024 cannot hold a list; the default is {}",
            defaults.max_bytes
        ));
    }
    Ok(UpdateSettings {
        refresh: refresh.map_or(defaults.refresh, Duration::from_secs),
        timeout: section
            .timeout_seconds
            .map_or(defaults.timeout, Duration::from_secs),
        max_bytes: section.max_bytes.unwrap_or(defaults.max_bytes),
        min_fraction,
        allow_shrink: section.allow_shrink,
        public_key: section.public_key.clone(),
        allow_http: section.allow_http,
        stale_after: section
            .stale_after_seconds
            .map_or(defaults.stale_after, Duration::from_secs),
        strict,
        tls: TlsFiles {
            ca_file: section.ca_file.clone(),
            ..TlsFiles::default()
        },
    })
}

/// The state of one list, as the status file shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListStatus {
    /// The path, URL or built-in name.
    pub source: String,
    /// SHA-256 of the copy in use, in hex, or empty when none is loaded.
    pub sha256: String,
    /// Rules of the copy in use.
    pub rules: usize,
    /// When the copy in use was downloaded or read, RFC 3339.
    pub loaded_at: Option<String>,
    /// When the source last confirmed the copy is current, RFC 3339.
    pub checked_at: Option<String>,
    /// The last failed check, or `None` when the last check succeeded.
    pub last_error: Option<String>,
    /// True when the copy was not confirmed current within the stale limit.
    pub stale: bool,
}

/// The counts of a copy that passed its checks.
struct Checked {
    rules: usize,
    bad_rows: usize,
}

/// One source and its last good copy.
struct Source {
    spec: ListSpec,
    bytes: Option<Arc<Vec<u8>>>,
    validators: Validators,
    /// The detached signature of the copy in use, for the cache.
    signature: Option<Vec<u8>>,
    /// File size and modification time of a local list when last read.
    file_stamp: Option<(u64, SystemTime)>,
    /// When the source last confirmed the copy is current.
    checked: Option<SystemTime>,
    stale_reported: bool,
    status: ListStatus,
}

impl Source {
    /// Records that the source confirmed the copy in use is current.
    fn confirmed(&mut self) {
        self.checked = Some(SystemTime::now());
        self.stale_reported = false;
        self.status.checked_at = Some(now_text());
        self.status.last_error = None;
        self.status.stale = false;
    }
}

/// Every source of the agent, with the shared policy they compile into.
pub struct ListSet {
    sources: Vec<Source>,
    settings: UpdateSettings,
    cache_dir: PathBuf,
    fetcher: Fetcher,
    policy: Arc<ArcSwap<Policy>>,
    version: String,
}

/// Reports a failed check: logs it, exports it and keeps it for the status.
fn rejected(events: &EventSender, status: &mut ListStatus, reason: String) {
    if status.last_error.as_deref() == Some(reason.as_str()) {
        // The same failure again: reported already.
        tracing::debug!(list = %status.source, reason, "list rejected again");
        return;
    }
    if status.rules == 0 {
        tracing::warn!(list = %status.source, reason, "list rejected; there is no good copy yet, so filtering goes on without this list");
    } else {
        tracing::warn!(list = %status.source, reason, "list rejected; keeping the last good copy");
    }
    let mut event = AgentEvent::now(
        LIST_REJECTED,
        format!("list {} rejected: {reason}", status.source),
    );
    event
        .details
        .insert("source".into(), status.source.clone().into());
    event.details.insert("reason".into(), reason.clone().into());
    events.send(event);
    status.last_error = Some(reason);
}

impl ListSet {
    /// Loads every source: files and the built-in list from disk, URLs
    /// from the cached last good copy. URLs without a cached copy are
    /// downloaded once before the policy is built; a download that fails
    /// leaves that list out until a later check succeeds.
    ///
    /// # Errors
    ///
    /// Fails when a local list cannot be read or fails its checks, when a
    /// URL is not allowed, or when the combined policy does not compile.
    pub async fn open(
        specs: &[ListSpec],
        settings: UpdateSettings,
        data_dir: &Path,
        events: &EventSender,
    ) -> anyhow::Result<ListSet> {
        let fetcher = Fetcher::new(settings.timeout, settings.max_bytes, &settings.tls)
            .map_err(|err| anyhow!(err))?;
        if let Some(key) = &settings.public_key {
            crate::signing::parse_public_key(key)
                .map_err(|err| anyhow!("invalid [updates] public_key: {err}"))?;
        }
        let mut set = ListSet {
            sources: Vec::new(),
            settings,
            cache_dir: data_dir.join("lists"),
            fetcher,
            policy: Arc::new(ArcSwap::from_pointee(
                PolicyBuilder::new()
                    .build()
                    .map_err(|err| anyhow!("failed to build an empty policy: {err}"))?,
            )),
            version: String::new(),
        };
        let specs = if specs.is_empty() {
            vec![ListSpec::builtin()]
        } else {
            specs.to_vec()
        };
        for spec in specs {
            if let Some(url) = &spec.url {
                set.check_url_allowed(url)?;
            }
            set.sources.push(Source {
                status: ListStatus {
                    source: spec.name(),
                    ..ListStatus::default()
                },
                spec,
                bytes: None,
                validators: Validators::default(),
                signature: None,
                file_stamp: None,
                checked: None,
                stale_reported: false,
            });
        }
        for index in 0..set.sources.len() {
            set.load_initial(index, events).await?;
        }
        let policy = set.build()?;
        set.policy.store(Arc::new(policy));
        Ok(set)
    }

    fn check_url_allowed(&self, url: &Url) -> anyhow::Result<()> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.settings.allow_http || is_loopback(url) => Ok(()),
            "http" => Err(anyhow!(
                "the list {url} uses plain HTTP, which lets anyone on the path change it; use https://, or set [updates] allow_http = true"
            )),
            other => Err(anyhow!("the list {url} has the scheme {other:?}; use https://")),
        }
    }

    async fn load_initial(&mut self, index: usize, events: &EventSender) -> anyhow::Result<()> {
        let spec = self.sources[index].spec.clone();
        if let Some(url) = &spec.url {
            let cached = match cache::load(&self.cache_dir, url) {
                // The cache is checked like a download: a copy taken before
                // a public key was set, or changed on disk, is not used.
                Some(cached) => match self
                    .verify(index, &cached.bytes, cached.signature.as_deref())
                    .await
                {
                    Ok(checked) => Some((cached, checked)),
                    Err(reason) => {
                        tracing::warn!(list = %url, reason, "ignoring the cached copy, which fails the checks");
                        None
                    }
                },
                None => None,
            };
            if let Some((cached, checked)) = cached {
                tracing::info!(list = %url, fetched_at = %cached.meta.fetched_at, rules = checked.rules, "using the cached copy until the next check");
                let source = &mut self.sources[index];
                source.validators = Validators {
                    etag: cached.meta.etag.clone(),
                    last_modified: cached.meta.last_modified.clone(),
                };
                source.signature = cached.signature.clone();
                source.status.sha256 = cached.meta.sha256.clone();
                source.status.rules = checked.rules;
                source.status.loaded_at = Some(cached.meta.fetched_at.clone());
                let checked_at = cached.meta.checked_at.clone();
                let checked_at = checked_at.unwrap_or(cached.meta.fetched_at.clone());
                source.checked = parse_time(&checked_at);
                source.status.checked_at = Some(checked_at);
                source.bytes = Some(Arc::new(cached.bytes));
                return Ok(());
            }
            tracing::info!(list = %url, "no cached copy; downloading it before starting");
            if !self.check_url(index, events).await {
                tracing::error!(list = %url, "the list could not be downloaded and has no cached copy; filtering without it until a check succeeds");
            }
            return Ok(());
        }
        let bytes = match &spec.path {
            None => DEFAULT_LIST.to_vec(),
            Some(path) => std::fs::read(path)
                .map_err(|err| anyhow!("failed to read list {}: {err}", path.display()))?,
        };
        let stamp = spec.path.as_deref().and_then(file_stamp);
        let rules = self
            .verify(index, &bytes, None)
            .await
            .map_err(|reason| anyhow!("list {} rejected: {reason}", spec.name()))?
            .rules;
        let source = &mut self.sources[index];
        source.file_stamp = stamp;
        source.checked = Some(SystemTime::now());
        source.status.sha256 = sha256_hex(&bytes);
        source.status.rules = rules;
        source.status.loaded_at = Some(now_text());
        source.status.checked_at = Some(now_text());
        source.bytes = Some(Arc::new(bytes));
        Ok(())
    }

    /// Returns the shared policy the proxy reads.
    pub fn policy(&self) -> Arc<ArcSwap<Policy>> {
        Arc::clone(&self.policy)
    }

    /// Returns the version of the lists in use: 12 hex digits of the
    /// SHA-256 over their contents.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Returns each list's state.
    pub fn status(&self) -> Vec<ListStatus> {
        self.sources.iter().map(|s| s.status.clone()).collect()
    }

    /// Compiles every loaded copy into one policy and updates the version.
    fn build(&mut self) -> anyhow::Result<Policy> {
        let mut builder = PolicyBuilder::new().strict(self.settings.strict);
        for source in &self.sources {
            let Some(bytes) = &source.bytes else { continue };
            let name = source_name(&source.spec);
            builder.add_text(&name, bytes, &source.spec.options);
        }
        let policy = builder
            .build()
            .map_err(|err| anyhow!("the lists do not compile together: {err}"))?;
        let loaded = self.sources.iter().filter_map(|s| s.bytes.as_deref());
        self.version = crate::lists::version_of(loaded.map(Vec::as_slice));
        Ok(policy)
    }

    /// Checks one copy on its own: it parses, has rules, did not shrink too
    /// far and, with a public key, carries a valid signature. Returns its
    /// rule and bad-row counts.
    async fn verify(
        &self,
        index: usize,
        bytes: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<Checked, String> {
        let source = &self.sources[index];
        let name = source_name(&source.spec);
        let mut builder = PolicyBuilder::new().strict(self.settings.strict);
        builder.add_text(&name, bytes, &source.spec.options);
        let policy = compiling(|| builder.build()).map_err(|err| err.to_string())?;
        let rules = policy.rule_counts().total();
        let bad_rows = policy.bad_row_count();
        if rules == 0 {
            return Err(format!(
                "the list has no rules ({} bytes); an empty or truncated list would stop all filtering",
                bytes.len()
            ));
        }
        let previous = source.status.rules;
        if previous > 0
            && (rules as f64) < previous as f64 * self.settings.min_fraction
            && !self.settings.allow_shrink
        {
            return Err(format!(
                "the list shrank from {previous} to {rules} rules, below {:.0}% of the last good copy; if that is intended, set [updates] allow_shrink = true for one update",
                self.settings.min_fraction * 100.0
            ));
        }
        // Downloaded lists need the signature; local files are the
        // administrator's own and are checked only when signed.
        let key = self.settings.public_key.as_ref();
        let required = key.is_some() && source.spec.url.is_some();
        if let (Some(key), true) = (key, required || signature.is_some()) {
            let signature = signature.ok_or_else(|| {
                "a public key is configured but the list has no signature".to_owned()
            })?;
            crate::signing::verify_list(bytes, signature, key)
                .map_err(|err| format!("signature check failed: {err}"))?;
        }
        warn_local_blocks(&policy, &source.status.source);
        Ok(Checked { rules, bad_rows })
    }

    /// Checks a URL source; returns true when a good copy is in place.
    async fn check_url(&mut self, index: usize, events: &EventSender) -> bool {
        let url = self.sources[index].spec.url.clone().expect("a URL source");
        let validators = self.sources[index].validators.clone();
        let fetched = match self.fetcher.fetch(&url, &validators).await {
            Ok(fetched) => fetched,
            Err(reason) => {
                rejected(events, &mut self.sources[index].status, reason);
                return false;
            }
        };
        let Fetched::Body {
            bytes,
            etag,
            last_modified,
        } = fetched
        else {
            if self.sources[index].bytes.is_none() {
                let reason = format!("GET {url} answered 304 Not Modified, but there is no copy to keep; the server must send the list with 200");
                rejected(events, &mut self.sources[index].status, reason);
                return false;
            }
            cache::mark_checked(&self.cache_dir, &url, &now_text());
            self.sources[index].confirmed();
            tracing::debug!(list = %url, "list unchanged");
            return self.sources[index].bytes.is_some();
        };
        let validators = Validators {
            etag,
            last_modified,
        };
        let sha256 = sha256_hex(&bytes);
        if self.sources[index].status.sha256 == sha256 {
            // Same content under new validators: nothing to rebuild.
            self.sources[index].validators = validators;
            self.sources[index].confirmed();
            return true;
        }

        let signature = match self.url_signature(&url).await {
            Ok(signature) => signature,
            Err(reason) => {
                rejected(events, &mut self.sources[index].status, reason);
                return false;
            }
        };
        let checked = match self.verify(index, &bytes, signature.as_deref()).await {
            Ok(checked) => checked,
            Err(reason) => {
                rejected(events, &mut self.sources[index].status, reason);
                return false;
            }
        };

        let cached = Cached {
            meta: CachedMeta {
                source: url.to_string(),
                etag: validators.etag.clone(),
                last_modified: validators.last_modified.clone(),
                sha256: sha256.clone(),
                rules: checked.rules,
                bad_rows: checked.bad_rows,
                fetched_at: now_text(),
                checked_at: None,
            },
            bytes,
            signature: signature.clone(),
        };
        if let Err(err) = cache::store(&self.cache_dir, &url, &cached) {
            tracing::warn!(list = %url, error = %err, "failed to keep the list for the next start");
        }
        let source = &mut self.sources[index];
        source.validators = validators;
        source.signature = signature;
        source.bytes = Some(Arc::new(cached.bytes));
        source.status.sha256 = sha256;
        source.status.rules = checked.rules;
        source.status.loaded_at = Some(now_text());
        source.confirmed();
        true
    }

    /// Downloads the detached signature of `url` when a public key is
    /// configured.
    async fn url_signature(&self, url: &Url) -> Result<Option<Vec<u8>>, String> {
        if self.settings.public_key.is_none() {
            return Ok(None);
        }
        self.fetcher
            .fetch_plain(&signature_url(url), MAX_SIGNATURE_BYTES)
            .await
            .map(Some)
            .map_err(|reason| format!("the signature could not be downloaded: {reason}"))
    }

    /// Checks a local file; returns true when it changed and passed.
    async fn check_file(&mut self, index: usize, events: &EventSender) -> bool {
        let Some(path) = self.sources[index].spec.path.clone() else {
            return false;
        };
        let stamp = file_stamp(&path);
        if stamp.is_some() && stamp == self.sources[index].file_stamp {
            // Unchanged since the last read; a rejected file stays reported.
            if self.sources[index].status.last_error.is_none() {
                self.sources[index].confirmed();
            }
            return false;
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                // The check time stays at the last good read, so the
                // status shows how old the copy in use is.
                let reason = format!("failed to read {}: {err}", path.display());
                rejected(events, &mut self.sources[index].status, reason);
                return false;
            }
        };
        if sha256_hex(&bytes) == self.sources[index].status.sha256 {
            self.sources[index].file_stamp = stamp;
            self.sources[index].confirmed();
            return false;
        }
        let signature = if self.settings.public_key.is_some() {
            std::fs::read(signature_path(&path)).ok()
        } else {
            None
        };
        match self.verify(index, &bytes, signature.as_deref()).await {
            Ok(Checked { rules, .. }) => {
                let source = &mut self.sources[index];
                source.confirmed();
                source.file_stamp = stamp;
                source.status.sha256 = sha256_hex(&bytes);
                source.status.rules = rules;
                source.status.loaded_at = Some(now_text());
                source.status.last_error = None;
                source.bytes = Some(Arc::new(bytes));
                true
            }
            Err(reason) => {
                self.sources[index].file_stamp = stamp;
                rejected(events, &mut self.sources[index].status, reason);
                false
            }
        }
    }

    /// Checks every source once and swaps in a new policy when any list
    /// changed. Returns true when the policy was replaced.
    pub async fn check_all(&mut self, events: &EventSender, identity: &IdentityHandle) -> bool {
        let mut changed = Vec::new();
        for index in 0..self.sources.len() {
            let before = self.sources[index].status.sha256.clone();
            let updated = if self.sources[index].spec.url.is_some() {
                self.check_url(index, events).await && self.sources[index].status.sha256 != before
            } else {
                self.check_file(index, events).await
            };
            if updated {
                changed.push(index);
            }
        }
        self.report_stale(events);
        if changed.is_empty() {
            return false;
        }
        let policy = match compiling(|| self.build()) {
            Ok(policy) => policy,
            Err(err) => {
                tracing::error!(error = %err, "the updated lists do not compile together; keeping the current policy");
                return false;
            }
        };
        self.policy.store(Arc::new(policy));
        identity.set_list_version(&self.version);
        for index in changed {
            let status = &self.sources[index].status;
            tracing::info!(list = %status.source, rules = status.rules, version = %self.version, "list updated");
            let mut event = AgentEvent::now(
                LIST_UPDATED,
                format!("list {} updated to {} rules", status.source, status.rules),
            );
            event
                .details
                .insert("source".into(), status.source.clone().into());
            event
                .details
                .insert("sha256".into(), status.sha256.clone().into());
            event.details.insert("rules".into(), status.rules.into());
            events.send(event);
        }
        true
    }

    /// Reports each list not confirmed current within the stale limit, once
    /// per stale period.
    fn report_stale(&mut self, events: &EventSender) {
        let limit = self.settings.stale_after;
        for source in &mut self.sources {
            if source.spec.url.is_none() {
                continue;
            }
            let stale = source
                .checked
                .is_none_or(|at| at.elapsed().unwrap_or_default() > limit);
            source.status.stale = stale;
            if stale && !source.stale_reported {
                source.stale_reported = true;
                tracing::warn!(list = %source.status.source, limit = ?limit, "list is stale: not confirmed current within the limit");
                let mut event = AgentEvent::now(
                    LIST_STALE,
                    format!(
                        "list {} not confirmed current for over {} s",
                        source.status.source,
                        limit.as_secs()
                    ),
                );
                event
                    .details
                    .insert("source".into(), source.status.source.clone().into());
                event
                    .details
                    .insert("lastError".into(), source.status.last_error.clone().into());
                events.send(event);
            }
        }
    }

    /// Returns the wait before the next check: the refresh interval with
    /// up to 20% either way, so a fleet of agents spreads out.
    pub fn next_wait(&self) -> Duration {
        jittered(self.settings.refresh)
    }

    /// Checks the sources on the refresh schedule until `stop` is set,
    /// calling `on_change` after each check.
    pub async fn run(
        mut self,
        events: EventSender,
        identity: IdentityHandle,
        mut stop: watch::Receiver<bool>,
        on_change: impl Fn(&ListSet),
    ) {
        loop {
            let wait = self.next_wait();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = self.check_all(&events, &identity) => {}
                // A download in progress does not hold up shutdown.
                _ = stop.changed() => return,
            }
            on_change(&self);
        }
    }
}

/// Addresses of this machine and its local network. Public IP lists such
/// as FireHOL's level 1 include these ranges, which would block the
/// loopback proxy's own origins and every LAN server.
const LOCAL_ADDRESSES: [&str; 5] = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "::1"];

/// Logs a warning for each local address that `policy` blocks.
fn warn_local_blocks(policy: &Policy, source: &str) {
    for address in LOCAL_ADDRESSES {
        let Ok(target) = webwarden_policy::Target::parse(address) else {
            continue;
        };
        let verdict = policy.evaluate(&target);
        if let (webwarden_policy::Action::Block, Some(rule)) = (verdict.action, verdict.rule) {
            tracing::warn!(
                list = source,
                address,
                rule = rule.rule,
                line = rule.line,
                "the list blocks a loopback or private address; remove that range if it is not meant to cut off local services"
            );
        }
    }
}

/// Runs a list compilation, which takes up to a second for a million rows,
/// telling a multi-threaded Tokio runtime to move the proxy's other tasks
/// off this thread meanwhile.
fn compiling<T>(work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Returns `interval` scaled by a random factor between 0.8 and 1.2.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.8 + 0.4 * fastrand::f64())
}

fn source_name(spec: &ListSpec) -> String {
    match (&spec.url, &spec.path) {
        (None, None) => DEFAULT_LIST_NAME.to_owned(),
        _ => spec.name(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Returns the detached signature's URL: the list's URL with `.minisig`
/// appended to its path.
fn signature_url(url: &Url) -> Url {
    let mut signature = url.clone();
    signature.set_path(&format!("{}.minisig", url.path()));
    signature
}

fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

fn file_stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let time = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::from(time))
}

fn now_text() -> String {
    Event::timestamp_of(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, UpdatesSection};

    #[test]
    fn updates_table_sets_every_value() {
        let config = parse(
            "[updates]\nrefresh_seconds = 60\ntimeout_seconds = 5\nmax_bytes = 4096\nmin_fraction = 0.8\nallow_shrink = true\npublic_key = \"RWQ\"\nallow_http = true\nstale_after_seconds = 600\n",
        )
        .unwrap();
        let settings = settings(&config.updates, None, true).unwrap();
        assert_eq!(settings.refresh, Duration::from_secs(60));
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.max_bytes, 4096);
        assert!((settings.min_fraction - 0.8).abs() < f64::EPSILON);
        assert!(settings.allow_shrink);
        assert!(settings.allow_http);
        assert!(settings.strict);
        assert_eq!(settings.stale_after, Duration::from_secs(600));
        let flagged = settings_from_flag(&config.updates, 7);
        assert_eq!(flagged.refresh, Duration::from_secs(7));
    }

    fn settings_from_flag(section: &UpdatesSection, seconds: u64) -> UpdateSettings {
        settings(section, Some(seconds), false).unwrap()
    }

    #[test]
    fn values_that_cannot_work_are_rejected() {
        let cases = [
            ("refresh_seconds = 0", "0 seconds"),
            ("timeout_seconds = 0", "timeout_seconds = 0"),
            ("min_fraction = 1.5", "min_fraction = 1.5"),
            ("max_bytes = 10", "max_bytes under 1024"),
        ];
        for (line, named) in cases {
            let config = parse(&format!("[updates]\n{line}\n")).unwrap();
            let err = settings(&config.updates, None, false).unwrap_err();
            assert!(err.to_string().contains(named), "{line}: {err}");
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth_of_the_interval() {
        let waits: Vec<Duration> = (0..200)
            .map(|_| jittered(Duration::from_secs(100)))
            .collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(80) && *w <= Duration::from_secs(120)));
        assert!(waits.iter().any(|w| *w < Duration::from_secs(95)));
        assert!(waits.iter().any(|w| *w > Duration::from_secs(105)));
    }

    #[test]
    fn signature_lives_next_to_the_list() {
        let url = Url::parse("https://lists.example/a/company.csv?x=1").unwrap();
        assert_eq!(
            signature_url(&url).as_str(),
            "https://lists.example/a/company.csv.minisig?x=1"
        );
        assert_eq!(
            signature_path(Path::new("/etc/list.csv")),
            Path::new("/etc/list.csv.minisig")
        );
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(is_loopback(
            &Url::parse("http://127.0.0.1:8080/l.csv").unwrap()
        ));
        assert!(is_loopback(&Url::parse("http://localhost/l.csv").unwrap()));
        assert!(!is_loopback(
            &Url::parse("http://lists.example/l.csv").unwrap()
        ));
    }
}
