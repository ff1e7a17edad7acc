//! Issue 14, item 2: a grant whose forwarded request Atlantis refused (4xx, 5xx, or no answer)
//! is released again, so the engine holds nothing Atlantis does not and the next pull's plan is
//! granted at once instead of queueing behind a lock nobody holds.

use super::{Backend, Setup, key};
use crate::support::fake_atlantis::Refusal;

async fn a_refused_grant_is_released_again(backend: Backend) {
    let s = Setup::start(backend, "").await;
    let refusals = [Refusal::Status(400), Refusal::Status(500), Refusal::Drop];
    for (i, how) in refusals.into_iter().enumerate() {
        let dir = format!("net{i}");
        let (first, second) = (10 * i as i64 + 1, 10 * i as i64 + 2);
        s.fake.refuse_next_event(how);
        let (hook, r) = s.plan(first, &dir, "default").await;
        let expected = match how {
            Refusal::Status(code) => code,
            // The proxy says Atlantis did not answer.
            Refusal::Drop => 502,
        };
        assert_eq!(r.status, expected, "{how:?}: {}", r.text());
        assert_eq!(s.arrivals(&hook).len(), 1, "{how:?}: forwarded once");
        assert_eq!(s.atlantis_holder(&dir, "default"), None);
        let locks = s.admin("/admin/locks").await;
        assert_eq!(
            locks["locks"],
            serde_json::json!([]),
            "{how:?}: the engine holds nothing Atlantis refused"
        );

        let (_, r) = s.plan(second, &dir, "default").await;
        assert_eq!(r.status, 200, "{how:?}: granted, not queued: {}", r.text());
        assert!(s.wait_atlantis_holder(&dir, "default", second).await);
        assert_eq!(s.engine_holder(&key(&dir, "default")).await, Some(second));
        assert_eq!(s.unlock(second).await.status, 200);
        assert!(
            crate::support::eventually(std::time::Duration::from_secs(10), || s
                .atlantis_holder(&dir, "default")
                .is_none())
            .await
        );
    }
    assert!(s.fake.conflicts().is_empty(), "{:?}", s.fake.conflicts());
}

on_both_backends!(a_refused_grant_is_released_again);
