//! Out of file descriptors: the real binary backs off, logs it once per interval, and serves
//! again as soon as descriptors are free.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::get;
use crate::support::ports::free_ports;

#[tokio::test]
async fn running_out_of_descriptors_is_logged_once_and_survived() {
    let fake = FakeAtlantis::start().await;
    let [main, admin] = free_ports::<2>();
    let dir = std::env::temp_dir().join(format!("alp-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{main}\nupstream: {{url: '{}'}}\nadmin: {{listen: '127.0.0.1:{admin}'}}\n",
            fake.url()
        ),
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} --config {}",
            env!("CARGO_BIN_EXE_atlantis-lock-proxy"),
            cfg.display()
        ))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{main}/healthz");
    let up = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", main))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), up)
        .await
        .expect("proxy up");
    // Far more idle connections than descriptors: accepting fails with EMFILE for a while.
    let mut idle = Vec::new();
    for _ in 0..150 {
        if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", main)).await {
            idle.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().filter(|l| l.contains("accept failed")).count();
    assert_eq!(
        lines, 1,
        "logged once per interval, not per attempt:\n{text}"
    );
    drop(idle);
    let reply = tokio::time::timeout(Duration::from_secs(10), get(&url))
        .await
        .expect("served again once descriptors are free");
    assert_eq!(reply.status, 200);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
