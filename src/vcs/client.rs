//! One handle over the supported providers, so callers need not match on the VCS themselves.

use std::sync::Arc;

use super::{ChangedFile, DirEntry, GithubClient, GitlabClient, PullInfo, Vcs, VcsError};

/// A client for whichever provider a repository lives on.
#[derive(Clone, Debug)]
pub enum VcsClient {
    /// GitHub (REST v3).
    Github(Arc<GithubClient>),
    /// GitLab (REST v4).
    Gitlab(Arc<GitlabClient>),
}

impl VcsClient {
    /// Which provider this is.
    pub fn vcs(&self) -> Vcs {
        match self {
            VcsClient::Github(_) => Vcs::Github,
            VcsClient::Gitlab(_) => Vcs::Gitlab,
        }
    }

    /// Head SHA and base branch of a pull/merge request.
    pub async fn pull(&self, repo: &str, number: i64) -> Result<PullInfo, VcsError> {
        match self {
            VcsClient::Github(c) => c.pull(repo, number).await,
            VcsClient::Gitlab(c) => c.merge_request(repo, number).await,
        }
    }

    /// Every file the pull touches (renames give both sides).
    pub async fn changed_files(
        &self,
        repo: &str,
        number: i64,
    ) -> Result<Vec<ChangedFile>, VcsError> {
        match self {
            VcsClient::Github(c) => c.changed_files(repo, number).await,
            VcsClient::Gitlab(c) => c.changed_files(repo, number).await,
        }
    }

    /// A file's bytes at a commit, `None` when absent.
    pub async fn file(
        &self,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, VcsError> {
        match self {
            VcsClient::Github(c) => c.file_content(repo, path, git_ref).await,
            VcsClient::Gitlab(c) => c.file_raw(repo, path, git_ref).await,
        }
    }

    /// A directory's entries at a commit, `None` when absent.
    pub async fn list_dir(
        &self,
        repo: &str,
        dir: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<DirEntry>>, VcsError> {
        match self {
            VcsClient::Github(c) => c.list_dir(repo, dir, git_ref).await,
            VcsClient::Gitlab(c) => c.list_dir(repo, dir, git_ref).await,
        }
    }

    /// Posts a comment on the pull/merge request.
    pub async fn comment(&self, repo: &str, number: i64, body: &str) -> Result<(), VcsError> {
        match self {
            VcsClient::Github(c) => c.post_comment(repo, number, body).await,
            VcsClient::Gitlab(c) => c.post_note(repo, number, body).await,
        }
    }

    /// Posts a comment and returns its id (for later edits).
    pub async fn create_comment(
        &self,
        repo: &str,
        number: i64,
        body: &str,
    ) -> Result<u64, VcsError> {
        match self {
            VcsClient::Github(c) => c.create_comment(repo, number, body).await,
            VcsClient::Gitlab(c) => c.create_note(repo, number, body).await,
        }
    }

    /// Replaces a comment's text; `false` when it no longer exists.
    pub async fn edit_comment(
        &self,
        repo: &str,
        number: i64,
        id: u64,
        body: &str,
    ) -> Result<bool, VcsError> {
        match self {
            VcsClient::Github(c) => c.edit_comment(repo, id, body).await,
            VcsClient::Gitlab(c) => c.edit_note(repo, number, id, body).await,
        }
    }

    /// The id of the first comment on the pull whose text contains `needle`.
    pub async fn find_comment(
        &self,
        repo: &str,
        number: i64,
        needle: &str,
    ) -> Result<Option<u64>, VcsError> {
        match self {
            VcsClient::Github(c) => c.find_comment(repo, number, needle).await,
            VcsClient::Gitlab(c) => c.find_note(repo, number, needle).await,
        }
    }
}
