//! The vocabulary every module shares: lock keys, pulls, priorities, lock modes, commands, VCSs,
//! secrets and the words of the request path's decisions. A leaf: it depends on no other module
//! of the crate, so configuration, the engine, the resolver, the VCS clients and the request path
//! can all speak it without depending on each other.

mod command;
mod decision;
mod key;
mod pull;
mod secret;

pub use command::{CommandKind, CommentCommandName, Vcs, command_locks};
pub use decision::{DiffKind, EnginePath, LegacyReason, UnresolvedKind};
pub use key::{LockKey, LockMode, ParseKeyError, Priority};
pub use pull::{ParsePullError, PullId, PullRef};
pub use secret::{RawSecret, Secret, has_userinfo, redact_userinfo};
