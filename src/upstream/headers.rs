//! Header hygiene between hops (RFC 9110 §7.6.1) and the `X-Forwarded-*` trio.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
///
/// For a protocol upgrade (websocket) the `Connection: upgrade` and `Upgrade` pair must survive,
/// so callers pass `keep_upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade = headers.get(header::UPGRADE).cloned();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if keep_upgrade && let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Adds `X-Forwarded-For/-Proto/-Host`, appending to values set by an outer proxy.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    let fhost = HeaderName::from_static("x-forwarded-host");
    if !headers.contains_key(&fhost)
        && let Some(host) = headers.get(header::HOST).cloned()
    {
        headers.insert(fhost, host);
    }
}

/// True when the request asks to switch protocols (websocket log streams).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// True only for Atlantis's one websocket route: `GET /jobs/{id}/ws` with `Upgrade: websocket`.
///
/// Any other upgrade request is read like an ordinary one (its `Upgrade` header is hop-by-hop and
/// dropped), so classification and signature checks always apply.
pub fn is_job_websocket(method: &http::Method, path: &str, headers: &HeaderMap) -> bool {
    let job = path
        .strip_prefix("/jobs/")
        .and_then(|rest| rest.strip_suffix("/ws"));
    let websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
    method == http::Method::GET
        && job.is_some_and(|id| !id.is_empty() && !id.contains('/'))
        && websocket
        && is_upgrade(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go_end_to_end_stay() {
        let mut h = map(&[
            ("connection", "keep-alive, x-session"),
            ("keep-alive", "timeout=5"),
            ("x-session", "abc"),
            ("transfer-encoding", "chunked"),
            ("x-hub-signature-256", "sha256=00"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-hub-signature-256"));
    }

    #[test]
    fn upgrades_keep_their_pair() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn only_the_job_log_route_is_a_websocket() {
        use http::Method;
        let ws = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_job_websocket(&Method::GET, "/jobs/abc-1/ws", &ws));
        assert!(!is_job_websocket(&Method::POST, "/jobs/abc-1/ws", &ws));
        assert!(!is_job_websocket(&Method::GET, "/events", &ws));
        assert!(!is_job_websocket(&Method::GET, "/jobs//ws", &ws));
        assert!(!is_job_websocket(&Method::GET, "/jobs/a/b/ws", &ws));
        let h2c = map(&[("connection", "Upgrade"), ("upgrade", "h2c")]);
        assert!(!is_job_websocket(&Method::GET, "/jobs/abc-1/ws", &h2c));
        let no_conn = map(&[("upgrade", "websocket")]);
        assert!(!is_job_websocket(&Method::GET, "/jobs/abc-1/ws", &no_conn));
    }

    #[test]
    fn forwarded_for_appends_to_an_outer_proxy() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("host", "atlantis.example.com"),
        ]);
        add_forwarded(&mut h, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "atlantis.example.com");
    }
}
