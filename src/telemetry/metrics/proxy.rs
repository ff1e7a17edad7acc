//! The proxy's own metrics (`atlantis_lock_proxy_*`): requests, upstream latency, the traffic
//! split, shadow comparisons, replays and resolver outcomes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Metrics;
use super::labels::{HttpRoute, RequestOutcome, ResolveOutcome, UpstreamOutcome};
use crate::vocab::{DiffKind, EnginePath};

/// Latency buckets (seconds) for calls to Atlantis: webhooks answer in milliseconds,
/// `/api/plan` can run for minutes.
const UPSTREAM_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// Labels of one handled request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Coarse Atlantis route (`events`, `api_plan`, `delete_lock`, …).
    pub route: HttpRoute,
    /// The path that decided: `legacy` or `enhanced`.
    pub engine: EnginePath,
    /// Status class (`2xx`…) or the proxy's error kind (`upstream-timeout`, `rate-limited`, …).
    pub outcome: RequestOutcome,
}

/// Labels of one upstream call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `2xx`…`5xx`, or `error` / `timeout` when Atlantis gave no answer.
    pub status_class: UpstreamOutcome,
}

/// A label set with one `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub kind: DiffKind,
}

/// A label set with one `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Labels of one pull-request notification.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NotificationLabels {
    pub vcs: &'static str,
    pub outcome: &'static str,
}

/// Registers the request and upstream families (the foundation's public fields).
pub(super) fn register_http(
    registry: &mut Registry,
) -> (
    Family<RequestLabels, Counter>,
    Family<UpstreamLabels, Histogram>,
) {
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "atlantis_lock_proxy_requests",
        "Requests handled by the main listener, by route, engine path and outcome",
        requests.clone(),
    );
    let upstream_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
        Histogram::new(UPSTREAM_BUCKETS)
    });
    registry.register(
        "atlantis_lock_proxy_upstream_duration_seconds",
        "Time until Atlantis sent its response head, by status class",
        upstream_duration.clone(),
    );
    (requests, upstream_duration)
}

/// VCSs and outcomes of `notifications_total`.
const NOTIFY_VCS: [&str; 6] = [
    "github",
    "gitlab",
    "bitbucket_cloud",
    "bitbucket_server",
    "azuredevops",
    "gitea",
];
const NOTIFY_OUTCOMES: [&str; 6] = [
    "created",
    "edited",
    "error",
    "dropped",
    "unsupported",
    "unconfigured",
];

/// The rest of the proxy's own metrics.
pub(super) struct Own {
    traffic_split: Gauge,
    shadow_enabled: Gauge,
    shadow_comparisons: Family<KindLabel, Counter>,
    shadow_mismatches: Family<KindLabel, Counter>,
    shadow_dropped: Counter,
    replays: Family<OutcomeLabel, Counter>,
    resolves: Family<ResolveLabel, Counter>,
    fallbacks: Counter,
    notifications: Family<NotificationLabels, Counter>,
    queue_refused: Family<ReasonLabel, Counter>,
}

/// The `resolves_total` label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResolveLabel {
    pub outcome: ResolveOutcome,
}

/// A label set with one `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub reason: &'static str,
}

impl Own {
    pub(super) fn register(r: &mut Registry) -> Self {
        let own = Self {
            traffic_split: Gauge::default(),
            shadow_enabled: Gauge::default(),
            shadow_comparisons: Family::default(),
            shadow_mismatches: Family::default(),
            shadow_dropped: Counter::default(),
            replays: Family::default(),
            resolves: Family::default(),
            fallbacks: Counter::default(),
            notifications: Family::default(),
            queue_refused: Family::default(),
        };
        let p = "atlantis_lock_proxy_";
        r.register(
            format!("{p}traffic_split_percent"),
            "Share of repositories (0-100) routed through the enhanced engine",
            own.traffic_split.clone(),
        );
        r.register(
            format!("{p}shadow_enabled"),
            "1 when shadow mode (monitor-only) evaluates the engine beside legacy, else 0",
            own.shadow_enabled.clone(),
        );
        r.register(
            format!("{p}shadow_comparisons"),
            "Legacy-vs-engine decisions compared in shadow mode, by kind (agree included)",
            own.shadow_comparisons.clone(),
        );
        r.register(
            format!("{p}shadow_mismatches"),
            "Shadow comparisons where the engine would have decided differently, by kind",
            own.shadow_mismatches.clone(),
        );
        r.register(
            format!("{p}shadow_dropped"),
            "Shadow evaluations dropped because the shadow worker was saturated",
            own.shadow_dropped.clone(),
        );
        r.register(
            format!("{p}replays"),
            "Queued requests replayed to Atlantis after their grant, by outcome",
            own.replays.clone(),
        );
        r.register(
            format!("{p}resolves"),
            "Project resolutions of plans that name no project, by outcome",
            own.resolves.clone(),
        );
        r.register(
            format!("{p}queue_refused"),
            "Requests that would have queued but took the legacy path because a queue or memory cap \
             was reached, by reason (queue_full, repo_waiters, repo_bytes, total_waiters, total_bytes)",
            own.queue_refused.clone(),
        );
        for reason in crate::engine::QueueCap::ALL_REASONS {
            drop(own.queue_refused.get_or_create(&ReasonLabel { reason }));
        }
        r.register(
            format!("{p}legacy_fallbacks"),
            "Enhanced-routed requests sent down the legacy path because the engine was unavailable",
            own.fallbacks.clone(),
        );
        r.register(
            format!("{p}notifications"),
            "Pull-request comments about queued commands, by VCS and outcome",
            own.notifications.clone(),
        );
        // Every series exists from the start with 0, so a dashboard or an alert on a rate sees
        // the first event (and a silent quick start shows `unconfigured` growing, not nothing).
        for outcome in ResolveOutcome::all() {
            let _ = own.resolves.get_or_create(&ResolveLabel { outcome });
        }
        for vcs in NOTIFY_VCS {
            for outcome in NOTIFY_OUTCOMES {
                let _ = own
                    .notifications
                    .get_or_create(&NotificationLabels { vcs, outcome });
            }
        }
        own
    }
}

impl Metrics {
    /// Counts one request that took `engine`'s path.
    pub fn request(&self, route: HttpRoute, engine: EnginePath, outcome: RequestOutcome) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                engine,
                outcome,
            })
            .inc();
    }

    /// Records one upstream call.
    pub fn upstream(&self, status_class: UpstreamOutcome, took: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels { status_class })
            .observe(took.as_secs_f64());
    }

    /// Records the current traffic split (0–100) and whether shadow mode is on.
    pub fn set_split(&self, percent: u8, shadow: bool) {
        self.own.traffic_split.set(i64::from(percent.min(100)));
        self.own.shadow_enabled.set(i64::from(shadow));
    }

    /// Counts one shadow comparison of `kind`; a disagreement nobody planned for also counts as
    /// a mismatch.
    pub fn shadow_compared(&self, kind: DiffKind) {
        self.own
            .shadow_comparisons
            .get_or_create(&KindLabel { kind })
            .inc();
        if kind.is_mismatch() {
            self.own
                .shadow_mismatches
                .get_or_create(&KindLabel { kind })
                .inc();
        }
    }

    /// Counts a shadow evaluation dropped because the shadow worker was full.
    pub fn shadow_dropped(&self) {
        self.own.shadow_dropped.inc();
    }

    /// Counts one replay of a queued request (`forwarded`, `upstream_error`, `expired`…).
    pub fn replay(&self, outcome: &'static str) {
        self.own
            .replays
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts one resolver outcome.
    pub fn resolve(&self, outcome: ResolveOutcome) {
        self.own
            .resolves
            .get_or_create(&ResolveLabel { outcome })
            .inc();
    }

    /// Counts a request refused a queue place by a cap (it takes the legacy path).
    pub fn queue_refused(&self, reason: &'static str) {
        self.own
            .queue_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts an enhanced-routed request that fell back to legacy (breaker open, engine error).
    pub fn legacy_fallback(&self) {
        self.own.fallbacks.inc();
    }

    /// Counts one pull-request notification (`created`, `edited`, `error`, `dropped`,
    /// `unsupported`, `unconfigured`) for a VCS (`github`, `gitlab`, …).
    pub fn notification(&self, vcs: &'static str, outcome: &'static str) {
        self.own
            .notifications
            .get_or_create(&NotificationLabels { vcs, outcome })
            .inc();
    }
}
