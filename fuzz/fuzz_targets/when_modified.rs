//! `when_modified` patterns joined to a project dir and matched, like Atlantis. Input lines: the
//! dir, then patterns up to an empty line, then file paths to match.
#![no_main]

use atlantis_lock_proxy::resolve::PatternList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let dir = lines.next().unwrap_or(".");
    let patterns: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .take(64)
        .map(String::from)
        .collect();
    let Ok(list) = PatternList::for_project(dir, &patterns) else {
        return;
    };
    for file in lines.take(64) {
        let _ = list.matches_or_parent_matches(file);
    }
});
