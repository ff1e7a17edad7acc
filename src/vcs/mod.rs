//! vcs: small REST clients for the VCS providers' APIs (GitHub, GitLab; Gitea's pulls only).
//!
//! The resolver reads pulls, changed files and files at a commit through these clients; the
//! notifier reuses them to comment on pulls. Both share one HTTP core ([`ApiClient`]): a base URL
//! (so GitHub Enterprise and self-hosted GitLab work), a credential sent in a sensitive header and
//! never logged (a token, or a GitHub App's installation token: [`GithubAppAuth`]), a timeout per
//! attempt, bounded retries with backoff, and rate-limit handling (`Retry-After`,
//! `X-RateLimit-*` / `RateLimit-*`).

mod client;
mod gitea;
mod github;
mod github_app;
mod gitlab;
mod http;

use std::time::Duration;

pub use crate::vocab::Secret;
pub use client::VcsClient;
pub use gitea::GiteaClient;
pub use github::GithubClient;
pub use github_app::{AppKeyError, GithubAppAuth, GithubAppCredentials, GithubAppKey};
pub use gitlab::GitlabClient;
pub use http::{ApiClient, ApiConfig, ApiResponse};

pub use crate::vocab::Vcs;

/// The parts of a pull request the resolver needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullInfo {
    /// Head commit SHA.
    pub head_sha: String,
    /// Base (target) branch name.
    pub base_branch: String,
    /// Whether the head repository's owner differs from the base's (`None`: the API does not
    /// say; a GitHub pull whose head repository is gone counts as a fork, Atlantis refuses it).
    pub fork: Option<bool>,
}

/// One file touched by a pull, repo-relative.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChangedFile {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// True when the pull deletes this path (deleted file, or the old side of a rename).
    pub removed: bool,
}

impl ChangedFile {
    /// A file added or modified by the pull.
    pub fn modified(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            removed: false,
        }
    }

    /// A file deleted by the pull.
    pub fn removed(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            removed: true,
        }
    }
}

/// One entry of a directory listing at a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File or directory name (no path).
    pub name: String,
    /// True for sub-directories.
    pub is_dir: bool,
}

/// Why a VCS API call failed.
#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    /// The configured base URL cannot be used.
    #[error("invalid VCS API base URL {url:?}: {reason}")]
    BadBaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider's rate limit is exhausted (or asked us to back off longer than we may wait).
    #[error("VCS API rate limit reached (retry after {retry_after:?})")]
    RateLimited {
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// No answer within the per-attempt timeout, on every attempt.
    #[error("VCS API timed out")]
    Timeout,
    /// The provider answered with an error status.
    #[error("VCS API answered {status} for {endpoint}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Method and path (never the token).
        endpoint: String,
    },
    /// Connection or protocol failure.
    #[error("VCS API unreachable: {0}")]
    Transport(String),
    /// The answer did not have the documented shape.
    #[error("unexpected VCS API response from {endpoint}: {detail}")]
    BadResponse {
        /// Method and path.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// No GitHub App installation token could be had (GitHub refused the app's JWT, the
    /// installation is unknown or ambiguous, or the token endpoint did not answer).
    #[error("GitHub App authentication failed: {detail}")]
    Auth {
        /// What went wrong, with GitHub's own message when it gave one (never a credential).
        detail: String,
    },
    /// The token file (Atlantis's `gh-token-file`) could not be read for this call.
    #[error("reading the token file {path}: {detail}")]
    TokenFile {
        /// The file's path.
        path: String,
        /// Why (never the file's contents).
        detail: String,
    },
    /// A pagination link pointed at another host; following it would send our token there.
    #[error("refusing to follow a pagination link to another origin")]
    ForeignLink,
}

impl VcsError {
    /// Short label for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VcsError::BadBaseUrl { .. } => "config",
            VcsError::Auth { .. } | VcsError::TokenFile { .. } => "auth",
            VcsError::RateLimited { .. } => "rate_limited",
            VcsError::Timeout => "timeout",
            VcsError::Status { .. } => "status",
            VcsError::Transport(_) => "transport",
            VcsError::BadResponse { .. } | VcsError::ForeignLink => "bad_response",
        }
    }
}

/// Percent-encodes one path segment (or a whole path when `/` must be encoded, as GitLab wants).
pub(crate) fn encode_segment(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes each `/`-separated segment of a path, keeping the slashes.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}
