//! Shared checks over webhook payload values.

/// Atlantis's `models.NewRepo` check for GitHub/GitLab/Gitea: a non-empty clone URL whose path
/// is `/{full_name}.git` (`.git` appended when missing). GitLab may sit under a base path, so
/// there only the suffix must match.
pub fn clone_url_matches(full_name: &str, clone_url: &str, allow_base_path: bool) -> bool {
    if full_name.is_empty() || clone_url.is_empty() {
        return false;
    }
    let url = if clone_url.ends_with(".git") {
        clone_url.to_owned()
    } else {
        format!("{clone_url}.git")
    };
    let path = match url.parse::<http::Uri>() {
        Ok(u) => u.path().to_owned(),
        Err(_) => return false,
    };
    let expected = format!("/{full_name}.git");
    if allow_base_path {
        path.ends_with(&expected)
    } else {
        path == expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_urls_are_checked_like_new_repo() {
        assert!(clone_url_matches(
            "o/r",
            "https://github.com/o/r.git",
            false
        ));
        assert!(clone_url_matches("o/r", "https://github.com/o/r", false));
        assert!(!clone_url_matches(
            "o/r",
            "https://github.com/evil/r.git",
            false
        ));
        assert!(!clone_url_matches("o/r", "", false));
        assert!(clone_url_matches(
            "g/s/r",
            "https://host/gitlab/g/s/r.git",
            true
        ));
    }
}
