//! Where a repository's keys live: `<prefix>{<tag>}:<name>`, the tag a digest of the repository
//! name (issue 14, item 9).
//!
//! The hash tag decides the Redis Cluster slot, and every script touches one repository's keys,
//! so they must share one tag. Taken from the raw name, a name starting with `}` gave an empty tag
//! (each key its own slot, so every script of that repository failed with `CROSSSLOT`) and a name
//! holding `}` a shorter one. The digest is 32 hex digits of SHA-256: the same for every replica
//! and version, never empty, and two repositories never share keys.
//!
//! Keys written by earlier versions under `{<repo>}` are moved once per keyspace (see
//! [`Layout::legacy_base`] and `lua/migrate.lua`), before the engine's first operation;
//! `<prefix>layout` records that it is done.

use sha2::{Digest, Sha256};

/// Version marker stored at `<prefix>layout` once the keyspace uses digest tags.
pub const LAYOUT_VERSION: &str = "digest-tag-1";

/// Key names of one keyspace (one `key-prefix`).
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The hash tag of a repository: a digest of its name.
    pub fn tag(repo: &str) -> String {
        hex::encode(&Sha256::digest(repo.as_bytes())[..16])
    }

    /// The key base of a repository: `<prefix>{<tag>}:`.
    pub fn base(&self, repo: &str) -> String {
        format!("{}{{{}}}:", self.prefix, Self::tag(repo))
    }

    /// The key base earlier versions used: `<prefix>{<repo>}:`.
    pub fn legacy_base(&self, repo: &str) -> String {
        format!("{}{{{repo}}}:", self.prefix)
    }

    /// The index of repositories with state.
    pub fn repos(&self) -> String {
        format!("{}repos", self.prefix)
    }

    /// Stored requests and their bytes across repositories (standalone Redis only).
    pub fn usage(&self) -> String {
        format!("{}usage", self.prefix)
    }

    /// Replica leases: which replicas share this keyspace and whether each is in step.
    pub fn members(&self) -> String {
        format!("{}members", self.prefix)
    }

    /// The layout version marker.
    pub fn version(&self) -> String {
        format!("{}layout", self.prefix)
    }

    /// Held while one replica moves keys to this layout.
    pub fn migration_lock(&self) -> String {
        format!("{}layout-migration", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's rule: the tag is between the first `{` and the next `}`, if not empty.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn every_key_of_a_repository_shares_one_tag_whatever_its_name() {
        let l = Layout::new("atlantis:lock:");
        for repo in ["acme/infra", "}evil", "a{b}c", "{", "}", "x}y{z", ""] {
            let base = l.base(repo);
            let keys = [
                format!("{base}h"),
                format!("{base}q:dir\u{1f}default\u{1f}proj}}{{x"),
                format!("{base}w:000000000001"),
            ];
            let tag = Layout::tag(repo);
            assert_eq!(tag.len(), 32);
            for k in &keys {
                assert_eq!(hash_tag(k), tag, "{repo:?}: {k}");
            }
        }
        assert_ne!(Layout::tag("a/b"), Layout::tag("a/c"));
        assert_eq!(Layout::tag("acme/infra"), Layout::tag("acme/infra"));
    }
}
