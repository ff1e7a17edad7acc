use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::*;
use crate::classify::{LockKey, PullRef};
use crate::engine::{AcquireOutcome, Blocker, MemoryEngine};

fn key(path: &str) -> LockKey {
    LockKey::new("acme/infra", path, "default", "")
}

fn pull(n: i64) -> PullRef {
    PullRef::new(crate::classify::Vcs::Github, "acme/infra", n)
}

fn acquire(n: i64, locks: Vec<LockKey>) -> ShadowOp {
    ShadowOp::Acquire(AcquireRequest {
        locks,
        pull: pull(n),
        user: "alice".into(),
        priority: crate::classify::Priority::Normal,
        hold_timeout: None,
        request_id: None,
    })
}

fn atlantis_lock(path: &str, pull: i64) -> AtlantisLock {
    AtlantisLock {
        name: key(path).to_string(),
        project_name: String::new(),
        project_repo: "acme/infra".into(),
        project_repo_path: path.into(),
        pull_id: pull.to_string(),
        pull_url: String::new(),
        user: "alice".into(),
        workspace: "default".into(),
    }
}

#[test]
fn the_expected_difference_is_its_own_kind_not_a_mismatch() {
    let k = compare(
        LegacyOutcome::DeniedHeldBy(12),
        EnhancedDecision::WouldQueueBehind(Some(12)),
    );
    assert_eq!(k, DiffKind::LegacyDeniedEnhancedWouldQueue);
    assert!(!k.is_mismatch());
    assert_eq!(k.as_str(), "legacy_denied_enhanced_would_queue");
}

#[test]
fn every_disagreement_has_a_named_kind() {
    use EnhancedDecision as E;
    use LegacyOutcome as L;
    let cases = [
        (L::Granted, E::Granted, DiffKind::Match),
        (L::Released, E::Released, DiffKind::Match),
        (L::NoOp, E::NoOp, DiffKind::Match),
        (
            L::Granted,
            E::WouldQueueBehind(Some(3)),
            DiffKind::LegacyGrantedEnhancedWouldQueue,
        ),
        (
            L::DeniedHeldBy(3),
            E::Granted,
            DiffKind::LegacyDeniedEnhancedWouldGrant,
        ),
        (
            L::DeniedHeldBy(3),
            E::WouldQueueBehind(Some(4)),
            DiffKind::HolderMismatch,
        ),
        (L::Released, E::NoOp, DiffKind::ReleaseMismatch),
        (L::NoOp, E::Released, DiffKind::ReleaseMismatch),
        (L::Granted, E::Released, DiffKind::OperationMismatch),
        (L::Unknown, E::Granted, DiffKind::Inconclusive),
    ];
    for (l, e, want) in cases {
        let got = compare(l, e);
        assert_eq!(got, want, "{l:?} vs {e:?}");
        assert_eq!(
            got.is_mismatch(),
            !matches!(want, DiffKind::Match | DiffKind::Inconclusive),
            "{want:?}"
        );
    }
}

#[test]
fn engine_outcomes_map_to_decisions_naming_the_holder() {
    let held = AcquireOutcome::Held {
        by: vec![
            Blocker {
                key: key("a"),
                held_by: None,
            },
            Blocker {
                key: key("b"),
                held_by: Some(pull(7)),
            },
        ],
    };
    assert_eq!(
        EnhancedDecision::from_acquire(&held),
        EnhancedDecision::WouldQueueBehind(Some(7))
    );
    assert_eq!(
        EnhancedDecision::from_release(&crate::engine::ReleaseOutcome::NotHeld),
        EnhancedDecision::NoOp
    );
}

#[test]
fn webhook_acquire_outcome_comes_from_the_lock_table() {
    let op = acquire(5, vec![key("a"), key("b")]);
    let ours = [atlantis_lock("a", 5), atlantis_lock("b", 5)];
    assert_eq!(
        legacy_outcome_from_locks(&op, None, &ours),
        LegacyOutcome::Granted
    );
    let theirs = [atlantis_lock("a", 5), atlantis_lock("b", 9)];
    assert_eq!(
        legacy_outcome_from_locks(&op, None, &theirs),
        LegacyOutcome::DeniedHeldBy(9)
    );
    // Atlantis has not taken b yet: no verdict rather than a wrong one.
    assert_eq!(
        legacy_outcome_from_locks(&op, None, &ours[..1]),
        LegacyOutcome::Unknown
    );
    // A pre-v0.40 three-part name still matches by its parts.
    let mut old = atlantis_lock("a", 9);
    old.name = "acme/infra/a/default".into();
    let op_a = acquire(5, vec![key("a")]);
    assert_eq!(
        legacy_outcome_from_locks(&op_a, None, &[old]),
        LegacyOutcome::DeniedHeldBy(9)
    );
}

#[test]
fn release_needs_the_table_before_to_tell_released_from_noop() {
    let op = ShadowOp::ReleasePull { pull: pull(5) };
    let before = [atlantis_lock("a", 5), atlantis_lock("b", 9)];
    let after = [atlantis_lock("b", 9)];
    assert_eq!(
        legacy_outcome_from_locks(&op, Some(&before), &after),
        LegacyOutcome::Released
    );
    assert_eq!(
        legacy_outcome_from_locks(&op, Some(&after), &after),
        LegacyOutcome::NoOp
    );
    assert_eq!(
        legacy_outcome_from_locks(&op, None, &before),
        LegacyOutcome::Unknown,
        "still held: Atlantis has not processed the close yet"
    );
    let by_key = ShadowOp::ReleaseKey { key: key("a") };
    assert_eq!(
        legacy_outcome_from_locks(&by_key, Some(&before), &after),
        LegacyOutcome::Released
    );
}

#[test]
fn api_answers_give_legacy_outcomes() {
    let body = br#"{"Error":null,"Failure":"","ProjectResults":[{"Failure":"This project is currently locked by an unapplied plan from pull #12. To continue, delete the lock from #12 or apply that plan and merge the pull request."}]}"#;
    assert_eq!(
        legacy_outcome_from_api(StatusCode::INTERNAL_SERVER_ERROR, body),
        LegacyOutcome::DeniedHeldBy(12)
    );
    assert_eq!(
        locked_by("currently locked by an unapplied plan from pull !31. To continue"),
        Some(31)
    );
    assert_eq!(
        legacy_outcome_from_api(StatusCode::OK, b"{}"),
        LegacyOutcome::Granted
    );
    assert_eq!(
        legacy_outcome_from_api(StatusCode::INTERNAL_SERVER_ERROR, b"{\"error\":\"x\"}"),
        LegacyOutcome::Unknown
    );
    assert_eq!(
        legacy_outcome_from_delete(StatusCode::NOT_FOUND),
        LegacyOutcome::NoOp
    );
}

#[test]
fn the_recorder_counts_by_kind_and_keeps_the_newest_diffs() {
    let m = Arc::new(crate::telemetry::Metrics::new());
    let rec = ShadowRecorder::new(2, Some(m.clone()));
    let op = acquire(5, vec![key("a")]);
    rec.record(&op, LegacyOutcome::Granted, EnhancedDecision::Granted, None);
    rec.record(
        &op,
        LegacyOutcome::DeniedHeldBy(1),
        EnhancedDecision::WouldQueueBehind(Some(1)),
        None,
    );
    for n in [2, 3] {
        rec.record(
            &op,
            LegacyOutcome::DeniedHeldBy(n),
            EnhancedDecision::Granted,
            Some(format!("trace-{n}")),
        );
    }
    assert_eq!(rec.compared(), 4);
    assert_eq!(rec.mismatched(), 2);
    assert_eq!(rec.count(DiffKind::Match), 1);
    assert_eq!(rec.count(DiffKind::LegacyDeniedEnhancedWouldGrant), 2);
    let recent = rec.recent();
    assert_eq!(recent.len(), 2, "ring of 2");
    assert_eq!(
        recent[0].trace_id.as_deref(),
        Some("trace-3"),
        "newest first"
    );
    assert_eq!(recent[0].legacy, LegacyOutcome::DeniedHeldBy(3));
    assert_eq!(recent[0].locks[0], "acme/infra/a/default/");
    let text = m.encode();
    assert!(
        text.contains("legacy_denied_enhanced_would_grant"),
        "metric labelled by kind: {text}"
    );
}

#[tokio::test]
async fn a_saturated_shadow_drops_and_counts_instead_of_waiting() {
    let rec = Arc::new(ShadowRecorder::new(10, None));
    let spawner = ShadowSpawner::new(2, rec.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    for _ in 0..2 {
        let mut rx = rx.clone();
        assert!(spawner.spawn(async move {
            let _ = rx.wait_for(|go| *go).await;
        }));
    }
    let started = tokio::time::Instant::now();
    assert!(!spawner.spawn(async {}), "third evaluation must be dropped");
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(rec.dropped_count(), 1);
    tx.send(true).unwrap();
    // Room again once the running ones finish.
    let mut ok = false;
    for _ in 0..100 {
        if spawner.spawn(async {}) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(ok);
}

#[tokio::test]
async fn a_seeded_divergence_is_reported_with_its_kind() {
    // The shadow engine follows legacy's traffic; Atlantis holds a lock (taken before the
    // migration) that the engine cannot know.
    let shadow = MemoryEngine::new(Default::default());
    let rec = ShadowRecorder::new(10, None);
    let op = acquire(5, vec![key("a")]);
    let enhanced = evaluate(&shadow, &op).await.unwrap();
    let legacy = legacy_outcome_from_locks(&op, None, &[atlantis_lock("a", 9)]);
    assert_eq!(
        rec.record(&op, legacy, enhanced, None),
        DiffKind::LegacyDeniedEnhancedWouldGrant
    );
    // Ordinary contention agrees in substance: legacy denies, the engine would queue.
    let op = acquire(6, vec![key("a")]);
    let enhanced = evaluate(&shadow, &op).await.unwrap();
    assert_eq!(enhanced, EnhancedDecision::WouldQueueBehind(Some(5)));
    let legacy = legacy_outcome_from_locks(&op, None, &[atlantis_lock("a", 5)]);
    assert_eq!(
        rec.record(&op, legacy, enhanced, None),
        DiffKind::LegacyDeniedEnhancedWouldQueue
    );
    let release = ShadowOp::ReleasePull { pull: pull(5) };
    assert_eq!(
        evaluate(&shadow, &release).await.unwrap(),
        EnhancedDecision::Released
    );
    assert_eq!(rec.mismatched(), 1);
}
