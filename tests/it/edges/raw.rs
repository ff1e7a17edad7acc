//! Raw TCP clients: requests exactly as written, and clients that misbehave on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` + `body` on a fresh connection and returns the response head (status line and
/// headers, lowercased names kept as sent) once it arrives, or `None` after `wait`.
pub async fn request(addr: SocketAddr, head: &str, body: &[u8], wait: Duration) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    read_head(&mut s, wait).await
}

/// Reads until the end of a response head, or `None` on close/timeout first.
pub async fn read_head(s: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// True when the server closed `s` (EOF or reset) within `wait`.
pub async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1024];
    let res = tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    res.unwrap_or(false)
}
