//! Issue 15, divergence 3, through the proxy: on Azure DevOps only a `git.pullrequest.updated`
//! whose status is `completed` releases a pull's locks (Atlantis's close clean-up);
//! `git.pullrequest.merged` is an `OtherPullEvent` to Atlantis and releases nothing. So the
//! engine keeps the holder on `merged` (a waiter replayed then would meet Atlantis's lock) and
//! lets go only on `completed`, when the waiter is replayed and takes the lock.

use std::time::Duration;

use crate::enhanced::{SECRET, base_yaml};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::proxy::spawn_proxy;
use crate::support::webhooks::{azure_comment, azure_pull};

const AUTH: (&str, &str) = ("az-hook", "az-s3cret");
const AZ_REPO: &str = "contoso/platform/infra";
const NET: &str = "contoso/platform/infra/net/default/";

#[tokio::test]
async fn azure_merged_releases_nothing_only_completed_does() {
    let fake = FakeAtlantis::start_with(FakeOptions {
        github_secret: Some(SECRET.into()),
        azuredevops_basic_auth: Some((AUTH.0.into(), AUTH.1.into())),
        ..Default::default()
    })
    .await;
    let yaml = base_yaml(None, "", "").replace(
        &format!("    github: {SECRET}\n"),
        &format!(
            "    github: {SECRET}\n    azuredevops:\n      user: {}\n      password: {}\n",
            AUTH.0, AUTH.1
        ),
    );
    let proxy = spawn_proxy(&fake.url(), &yaml).await;
    let events = proxy.url("/events");
    let holder = || fake.locks().get(NET).map(|l| l.pull);
    let engine = || proxy.engine_locks();
    let queued = || proxy.queued_pulls();
    // The comments of pull request 2 that reached Atlantis.
    let plans_of_two = || {
        fake.received_at("/events")
            .iter()
            .filter(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                v["eventType"] == "ms.vss-code.git-pullrequest-comment-event"
                    && v["resource"]["pullRequest"]["pullRequestId"] == 2
            })
            .count()
    };

    // Pull request 1 plans `net`: Atlantis and the engine hold it for 1.
    let r = azure_comment(AUTH, AZ_REPO, 1, "atlantis plan -d net")
        .send_to(&events)
        .await;
    assert_eq!((r.status.as_u16(), r.text().trim()), (200, "Processing..."));
    assert!(
        eventually(Duration::from_secs(10), || holder() == Some(1)).await,
        "Atlantis locks {:?}",
        fake.locks()
    );
    assert_eq!(engine().await, vec![(NET.to_owned(), 1)]);

    // Pull request 2 plans `net` too: queued behind 1, not forwarded.
    let r = azure_comment(AUTH, AZ_REPO, 2, "atlantis plan -d net")
        .send_to(&events)
        .await;
    assert_eq!(r.status, 202, "queued: {}", r.text());
    assert_eq!(queued().await, vec![2]);
    assert_eq!(plans_of_two(), 0);

    // Past the settle window (min(replay-wait, dispatch-lease / 2) = 1 s here): a close would
    // now release 1's lock at once instead of checking Atlantis's lock table after the window,
    // which would hide a `merged` wrongly taken for a close.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // `git.pullrequest.merged`: Atlantis cleans nothing up, so neither does the engine.
    let r = azure_pull(AUTH, AZ_REPO, 1, "git.pullrequest.merged", "completed")
        .send_to(&events)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.text().trim()),
        (200, "Ignoring non-actionable pull request event")
    );
    // Longer than a replay would take to reach Atlantis.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holder(), Some(1));
    assert_eq!(engine().await, vec![(NET.to_owned(), 1)]);
    assert_eq!(queued().await, vec![2]);
    assert_eq!(
        plans_of_two(),
        0,
        "2's plan must not be replayed on `merged`"
    );

    // `git.pullrequest.updated` with status `completed`: the close. Released, 2 replayed.
    let r = azure_pull(AUTH, AZ_REPO, 1, "git.pullrequest.updated", "completed")
        .send_to(&events)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.text().trim()),
        (200, "Pull request cleaned successfully")
    );
    assert!(
        eventually(Duration::from_secs(10), || holder() == Some(2)).await,
        "Atlantis locks {:?}",
        fake.locks()
    );
    assert_eq!(plans_of_two(), 1);
    assert_eq!(engine().await, vec![(NET.to_owned(), 2)]);
    assert_eq!(queued().await, Vec::<i64>::new());
    assert!(fake.conflicts().is_empty(), "{:?}", fake.conflicts());
    proxy.stop().await;
}
