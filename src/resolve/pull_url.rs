//! Which VCS a pull's web URL belongs to: how the engine tells a GitLab merge request from a
//! GitHub pull of a repository with the same name in Atlantis's `GET /api/locks`, whose entries
//! name the holder only by `PullID` and `PullURL` (`models.PullRequest.URL`, set by Atlantis's
//! event parser from each VCS's payload).

use super::RepoHosts;
use crate::vocab::Vcs;

impl RepoHosts {
    /// The VCS of an Atlantis `PullURL`, from its host (Atlantis's configured hostnames) and the
    /// shape of its path (`/pull/N` GitHub, `/merge_requests/N` GitLab, `/pull-requests/N`
    /// Bitbucket, `/pulls/N` Gitea, `pullrequest(s)/N` Azure DevOps). `None` when neither tells
    /// (`/api/*` locks have no URL): callers then match the holder by number alone.
    pub fn vcs_of_pull_url(&self, url: &str) -> Option<Vcs> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let host = uri.host()?.to_ascii_lowercase();
        let by_host: Vec<Vcs> = Vcs::ALL
            .into_iter()
            .filter(|v| self.serves(*v, &host))
            .collect();
        let by_shape = shape_of(uri.path());
        let both: Vec<Vcs> = by_host
            .iter()
            .copied()
            .filter(|v| by_shape.contains(v))
            .collect();
        [both, by_host, by_shape]
            .into_iter()
            .find_map(|c| (c.len() == 1).then(|| c[0]))
    }

    /// Whether `host` (lowercase, no port) is where Atlantis is configured to find `vcs`.
    fn serves(&self, vcs: Vcs, host: &str) -> bool {
        let configured = self.host(vcs);
        let configured = configured.split(':').next().unwrap_or(configured);
        configured.eq_ignore_ascii_case(host)
            || (vcs == Vcs::AzureDevops && host.ends_with(".visualstudio.com"))
    }
}

/// The VCSs whose pull URLs have this path's shape: `.../<segment>/<number>` at the end.
fn shape_of(path: &str) -> Vec<Vcs> {
    let mut rev = path.trim_end_matches('/').rsplit('/');
    let number = rev.next().unwrap_or_default();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    let segment = rev.next().unwrap_or_default().to_ascii_lowercase();
    match segment.as_str() {
        "pull" => vec![Vcs::Github],
        "merge_requests" => vec![Vcs::Gitlab],
        "pulls" => vec![Vcs::Gitea],
        "pullrequest" | "pullrequests" => vec![Vcs::AzureDevops],
        // Server's are `/projects/{key}/repos/{slug}/pull-requests/N`, Cloud's `/{owner}/{repo}/...`.
        "pull-requests" if path.contains("/projects/") && path.contains("/repos/") => {
            vec![Vcs::BitbucketServer]
        }
        "pull-requests" => vec![Vcs::BitbucketCloud],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atlantis_pull_urls_name_their_vcs() {
        let h = RepoHosts::default();
        for (url, vcs) in [
            ("https://github.com/acme/infra/pull/12", Vcs::Github),
            (
                "https://gitlab.com/acme/sub/infra/-/merge_requests/3",
                Vcs::Gitlab,
            ),
            (
                "https://gitlab.com/acme/infra/merge_requests/3",
                Vcs::Gitlab,
            ),
            (
                "https://bitbucket.org/acme/infra/pull-requests/4",
                Vcs::BitbucketCloud,
            ),
            (
                "https://bitbucket.acme.io/projects/INF/repos/infra/pull-requests/5",
                Vcs::BitbucketServer,
            ),
            (
                "https://dev.azure.com/acme/proj/_apis/git/repositories/abc/pullRequests/6",
                Vcs::AzureDevops,
            ),
            (
                "https://acme.visualstudio.com/proj/_git/infra/pullrequest/6",
                Vcs::AzureDevops,
            ),
            ("https://gitea.com/acme/infra/pulls/7", Vcs::Gitea),
        ] {
            assert_eq!(h.vcs_of_pull_url(url), Some(vcs), "{url}");
        }
    }

    #[test]
    fn configured_hostnames_decide_where_the_path_does_not() {
        let h = RepoHosts {
            github: "ghe.acme.io".into(),
            gitlab: "git.acme.io:8443".into(),
            bitbucket_server: "bitbucket.org".into(),
            gitea: "gitea.com".into(),
        };
        assert_eq!(
            h.vcs_of_pull_url("https://GHE.acme.io/acme/infra/pull/1"),
            Some(Vcs::Github)
        );
        // The host alone, whatever the path looks like.
        assert_eq!(
            h.vcs_of_pull_url("https://git.acme.io:8443/acme/infra/-/x/1"),
            Some(Vcs::Gitlab)
        );
        // The path alone on a host nobody configured.
        assert_eq!(
            h.vcs_of_pull_url("https://elsewhere.example/acme/infra/-/merge_requests/1"),
            Some(Vcs::Gitlab)
        );
        // bitbucket.org for both Bitbucket flavours: Cloud's path shape decides.
        assert_eq!(
            h.vcs_of_pull_url("https://bitbucket.org/acme/infra/pull-requests/4"),
            Some(Vcs::BitbucketCloud)
        );
    }

    #[test]
    fn urls_that_say_nothing_give_no_vcs() {
        let h = RepoHosts::default();
        for url in [
            "",
            "not a url",
            "https://elsewhere.example/acme/infra",
            "https://elsewhere.example/acme/infra/pull/x",
        ] {
            assert_eq!(h.vcs_of_pull_url(url), None, "{url:?}");
        }
    }
}
