//! Small, panic-free accessors over `serde_json::Value` for webhook payloads.

use serde_json::Value;

/// Follows `path` through nested objects.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// A non-empty string at `path`.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A string at `path`, empty when absent (Go's zero value).
pub fn str_or_empty<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// An integer at `path`, 0 when absent (Go's zero value).
pub fn int_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

/// A bool at `path`, false when absent.
pub fn bool_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// `field` of every object in the array at `path` (label names).
pub fn names_at(v: &Value, path: &[&str], field: &str) -> Vec<String> {
    at(v, path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get(field).and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Owned copy of a non-empty string at `path`.
pub fn owned(v: &Value, path: &[&str]) -> Option<String> {
    str_at(v, path).map(str::to_owned)
}

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
    fn accessors_never_panic_on_odd_shapes() {
        let v: Value =
            serde_json::json!({"a": {"b": "x", "n": 3, "l": [{"name": "p"}, 1, {"name": 2}]}});
        assert_eq!(str_at(&v, &["a", "b"]), Some("x"));
        assert_eq!(str_at(&v, &["a", "n"]), None);
        assert_eq!(int_at(&v, &["a", "n"]), 3);
        assert_eq!(int_at(&v, &["a", "b", "c"]), 0);
        assert_eq!(names_at(&v, &["a", "l"], "name"), ["p"]);
        assert!(names_at(&v, &["zzz"], "name").is_empty());
    }

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
