//! The commands Atlantis runs and the VCSs it serves, and which command takes a lock under
//! which `repo_locks.mode` (ATLANTIS.md §4).

use std::fmt;

use super::key::LockMode;

/// Which command takes the locks; decides the lock mode rule and how the lead releases them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `atlantis plan` comment.
    Plan,
    /// `atlantis apply` comment (locks only under `on_apply`).
    Apply,
    /// `atlantis approve_policies` comment.
    ApprovePolicies,
    /// `atlantis import ADDR ID` comment.
    Import,
    /// `atlantis state rm ADDR...` comment.
    StateRm,
    /// Autoplan on PR opened/ready/updated.
    Autoplan,
    /// `POST /api/plan`: Atlantis releases every lock of the pull when the call ends.
    ApiPlan,
    /// `POST /api/apply`: plans then applies; releases every lock of the pull when the call ends.
    ApiApply,
}

impl CommandKind {
    /// Lowercase name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Plan => "plan",
            CommandKind::Apply => "apply",
            CommandKind::ApprovePolicies => "approve_policies",
            CommandKind::Import => "import",
            CommandKind::StateRm => "state_rm",
            CommandKind::Autoplan => "autoplan",
            CommandKind::ApiPlan => "api_plan",
            CommandKind::ApiApply => "api_apply",
        }
    }

    /// The command as a user types it after `atlantis` (autoplan and the API read as plan/apply).
    pub fn as_typed(self) -> &'static str {
        match self {
            CommandKind::Plan | CommandKind::Autoplan | CommandKind::ApiPlan => "plan",
            CommandKind::Apply | CommandKind::ApiApply => "apply",
            CommandKind::ApprovePolicies => "approve_policies",
            CommandKind::Import => "import",
            CommandKind::StateRm => "state rm",
        }
    }

    /// True for `/api/plan|apply`, whose locks Atlantis drops when the HTTP call ends.
    pub fn is_api(self) -> bool {
        matches!(self, CommandKind::ApiPlan | CommandKind::ApiApply)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VCS a request came from (or `Type` of an `/api/*` call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vcs {
    /// GitHub (github.com or Enterprise).
    Github,
    /// GitLab.
    Gitlab,
    /// Bitbucket Cloud.
    BitbucketCloud,
    /// Bitbucket Server / Data Center.
    BitbucketServer,
    /// Azure DevOps.
    AzureDevops,
    /// Gitea.
    Gitea,
}

impl Vcs {
    /// Every provider.
    pub const ALL: [Vcs; 6] = [
        Vcs::Github,
        Vcs::Gitlab,
        Vcs::BitbucketCloud,
        Vcs::BitbucketServer,
        Vcs::AzureDevops,
        Vcs::Gitea,
    ];

    /// The provider named by [`Vcs::as_str`].
    pub fn from_name(name: &str) -> Option<Vcs> {
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// Lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Vcs::Github => "github",
            Vcs::Gitlab => "gitlab",
            Vcs::BitbucketCloud => "bitbucket_cloud",
            Vcs::BitbucketServer => "bitbucket_server",
            Vcs::AzureDevops => "azuredevops",
            Vcs::Gitea => "gitea",
        }
    }

    /// Atlantis's `models.NewVCSHostType` (the `Type` of an `/api/*` body): exact, case-sensitive.
    pub fn from_api_type(t: &str) -> Option<Vcs> {
        Some(match t {
            "Github" => Vcs::Github,
            "Gitlab" => Vcs::Gitlab,
            "BitbucketCloud" => Vcs::BitbucketCloud,
            "BitbucketServer" => Vcs::BitbucketServer,
            "AzureDevops" => Vcs::AzureDevops,
            "Gitea" => Vcs::Gitea,
            _ => return None,
        })
    }
}

impl fmt::Display for Vcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ATLANTIS.md §4: which command takes the project lock under which mode.
pub fn command_locks(mode: LockMode, command: CommandKind) -> bool {
    use CommandKind::*;
    match (mode, command) {
        (LockMode::Disabled, _) => false,
        (_, Import | StateRm | ApiApply) => true,
        (LockMode::OnPlan, Plan | Autoplan | ApprovePolicies | ApiPlan) => true,
        (LockMode::OnApply, Apply) => true,
        _ => false,
    }
}

/// Comment commands as named in `--allow-commands`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommentCommandName {
    /// `version`
    Version,
    /// `plan`
    Plan,
    /// `apply`
    Apply,
    /// `cancel`
    Cancel,
    /// `unlock`
    Unlock,
    /// `approve_policies`
    ApprovePolicies,
    /// `import`
    Import,
    /// `state`
    State,
}

impl CommentCommandName {
    /// Every comment command, in Atlantis's `AllCommentCommands` order.
    pub const ALL: [CommentCommandName; 8] = [
        Self::Version,
        Self::Plan,
        Self::Apply,
        Self::Cancel,
        Self::Unlock,
        Self::ApprovePolicies,
        Self::Import,
        Self::State,
    ];

    /// Atlantis's `--allow-commands` default: `version,plan,apply,unlock,approve_policies,cancel`.
    pub const DEFAULT_ALLOWED: [CommentCommandName; 6] = [
        Self::Version,
        Self::Plan,
        Self::Apply,
        Self::Unlock,
        Self::ApprovePolicies,
        Self::Cancel,
    ];

    /// The name as typed in a comment.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Plan => "plan",
            Self::Apply => "apply",
            Self::Cancel => "cancel",
            Self::Unlock => "unlock",
            Self::ApprovePolicies => "approve_policies",
            Self::Import => "import",
            Self::State => "state",
        }
    }

    /// Parses a lowercase command word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == word)
    }
}
