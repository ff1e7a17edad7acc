//! Load harness: a simple GET straight to a fake upstream vs through the proxy, same run.
//!
//! `cargo bench --bench proxy_overhead` (env: `ALP_LOAD_SECS` per phase, default 5;
//! `ALP_LOAD_CONNS` keep-alive connections, default 32). Everything runs on loopback and stops
//! by itself. Prints requests/s and latency percentiles per phase and the proxied/direct ratios.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use atlantis_lock_proxy::app::App;
use atlantis_lock_proxy::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A minimal upstream: `200 {"status":"ok"}` for everything, like Atlantis's /healthz.
async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"status\":\"ok\"}",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Phase {
    requests: u64,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// `conns` keep-alive connections sending `GET /healthz` back to back for `secs`.
async fn load(target: SocketAddr, conns: u64, secs: u64) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(target).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let req = Request::get("/healthz")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let t = Instant::now();
                let resp = sender.send_request(req).await.expect("response");
                let _ = resp.into_body().collect().await.expect("body");
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Phase {
        requests: all.len() as u64,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn main() {
    let secs = env_num("ALP_LOAD_SECS", 5);
    let conns = env_num("ALP_LOAD_CONNS", 32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let upstream = start_upstream().await;
        let config = Config::from_yaml(&format!(
            "listen: 127.0.0.1:0\nadmin: {{listen: '127.0.0.1:0'}}\nupstream: {{url: 'http://{upstream}'}}\ntelemetry: {{log-level: warn}}\n"
        ))
        .expect("config");
        let app = App::build(config).await.expect("proxy");
        let proxy = app.proxy_addr();
        tokio::spawn(app.run(std::future::pending()));

        // Warm both paths (connection pools, caches) before measuring.
        load(upstream, conns, 1).await;
        load(proxy, conns, 1).await;
        let direct = load(upstream, conns, secs).await;
        let proxied = load(proxy, conns, secs).await;
        let direct2 = load(upstream, conns, secs).await;
        // One connection, one request at a time: the latency the proxy adds when nothing queues.
        let single_direct = load(upstream, 1, secs).await;
        let single_proxied = load(proxy, 1, secs).await;

        println!("GET /healthz, {conns} keep-alive connections, {secs}s per phase, loopback, 2 cores shared");
        println!("{:<10} {:>12} {:>10} {:>10}", "phase", "req/s", "p50 µs", "p99 µs");
        for (name, p) in [("direct", &direct), ("proxied", &proxied), ("direct#2", &direct2)] {
            println!("{name:<10} {:>12.0} {:>10} {:>10}", p.rps(), p.p50_us, p.p99_us);
        }
        let base_rps = (direct.rps() + direct2.rps()) / 2.0;
        let base_p50 = (direct.p50_us + direct2.p50_us) as f64 / 2.0;
        println!(
            "proxied/direct: throughput {:.2}x, p50 latency {:.2}x (+{:.0} µs); direct run-to-run spread {:.1}%",
            proxied.rps() / base_rps,
            proxied.p50_us as f64 / base_p50,
            proxied.p50_us as f64 - base_p50,
            (direct.rps() - direct2.rps()).abs() / base_rps * 100.0
        );
        println!(
            "1 connection: direct p50 {} µs p99 {} µs; proxied p50 {} µs p99 {} µs (+{} µs p50)",
            single_direct.p50_us,
            single_direct.p99_us,
            single_proxied.p50_us,
            single_proxied.p99_us,
            single_proxied.p50_us.saturating_sub(single_direct.p50_us)
        );
    });
}
