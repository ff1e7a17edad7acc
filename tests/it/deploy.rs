//! The deployment files against the proxy they deploy: every port, path and environment variable
//! docker-compose.yml and the Dockerfile name must exist in the proxy's configuration, and the
//! services they wire together must agree on names and ports. No Docker engine is needed: the
//! files are parsed, the proxy's own config loader reads their variables, and the admin routes
//! they probe are asked of a running proxy. The Kubernetes manifests and Helm values get the same
//! treatment in `kubernetes` (rendered by `kubectl kustomize`).

mod files;
mod helm;
mod kube;
mod kubernetes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use atlantis_lock_proxy::config::{Backend, CliOverrides, Config, ConfigError};

use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::get;
use crate::support::proxy::spawn_proxy;
use files::{Instruction, Service, compose, dockerfile, dockerfile_env, exec_form, repo};

/// `ALP_*` variables the binary's command line reads (clap `env = ...`), not config keys.
const CLI_ENV: &[&str] = &["ALP_CONFIG", "ALP_ADMIN_URL"];

/// A value no config key accepts, so loading it fails naming the key the variable sets: a YAML
/// list for typed keys, and for secret keys (taken as raw strings) a value with a leading blank,
/// which a secret refuses.
const PROBE: &str = " [[deploy-probe]]";

fn service<'a>(all: &'a BTreeMap<String, Service>, name: &str) -> &'a Service {
    all.get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no `{name}` service"))
}

fn load(file: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Config::load(Some(file), &env, &CliOverrides::default())
}

/// The config key an `ALP_*` variable sets, or why it sets none.
fn key_set_by(var: &str, file: &Path) -> Result<String, String> {
    let probe = BTreeMap::from([(var.to_string(), PROBE.to_string())]);
    match load(file, &probe) {
        Ok(_) => Err(format!(
            "{var} changes nothing: the proxy ignores it (not an alias, no `__` key path)"
        )),
        Err(e) if e.message.contains("unknown field") => {
            Err(format!("{var} names no config key: {e}"))
        }
        Err(e) => Ok(e.key),
    }
}

/// Every `ALP_*` variable either names a config key or is one the CLI reads.
fn assert_alp_vars_are_config(origin: &str, env: &BTreeMap<String, String>, file: &Path) {
    let mut seen = 0;
    for var in env.keys().filter(|k| k.starts_with("ALP_")) {
        seen += 1;
        if CLI_ENV.contains(&var.as_str()) {
            continue;
        }
        let key = key_set_by(var, file).unwrap_or_else(|e| panic!("{origin}: {e}"));
        let top = key.split(['.', '[']).next().unwrap_or_default();
        assert!(
            [
                "listen",
                "upstream",
                "server",
                "admin",
                "atlantis",
                "enhanced-locking",
                "telemetry"
            ]
            .contains(&top),
            "{origin}: {var} resolved to `{key}`"
        );
    }
    assert!(seen > 0, "{origin} sets no ALP_* variable");
}

fn host_port(url: &str) -> (String, u16) {
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    let host = uri.host().expect("host").to_string();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    (host, port)
}

/// The proxy service's config file on this machine (the file compose mounts at ALP_CONFIG).
fn compose_proxy_config(proxy: &Service) -> PathBuf {
    let target = &proxy.environment["ALP_CONFIG"];
    let file = proxy
        .mount_source_at(target)
        .unwrap_or_else(|| panic!("ALP_CONFIG={target} is not a mounted file"));
    assert!(file.is_file(), "{} does not exist", file.display());
    file
}

#[test]
fn env_example_holds_every_variable_and_no_real_secret() {
    // compose() fails on any ${VAR} without a default that .env.example lacks.
    let services = compose();
    assert!(services.contains_key("proxy"));
    for (k, v) in files::env_file(".env.example") {
        if ["TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|s| k.contains(s))
        {
            assert_eq!(v, "replace-me", ".env.example must not carry a real {k}");
        }
    }
    let ignored = files::read(".gitignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "/.env"),
        ".env must be git-ignored"
    );
}

#[test]
fn every_image_is_pinned_and_only_the_proxy_is_built() {
    for s in compose().values() {
        if s.raw.get("build").is_some() {
            assert_eq!(s.name, "proxy", "only the proxy is built here");
            continue;
        }
        let image = s
            .image()
            .unwrap_or_else(|| panic!("{} has no image", s.name));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
            "{}: image {image} is not pinned to a version",
            s.name
        );
    }
}

#[test]
fn every_mounted_or_copied_file_exists_in_the_repository() {
    for s in compose().values() {
        for (src, dst) in &s.volumes {
            if src.starts_with('.') || src.starts_with('/') {
                assert!(
                    repo().join(src).exists(),
                    "{}: {src} (mounted at {dst}) is not in the repository",
                    s.name
                );
            }
        }
    }
    for i in dockerfile().iter().filter(|i| i.keyword == "COPY") {
        if i.args.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = i.args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "Dockerfile COPY {src}: no such file"
            );
        }
    }
}

#[test]
fn alp_variables_in_compose_and_dockerfile_name_real_config_keys() {
    let services = compose();
    let proxy = service(&services, "proxy");
    let file = compose_proxy_config(proxy);
    assert_alp_vars_are_config("docker-compose.yml proxy", &proxy.environment, &file);
    let env = dockerfile_env(&dockerfile());
    assert_alp_vars_are_config("Dockerfile ENV", &env, &file);

    // The probe itself must catch a typo, or the two checks above prove nothing.
    assert!(key_set_by("ALP_REDIS_ADRESS", &file).is_err());
    assert!(key_set_by("ALP_ENHANCED_LOCKING__TRAFIC_SPLIT", &file).is_err());
    assert_eq!(
        key_set_by("ALP_REDIS_ADDR", &file).as_deref(),
        Ok("enhanced-locking.redis.addr")
    );
}

#[test]
fn compose_ports_and_service_names_match_the_proxy_config() {
    let services = compose();
    let proxy = service(&services, "proxy");
    let config = load(&compose_proxy_config(proxy), &proxy.environment)
        .unwrap_or_else(|e| panic!("the compose proxy's config does not load: {e}"));
    let (listen, admin) = (config.listen.port(), config.admin.listen.port());
    assert!(config.listen.ip().is_unspecified() && config.admin.listen.ip().is_unspecified());

    // Published ports are the proxy's listeners; the admin one only on the host's loopback.
    let published: BTreeSet<u16> = proxy.ports.iter().map(|p| p.2).collect();
    assert_eq!(published, BTreeSet::from([listen, admin]));
    for (ip, _, container) in &proxy.ports {
        if *container == admin {
            assert_eq!(
                ip.as_deref(),
                Some("127.0.0.1"),
                "admin port published publicly"
            );
        }
    }
    assert!(proxy.ports.iter().any(|p| p.1 == 4141 && p.2 == listen));

    // Atlantis is reached only through the proxy, on the port it is told to listen on.
    let atlantis = service(&services, "atlantis");
    assert!(atlantis.ports.is_empty(), "Atlantis must not be published");
    let atlantis_port: u16 = atlantis.environment["ATLANTIS_PORT"].parse().unwrap();
    assert_eq!(
        host_port(&config.upstream.url.to_string()),
        ("atlantis".to_string(), atlantis_port)
    );
    assert!(atlantis.expose.contains(&atlantis_port));
    let public = &atlantis.environment["ATLANTIS_ATLANTIS_URL"];
    assert_eq!(
        host_port(public).1,
        listen,
        "Atlantis's links must go through the proxy"
    );

    // Redis: the engine's backend, by service name, with the password Redis requires.
    assert_eq!(config.enhanced.backend, Backend::Redis);
    let redis_addr = config.enhanced.redis.addr.as_deref().unwrap();
    let redis = service(&services, "redis");
    let (host, port) = redis_addr.split_once(':').unwrap();
    assert_eq!(host, redis.name);
    assert!(redis.expose.contains(&port.parse().unwrap()));
    let args: Vec<&str> = redis.raw["command"]
        .as_sequence()
        .expect("redis command as a list")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| {
        let i = args.iter().position(|a| *a == flag);
        i.and_then(|i| args.get(i + 1).copied())
    };
    assert_eq!(
        config.enhanced.redis.password.as_ref().map(|p| p.expose()),
        after("--requirepass")
    );
    // Queued requests live in Redis: persistence must be on.
    assert_eq!(after("--appendonly"), Some("yes"));
    assert!(redis.volumes.iter().any(|(_, dst)| dst == "/data"));
    assert!(config.admin.token.is_some());
}

#[test]
fn prometheus_scrapes_the_admin_listener_and_loads_the_alert_rules() {
    let services = compose();
    let proxy = service(&services, "proxy");
    let config = load(&compose_proxy_config(proxy), &proxy.environment).unwrap();
    let prometheus = service(&services, "prometheus");
    let prom_yml = "config/prometheus/prometheus.yml";
    let mounted = prometheus
        .mount_target_of(prom_yml)
        .expect("prometheus.yml mounted");
    let command: Vec<String> = prometheus.raw["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(command.contains(&format!("--config.file={mounted}")));

    let doc = files::yaml(prom_yml);
    let job = &doc["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    let target = job["static_configs"][0]["targets"][0].as_str().unwrap();
    assert_eq!(
        target,
        format!("{}:{}", proxy.name, config.admin.listen.port())
    );
    // Rule files are relative to prometheus.yml, both here and in the container.
    let dir = Path::new(mounted).parent().unwrap();
    for rule in doc["rule_files"].as_sequence().unwrap() {
        let rule = rule.as_str().unwrap();
        let here = format!("config/prometheus/{rule}");
        assert!(repo().join(&here).is_file(), "{here} missing");
        assert_eq!(
            prometheus.mount_target_of(&here).map(PathBuf::from),
            Some(dir.join(rule)),
            "{rule} must be mounted next to prometheus.yml"
        );
    }
}

#[test]
fn traces_and_dashboards_are_wired_to_services_that_exist() {
    let services = compose();
    let proxy = service(&services, "proxy");
    let config = load(&compose_proxy_config(proxy), &proxy.environment).unwrap();

    // Proxy → collector (gRPC receiver) → Jaeger.
    let endpoint = config
        .telemetry
        .otlp_endpoint
        .as_deref()
        .expect("traces on");
    assert_eq!(config.telemetry.otlp_protocol, "grpc");
    let (host, port) = host_port(endpoint);
    let collector = service(&services, &host);
    assert!(collector.expose.contains(&port));
    let file = "config/otel-collector/config.yaml";
    let target = collector
        .mount_target_of(file)
        .expect("collector config mounted");
    assert!(
        collector.raw["command"][0]
            .as_str()
            .unwrap()
            .ends_with(target)
    );
    let otel = files::yaml(file);
    let grpc = otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(grpc, format!("0.0.0.0:{port}"));
    let pipeline = &otel["service"]["pipelines"]["traces"];
    let exporter = pipeline["exporters"][0].as_str().unwrap();
    let to = otel["exporters"][exporter]["endpoint"].as_str().unwrap();
    let (jaeger_host, jaeger_port) = to.split_once(':').unwrap();
    assert!(
        service(&services, jaeger_host)
            .expose
            .contains(&jaeger_port.parse().unwrap())
    );

    // Grafana: the provider reads the directory the dashboard is mounted in; data sources
    // point at services that exist.
    let grafana = service(&services, "grafana");
    let dashboard = "config/grafana/atlantis-lock-proxy.json";
    let json: serde_json::Value = serde_json::from_str(&files::read(dashboard)).unwrap();
    assert!(json["uid"].is_string());
    let mounted = grafana
        .mount_target_of(dashboard)
        .expect("dashboard mounted");
    let prov = grafana
        .mount_target_of("config/grafana/provisioning")
        .unwrap();
    assert_eq!(prov, "/etc/grafana/provisioning");
    let providers = files::yaml("config/grafana/provisioning/dashboards/dashboards.yml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(Path::new(mounted).parent(), Some(Path::new(path)));
    let sources = files::yaml("config/grafana/provisioning/datasources/datasources.yml");
    for ds in sources["datasources"].as_sequence().unwrap() {
        let (host, _) = host_port(ds["url"].as_str().unwrap());
        service(&services, &host);
    }
}

fn healthcheck(instructions: &[Instruction]) -> (String, u16, String) {
    let check = instructions
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let argv = exec_form(&check.args[check.args.find("CMD").unwrap()..]);
    let url = argv
        .iter()
        .find(|a| a.starts_with("http://"))
        .expect("a URL");
    let uri: http::Uri = url.parse().unwrap();
    (
        uri.host().unwrap().to_string(),
        uri.port_u16().unwrap(),
        uri.path().to_string(),
    )
}

#[test]
fn dockerfile_ports_healthcheck_and_env_match_the_config() {
    let instructions = dockerfile();
    let env = dockerfile_env(&instructions);
    // ALP_CONFIG points at the example config the image copies in.
    let copy = instructions
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.ends_with(&env["ALP_CONFIG"]))
        .expect("ALP_CONFIG is a copied file");
    let file = repo().join(copy.args.split_whitespace().next().unwrap());

    // Without a token the image refuses to start, as its comment says.
    let err = load(&file, &env).expect_err("a public admin listener without token");
    assert_eq!(err.key, "admin.token");
    let mut with_token = env.clone();
    with_token.insert("ALP_ADMIN_TOKEN".into(), "t".into());
    let config = load(&file, &with_token).unwrap();

    let exposed: BTreeSet<u16> = instructions
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|p| p.split('/').next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from([config.listen.port(), config.admin.listen.port()])
    );
    let (host, port, _) = healthcheck(&instructions);
    assert_eq!(host, "127.0.0.1");
    assert_eq!(port, config.admin.listen.port());
    assert!(config.admin.listen.ip().is_unspecified() || config.admin.listen.ip().is_loopback());

    let entry = exec_form(
        &instructions
            .iter()
            .find(|i| i.keyword == "ENTRYPOINT")
            .unwrap()
            .args,
    );
    assert!(entry[0].ends_with("/atlantis-lock-proxy"));
    let cmd = exec_form(
        &instructions
            .iter()
            .find(|i| i.keyword == "CMD")
            .unwrap()
            .args,
    );
    assert_eq!(cmd, ["serve"]);
}

#[test]
fn alp_config_variable_selects_the_config_file() {
    let services = compose();
    let proxy = service(&services, "proxy");
    let file = compose_proxy_config(proxy);
    let binary = env!("CARGO_BIN_EXE_atlantis-lock-proxy");
    let run = |config: &Path| {
        Command::new(binary)
            .arg("check-config")
            .env_clear()
            .envs(&proxy.environment)
            .env("ALP_CONFIG", config)
            .output()
            .unwrap()
    };
    let ok = run(&file);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = repo().join("config/no-such-config.yaml");
    let out = run(&missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-config.yaml"));
}

#[tokio::test]
async fn healthcheck_and_scrape_paths_are_open_admin_routes() {
    let (_, _, health) = healthcheck(&dockerfile());
    let doc = files::yaml("config/prometheus/prometheus.yml");
    let metrics = doc["scrape_configs"][0]["metrics_path"]
        .as_str()
        .unwrap()
        .to_string();
    let fake = FakeAtlantis::start().await;
    // As in the container: a token is configured, and these paths must not need it.
    let proxy = spawn_proxy(
        &fake.url(),
        "admin:\n  listen: 127.0.0.1:0\n  token: t0ken\n",
    )
    .await;
    let r = get(&proxy.admin_url(&health)).await;
    assert_eq!(r.status, 200, "HEALTHCHECK {health}: {}", r.text());
    let r = get(&proxy.admin_url(&metrics)).await;
    assert_eq!(r.status, 200, "scrape {metrics}: {}", r.text());
    assert!(
        r.text()
            .contains("atlantis_enhanced_locking_backend_health")
    );
    proxy.stop().await;
}
