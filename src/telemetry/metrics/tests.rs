//! Recording methods move the exposed values an operator's queries read.

use std::time::Duration;

use super::*;
use crate::classify::Priority;

/// The value of the sample written exactly as `series` (name plus labels as exposed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("sample {series}: {e}"))
}

const L: &str = "atlantis_enhanced_locking_";

#[test]
fn acquisitions_count_grants_and_failures_once_each() {
    let m = Metrics::new();
    m.lock_acquired(Duration::from_millis(2), Ok(()));
    m.lock_acquired(Duration::from_millis(3), Err(FailReason::QueueFull));
    m.lock_queued(Duration::from_millis(1));
    m.queue_left(Duration::from_secs(90), Ok(()));
    m.queue_left(Duration::from_secs(700), Err(FailReason::QueueTimeout));
    let t = m.encode();
    assert_eq!(value(&t, &format!("{L}acquisitions_total")), 4.0);
    assert_eq!(value(&t, &format!("{L}acquisitions_success_total")), 2.0);
    assert_eq!(
        value(
            &t,
            &format!("{L}acquisitions_failed_total{{reason=\"queue_full\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            &format!("{L}acquisitions_failed_total{{reason=\"queue_timeout\"}}")
        ),
        1.0
    );
    // Three engine decisions: two immediate, one that queued.
    assert_eq!(
        value(&t, &format!("{L}acquisition_duration_seconds_count")),
        3.0
    );
    assert_eq!(
        value(
            &t,
            &format!("{L}acquisition_duration_seconds_bucket{{le=\"0.001\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            &format!("{L}acquisition_duration_seconds_bucket{{le=\"0.005\"}}")
        ),
        3.0
    );
    // The 700 s wait lands above the 600 s bucket, so the guide's 10-minute alert can fire.
    assert_eq!(
        value(
            &t,
            &format!("{L}queue_wait_duration_seconds_bucket{{le=\"600.0\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(&t, &format!("{L}queue_wait_duration_seconds_count")),
        2.0
    );
}

#[test]
fn queue_depth_is_exported_per_priority_from_the_start() {
    let m = Metrics::new();
    let before = m.encode();
    for p in ["critical", "high", "normal", "low"] {
        assert_eq!(
            value(&before, &format!("{L}queue_depth{{priority=\"{p}\"}}")),
            0.0
        );
    }
    m.set_queue_depth(Priority::High, 3);
    m.set_queue_depth(Priority::Low, 1);
    m.set_queue_depth(Priority::High, 2);
    let t = m.encode();
    assert_eq!(
        value(&t, &format!("{L}queue_depth{{priority=\"high\"}}")),
        2.0
    );
    assert_eq!(
        value(&t, &format!("{L}queue_depth{{priority=\"low\"}}")),
        1.0
    );
    assert_eq!(
        value(&t, &format!("{L}queue_depth{{priority=\"critical\"}}")),
        0.0
    );
}

#[test]
fn releases_deadlocks_and_engine_operations_are_counted() {
    let m = Metrics::new();
    m.lock_released(Duration::from_secs(4000), ReleaseReason::PullClosed);
    m.lock_released(Duration::from_secs(20), ReleaseReason::Unlock);
    m.deadlock();
    m.deadlock();
    m.engine_op("acquire", true);
    m.engine_op("acquire", false);
    m.engine_retry("acquire");
    let t = m.encode();
    assert_eq!(
        value(&t, &format!("{L}releases_total{{reason=\"pull_closed\"}}")),
        1.0
    );
    assert_eq!(
        value(&t, &format!("{L}releases_total{{reason=\"unlock\"}}")),
        1.0
    );
    assert_eq!(
        value(
            &t,
            &format!("{L}hold_duration_seconds_bucket{{le=\"3600.0\"}}")
        ),
        1.0,
        "a 4000 s hold is above the guide's 1 h alert line"
    );
    assert_eq!(value(&t, &format!("{L}deadlocks_detected_total")), 2.0);
    assert_eq!(
        value(&t, &format!("{L}operations_total{{operation=\"acquire\"}}")),
        2.0
    );
    assert_eq!(
        value(&t, &format!("{L}errors_total{{operation=\"acquire\"}}")),
        1.0
    );
    assert_eq!(
        value(&t, &format!("{L}retries_total{{operation=\"acquire\"}}")),
        1.0
    );
}

#[test]
fn health_breaker_and_resources_read_as_the_guide_defines_them() {
    let m = Metrics::new();
    assert_eq!(value(&m.encode(), &format!("{L}backend_health")), 1.0);
    m.set_backend_health(true);
    m.set_backend_health(false);
    m.set_backend_health(true);
    m.set_backend_health(false);
    m.set_breaker_state(BreakerState::Open);
    m.set_redis_pool(8, 10);
    m.set_redis_memory(2_500_000_000);
    m.set_priority_inversion_ratio(0.125);
    let t = m.encode();
    assert_eq!(value(&t, &format!("{L}backend_health")), 0.0);
    assert_eq!(value(&t, &format!("{L}availability")), 0.5);
    assert_eq!(value(&t, &format!("{L}circuit_breaker_state")), 1.0);
    assert_eq!(value(&t, &format!("{L}redis_pool_active_connections")), 8.0);
    assert_eq!(value(&t, &format!("{L}redis_pool_max_connections")), 10.0);
    assert_eq!(value(&t, &format!("{L}redis_memory_used_bytes")), 2.5e9);
    assert_eq!(
        value(&t, &format!("{L}priority_queue_inversion_ratio")),
        0.125
    );
    m.set_breaker_state(BreakerState::HalfOpen);
    assert_eq!(
        value(&m.encode(), &format!("{L}circuit_breaker_state")),
        0.5
    );
}

#[test]
fn the_proxy_reports_split_shadow_replays_and_resolves() {
    use crate::vocab::DiffKind;
    let m = Metrics::new();
    m.set_split(25, true);
    m.shadow_compared(DiffKind::Match);
    m.shadow_compared(DiffKind::LegacyDeniedEnhancedWouldGrant);
    m.shadow_compared(DiffKind::LegacyDeniedEnhancedWouldGrant);
    // The expected difference is compared, not a mismatch.
    m.shadow_compared(DiffKind::LegacyDeniedEnhancedWouldQueue);
    m.shadow_dropped();
    m.replay("forwarded");
    m.resolve(super::labels::ResolveOutcome::Resolved);
    m.resolve(super::labels::ResolveOutcome::Unresolved(
        crate::vocab::UnresolvedKind::NoClient,
    ));
    m.legacy_fallback();
    let t = m.encode();
    let p = "atlantis_lock_proxy_";
    assert_eq!(value(&t, &format!("{p}traffic_split_percent")), 25.0);
    assert_eq!(value(&t, &format!("{p}shadow_enabled")), 1.0);
    assert_eq!(
        value(
            &t,
            &format!("{p}shadow_comparisons_total{{kind=\"match\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &t,
            &format!("{p}shadow_mismatches_total{{kind=\"legacy_denied_enhanced_would_grant\"}}")
        ),
        2.0
    );
    assert!(!t.contains(&format!("{p}shadow_mismatches_total{{kind=\"match\"}}")));
    assert!(!t.contains(&format!(
        "{p}shadow_mismatches_total{{kind=\"legacy_denied_enhanced_would_queue\"}}"
    )));
    assert_eq!(value(&t, &format!("{p}shadow_dropped_total")), 1.0);
    assert_eq!(
        value(&t, &format!("{p}replays_total{{outcome=\"forwarded\"}}")),
        1.0
    );
    assert_eq!(
        value(&t, &format!("{p}resolves_total{{outcome=\"no_client\"}}")),
        1.0
    );
    assert_eq!(value(&t, &format!("{p}legacy_fallbacks_total")), 1.0);
}

#[test]
fn every_counter_is_declared_under_its_total_name() {
    let t = Metrics::new().encode();
    assert!(t.contains("# TYPE atlantis_enhanced_locking_acquisitions_total counter"));
    assert!(t.contains("# TYPE atlantis_enhanced_locking_queue_depth gauge"));
    assert!(!t.contains("# EOF"));
    let (ct, om) = Metrics::new().encode_for(Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(om.ends_with("# EOF\n"));
}
