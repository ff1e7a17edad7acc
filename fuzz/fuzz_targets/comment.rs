//! Atlantis's comment grammar (`atlantis plan -d ... -- extra args`), as comments reach it.
#![no_main]

use atlantis_lock_proxy::classify::Vcs;
use atlantis_lock_proxy::classify::comment::{Grammar, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bots = ["atlantis-bot".to_string()];
    let blocked = ["-chdir".to_string(), "--chdir".to_string()];
    let g = Grammar {
        executable_name: "atlantis",
        bot_users: &bots,
        allow_commands: &atlantis_lock_proxy::classify::CommentCommandName::ALL,
        blocked_extra_args: &blocked,
    };
    for vcs in [Vcs::Github, Vcs::Gitlab] {
        let _ = parse(text, vcs, &g);
    }
});
