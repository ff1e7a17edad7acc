//! The Kubernetes deployment against the proxy it deploys: both kustomize overlays as
//! `kubectl kustomize` renders them and the optional ServiceMonitor (the Helm sidecar values'
//! own checks are in `helm`).
//! Every port, path, environment variable and config key they name must exist in the proxy, and
//! the objects they wire together must agree on names, labels and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use atlantis_lock_proxy::config::{Backend, CliOverrides, Config};
use serde_norway::Value;

use super::files::{dockerfile, read};
use super::kube::{
    EnvValue, HELM_VALUES, PROXY, container, container_ports, env, env_with_secrets, find,
    helm_pod_spec, helm_values, http_probe, labels, name, named_port, of_kind, pod_labels, port,
    render, selects, seq, str_of,
};
use super::{assert_alp_vars_are_config, host_port, load};
use crate::support::fake_atlantis::FakeAtlantis;
use crate::support::http::{get, send};
use crate::support::proxy::spawn_config;
use crate::support::redis::RedisServer;

/// The proxy container of one pod, and the configuration it runs with.
pub(super) struct Proxy {
    pub(super) origin: String,
    pub(super) container: Value,
    pub(super) env: BTreeMap<String, EnvValue>,
    /// The ConfigMap's config file, written out as the container sees it at ALP_CONFIG.
    pub(super) file: PathBuf,
    pub(super) config: Config,
}

/// Finds the ConfigMap mounted at ALP_CONFIG's directory and loads it with the container's
/// environment, as the proxy does at start.
fn proxy_in(origin: &str, pod_spec: &Value, configmaps: &[&Value]) -> Proxy {
    let container = container(pod_spec, PROXY).clone();
    let env = env(&container);
    let Some(EnvValue::Plain(path)) = env.get("ALP_CONFIG") else {
        panic!("{origin}: ALP_CONFIG is not set")
    };
    let (dir, file_name) = path.rsplit_once('/').expect("ALP_CONFIG is a path");
    let mount = seq(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("{origin}: nothing is mounted at {dir}"));
    assert_eq!(
        mount["readOnly"].as_bool(),
        Some(true),
        "{origin}: config mount"
    );
    let volume = seq(&pod_spec["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{origin}: no volume {:?}", mount["name"]));
    let cm_name = str_of(&volume["configMap"]["name"], "configMap volume");
    let cm = configmaps
        .iter()
        .find(|c| name(c) == cm_name)
        .unwrap_or_else(|| panic!("{origin}: the volume's ConfigMap {cm_name} is not deployed"));
    let text = str_of(&cm["data"][file_name], "ConfigMap data");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deploy-k8s");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.yaml", origin.replace(['/', ' '], "_")));
    std::fs::write(&file, text).unwrap();
    let config = load(&file, &env_with_secrets(&env))
        .unwrap_or_else(|e| panic!("{origin}: the proxy refuses its config: {e}"));
    Proxy {
        origin: origin.to_string(),
        container,
        env,
        file,
        config,
    }
}

fn standalone_proxy(objects: &[Value]) -> Proxy {
    let deployment = find(objects, "Deployment", PROXY);
    let cms: Vec<&Value> = of_kind(objects, "ConfigMap").collect();
    proxy_in("standalone", &deployment["spec"]["template"]["spec"], &cms)
}

pub(super) fn sidecar_proxy(objects: &[Value]) -> Proxy {
    let sts = find(objects, "StatefulSet", "atlantis");
    let cms: Vec<&Value> = of_kind(objects, "ConfigMap").collect();
    proxy_in("sidecar", &sts["spec"]["template"]["spec"], &cms)
}

pub(super) fn helm_proxy(values: &Value) -> Proxy {
    let manifests = seq(&values["extraManifests"], "extraManifests");
    let cms: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "ConfigMap")
        .collect();
    proxy_in(HELM_VALUES, &helm_pod_spec(values), &cms)
}

pub(super) fn upstream(p: &Proxy) -> (String, u16) {
    host_port(&p.config.upstream.url.to_string())
}

/// What every pod running the proxy must get right, whichever way it is deployed.
fn assert_runs_as_configured(p: &Proxy, pod_spec: &Value) {
    let (o, c, config) = (&p.origin, &p.container, &p.config);
    assert_alp_vars_are_config(o, &env_with_secrets(&p.env), &p.file);

    // The listeners the config opens are the container's ports, reachable from the pod network.
    assert!(
        config.listen.ip().is_unspecified(),
        "{o}: listen on loopback only"
    );
    assert!(
        config.admin.listen.ip().is_unspecified(),
        "{o}: admin on loopback only"
    );
    assert_eq!(
        named_port(c, "http"),
        config.listen.port(),
        "{o}: http port"
    );
    assert_eq!(
        named_port(c, "admin"),
        config.admin.listen.port(),
        "{o}: admin port"
    );
    assert!(
        config.admin.token.is_some(),
        "{o}: a public admin listener needs the token"
    );
    assert!(
        matches!(p.env.get("ALP_ADMIN_TOKEN"), Some(EnvValue::Secret(..))),
        "{o}: the admin token must come from a Secret"
    );
    for (k, v) in &p.env {
        if ["TOKEN", "SECRET", "PASSWORD"]
            .iter()
            .any(|s| k.contains(s))
        {
            assert!(
                matches!(v, EnvValue::Secret(..)),
                "{o}: {k} is not from a Secret"
            );
        }
    }

    // Probes: liveness on /healthz, readiness on /readyz?engine=optional, both on the admin port;
    // the engine is optional only because a failed engine falls back to Atlantis.
    let admin = config.admin.listen.port();
    assert_eq!(
        http_probe(c, "livenessProbe"),
        ("/healthz".into(), admin),
        "{o}"
    );
    assert_eq!(
        http_probe(c, "readinessProbe"),
        ("/readyz?engine=optional".into(), admin),
        "{o}"
    );
    assert!(
        config.enhanced.legacy_fallback,
        "{o}: engine=optional needs legacy-fallback"
    );

    // The image's entry point with its default command; the image tag is this version.
    assert_eq!(c["args"], Value::from(vec!["serve"]), "{o}: args");
    let image = str_of(&c["image"], "image");
    assert_eq!(
        image.rsplit_once(':').map(|(_, t)| t),
        Some(env!("CARGO_PKG_VERSION")),
        "{o}: image {image} is not this version"
    );

    // Non-root as the image's user, nothing writable but what is mounted.
    let user = dockerfile()
        .into_iter()
        .find(|i| i.keyword == "USER")
        .expect("Dockerfile USER");
    let uid: u64 = user.args.split(':').next().unwrap().parse().unwrap();
    let sc = &c["securityContext"];
    let pod_sc = &pod_spec["securityContext"];
    let run_as = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
    assert_eq!(run_as, Some(uid), "{o}: runAsUser is not the image's user");
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{o}");
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{o}");
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{o}");
    assert_eq!(sc["capabilities"]["drop"], Value::from(vec!["ALL"]), "{o}");
    for r in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(
                c["resources"][r][what].is_string(),
                "{o}: resources.{r}.{what} is not set"
            );
        }
    }

    // SIGTERM drains for server.drain-period: the pod must be given longer.
    let grace = pod_spec["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("{o}: terminationGracePeriodSeconds (default 30s)"));
    assert!(
        grace > config.server.drain_period.as_secs(),
        "{o}: grace {grace}s <= drain-period {:?}",
        config.server.drain_period
    );
}

#[test]
fn every_pod_runs_the_proxy_as_its_config_says() {
    let standalone = render("standalone");
    let deployment = find(&standalone, "Deployment", PROXY);
    assert_runs_as_configured(
        &standalone_proxy(&standalone),
        &deployment["spec"]["template"]["spec"],
    );
    let sidecar = render("sidecar");
    let sts = find(&sidecar, "StatefulSet", "atlantis");
    assert_runs_as_configured(&sidecar_proxy(&sidecar), &sts["spec"]["template"]["spec"]);
    let values = helm_values();
    assert_runs_as_configured(&helm_proxy(&values), &helm_pod_spec(&values));
}

#[test]
fn the_probe_catches_a_misspelt_variable_in_a_manifest() {
    // assert_alp_vars_are_config must fail on a typo, or the test above proves nothing.
    let objects = render("sidecar");
    let p = sidecar_proxy(&objects);
    let mut env = env_with_secrets(&p.env);
    env.insert("ALP_ENHANCED_LOCKING__BAKEND".into(), "memory".into());
    let caught = std::panic::catch_unwind(|| assert_alp_vars_are_config("typo", &env, &p.file));
    assert!(caught.is_err());
}

#[test]
fn standalone_reaches_atlantis_and_redis_through_services_it_deploys() {
    let objects = render("standalone");
    let p = standalone_proxy(&objects);
    let deployment = find(&objects, "Deployment", PROXY);
    let proxy_pods = pod_labels(deployment);
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    // More than one replica: the engine must be shared.
    assert_eq!(p.config.enhanced.backend, Backend::Redis);

    // Webhooks reach the proxy's listener through its Service.
    let svc = find(&objects, "Service", PROXY);
    assert!(selects(&labels(&svc["spec"]["selector"]), &proxy_pods));
    let svc_port = &seq(&svc["spec"]["ports"], "ports")[0];
    assert_eq!(
        port(&p.container, &svc_port["targetPort"]),
        p.config.listen.port()
    );

    // Atlantis through atlantis-internal, whose pods only the proxy may reach.
    let (host, up_port) = upstream(&p);
    let internal = find(&objects, "Service", &host);
    let atlantis_pods = labels(&internal["spec"]["selector"]);
    let internal_port = seq(&internal["spec"]["ports"], "ports")
        .iter()
        .find(|sp| sp["port"].as_u64() == Some(u64::from(up_port)))
        .unwrap_or_else(|| panic!("{host} has no port {up_port}"));
    let atlantis_port = internal_port["targetPort"]
        .as_u64()
        .expect("numeric targetPort");
    let np = find(&objects, "NetworkPolicy", "atlantis-only-from-proxy");
    assert_eq!(
        labels(&np["spec"]["podSelector"]["matchLabels"]),
        atlantis_pods
    );
    let rules = seq(&np["spec"]["ingress"], "ingress");
    assert_eq!(rules.len(), 1, "one rule: from the proxy");
    let from = seq(&rules[0]["from"], "from");
    assert_eq!(from.len(), 1);
    assert!(selects(
        &labels(&from[0]["podSelector"]["matchLabels"]),
        &proxy_pods
    ));
    assert!(from[0].get("namespaceSelector").is_none() && from[0].get("ipBlock").is_none());
    let ports: Vec<u64> = seq(&rules[0]["ports"], "ports")
        .iter()
        .map(|x| x["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [atlantis_port]);
    assert!(
        !selects(&atlantis_pods, &proxy_pods),
        "the policy must not select the proxy"
    );

    // Redis: the address is its Service, the password the one Redis requires, AOF on a volume.
    let addr = p.config.enhanced.redis.addr.as_deref().expect("redis addr");
    let (redis_host, redis_port) = addr.split_once(':').unwrap();
    let redis_svc = find(&objects, "Service", redis_host);
    let redis_sts = find(&objects, "StatefulSet", redis_host);
    let redis_pods = pod_labels(redis_sts);
    assert!(selects(
        &labels(&redis_svc["spec"]["selector"]),
        &redis_pods
    ));
    let redis = container(&redis_sts["spec"]["template"]["spec"], "redis");
    let rp = seq(&redis_svc["spec"]["ports"], "ports")
        .iter()
        .find(|sp| sp["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(redis_port))
        .expect("redis Service port");
    let redis_container_port = port(redis, &rp["targetPort"]);
    let args: Vec<&str> = seq(&redis["args"], "redis args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let after = |flag: &str| {
        let i = args.iter().position(|a| *a == flag)?;
        args.get(i + 1).copied()
    };
    assert_eq!(after("--appendonly"), Some("yes"));
    assert_eq!(after("--requirepass"), Some("$(REDIS_PASSWORD)"));
    assert_eq!(
        env(redis).get("REDIS_PASSWORD"),
        p.env.get("ALP_REDIS_PASSWORD"),
        "Redis and the proxy must read the same Secret key"
    );
    let dir = after("--dir").unwrap_or("/data");
    let mount = seq(&redis["volumeMounts"], "mounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .expect("the AOF directory is a volume");
    let claims = seq(&redis_sts["spec"]["volumeClaimTemplates"], "claims");
    assert!(
        claims
            .iter()
            .any(|c| c["metadata"]["name"] == mount["name"])
    );
    let redis_np = find(&objects, "NetworkPolicy", redis_host);
    assert!(selects(
        &labels(&redis_np["spec"]["podSelector"]["matchLabels"]),
        &redis_pods
    ));
    let rule = &seq(&redis_np["spec"]["ingress"], "ingress")[0];
    assert!(selects(
        &labels(&rule["from"][0]["podSelector"]["matchLabels"]),
        &proxy_pods
    ));
    assert_eq!(
        rule["ports"][0]["port"].as_u64(),
        Some(u64::from(redis_container_port))
    );

    // A drain keeps a replica; the PDB allows one to go.
    let pdb = find(&objects, "PodDisruptionBudget", PROXY);
    assert!(selects(
        &labels(&pdb["spec"]["selector"]["matchLabels"]),
        &proxy_pods
    ));
    let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
    assert!(min >= 1 && min < deployment["spec"]["replicas"].as_u64().unwrap());
}

#[test]
fn sidecar_puts_the_proxy_on_atlantis_port_and_atlantis_behind_it() {
    let objects = render("sidecar");
    let p = sidecar_proxy(&objects);
    let sts = find(&objects, "StatefulSet", "atlantis");
    let spec = &sts["spec"]["template"]["spec"];
    let atlantis = container(spec, "atlantis");
    let a_env = env(atlantis);

    // One pod, the memory backend, Atlantis on the pod's loopback at the port it is told.
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(p.config.enhanced.backend, Backend::Memory);
    let (host, up) = upstream(&p);
    assert_eq!(host, "127.0.0.1");
    assert_eq!(a_env["ATLANTIS_PORT"], EnvValue::Plain(up.to_string()));
    assert_eq!(container_ports(atlantis), [up]);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(http_probe(atlantis, probe), ("/healthz".into(), up));
    }
    // The Service keeps Atlantis's name and reaches the proxy; no port is claimed twice.
    let svc = find(&objects, "Service", "atlantis");
    assert!(selects(&labels(&svc["spec"]["selector"]), &pod_labels(sts)));
    let sp = &seq(&svc["spec"]["ports"], "ports")[0];
    assert_eq!(
        port(&p.container, &sp["targetPort"]),
        p.config.listen.port()
    );
    let mut all: Vec<u16> = container_ports(atlantis);
    all.extend(container_ports(&p.container));
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "{all:?}"
    );
    // Links in Atlantis's comments go to the public URL, never to the inner port.
    let EnvValue::Plain(url) = &a_env["ATLANTIS_ATLANTIS_URL"] else {
        panic!("ATLANTIS_ATLANTIS_URL")
    };
    assert_ne!(host_port(url).1, up);
    // The proxy verifies what Atlantis verifies, with the same Secret keys.
    assert_eq!(
        a_env["ATLANTIS_GH_WEBHOOK_SECRET"],
        p.env["ALP_GITHUB_WEBHOOK_SECRET"]
    );
    assert_eq!(a_env["ATLANTIS_API_SECRET"], p.env["ALP_API_SECRET"]);
    assert_eq!(a_env["ATLANTIS_GH_TOKEN"], p.env["ALP_GITHUB_TOKEN"]);

    // Other pods reach the proxy's two listeners, never Atlantis's port.
    let np = find(&objects, "NetworkPolicy", "atlantis-only-through-proxy");
    assert_only_proxy_ports(&np["spec"], &pod_labels(sts), &p, up);
}

/// The pod's ingress admits exactly the proxy's listeners, so Atlantis's port is closed.
pub(super) fn assert_only_proxy_ports(
    np_spec: &Value,
    pod: &BTreeMap<String, String>,
    p: &Proxy,
    up: u16,
) {
    assert!(selects(
        &labels(&np_spec["podSelector"]["matchLabels"]),
        pod
    ));
    assert_eq!(np_spec["policyTypes"], Value::from(vec!["Ingress"]));
    let open: BTreeSet<u64> = seq(&np_spec["ingress"], "ingress")
        .iter()
        .flat_map(|r| seq(&r["ports"], "ports").iter())
        .map(|x| x["port"].as_u64().expect("numeric port"))
        .collect();
    let want = BTreeSet::from([
        u64::from(p.config.listen.port()),
        u64::from(p.config.admin.listen.port()),
    ]);
    assert_eq!(open, want, "{}", p.origin);
    assert!(!open.contains(&u64::from(up)));
}

pub(super) fn assert_scrape_annotations(annotations: &Value, p: &Proxy) {
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(p.config.admin.listen.port().to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
}

#[test]
fn prometheus_finds_the_admin_listener_in_both_overlays() {
    let monitors = render("servicemonitor");
    let sm = find(&monitors, "ServiceMonitor", PROXY);
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let sm_selector = labels(&sm["spec"]["selector"]["matchLabels"]);
    let endpoint = &seq(&sm["spec"]["endpoints"], "endpoints")[0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    for (overlay, workload_kind, workload) in [
        ("standalone", "Deployment", PROXY),
        ("sidecar", "StatefulSet", "atlantis"),
    ] {
        let objects = render(overlay);
        let w = find(&objects, workload_kind, workload);
        let p = proxy_in(
            overlay,
            &w["spec"]["template"]["spec"],
            &of_kind(&objects, "ConfigMap").collect::<Vec<_>>(),
        );
        let svc = find(&objects, "Service", "atlantis-lock-proxy-metrics");
        assert!(
            selects(&sm_selector, &labels(&svc["metadata"]["labels"])),
            "{overlay}"
        );
        assert!(
            selects(&labels(&svc["spec"]["selector"]), &pod_labels(w)),
            "{overlay}"
        );
        let sp = seq(&svc["spec"]["ports"], "ports")
            .iter()
            .find(|sp| sp["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("{overlay}: no Service port named {:?}", endpoint["port"]));
        assert_eq!(
            port(&p.container, &sp["targetPort"]),
            p.config.admin.listen.port()
        );
        assert_scrape_annotations(&w["spec"]["template"]["metadata"]["annotations"], &p);
    }
}

#[test]
fn readme_creates_every_secret_key_the_manifests_read() {
    let readme = read("README.md");
    let start = readme
        .find("## Deploy on Kubernetes")
        .expect("README section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut wanted = BTreeSet::new();
    let standalone = render("standalone");
    let sidecar = render("sidecar");
    let redis = find(&standalone, "StatefulSet", "atlantis-lock-proxy-redis");
    let containers = [
        standalone_proxy(&standalone).container,
        sidecar_proxy(&sidecar).container,
        container(
            &find(&sidecar, "StatefulSet", "atlantis")["spec"]["template"]["spec"],
            "atlantis",
        )
        .clone(),
        container(&redis["spec"]["template"]["spec"], "redis").clone(),
        helm_proxy(&helm_values()).container,
    ];
    for c in &containers {
        for v in env(c).values() {
            if let EnvValue::Secret(n, k) = v {
                wanted.insert((n.clone(), k.clone()));
            }
        }
    }
    assert!(wanted.len() >= 5, "{wanted:?}");
    for (secret, key) in wanted {
        // The command from `create secret generic NAME` through its `\` continuation lines.
        let mut create = String::new();
        for l in section
            .lines()
            .skip_while(|l| !l.contains(&format!("create secret generic {secret} ")))
        {
            create.push_str(l);
            if !l.trim_end().ends_with('\\') {
                break;
            }
        }
        assert!(
            create.contains(&format!("--from-literal={key}=")),
            "README's Kubernetes section does not create key {key} of Secret {secret}"
        );
    }
}

#[tokio::test]
async fn probe_and_scrape_paths_answer_without_the_token_on_the_deployed_config() {
    let fake = FakeAtlantis::start().await;
    let objects = render("sidecar");
    let p = sidecar_proxy(&objects);
    // The sidecar's config and environment as deployed; only the addresses are this machine's.
    let env: std::collections::HashMap<String, String> =
        env_with_secrets(&p.env).into_iter().collect();
    let overrides = CliOverrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(fake.url()),
        admin_listen: Some("127.0.0.1:0".into()),
    };
    let config = Config::load(Some(&p.file), &env, &overrides).unwrap();
    let proxy = spawn_config(config).await;
    let mut paths = BTreeSet::from(["/metrics".to_string()]);
    let standalone = render("standalone");
    for c in [&p.container, &standalone_proxy(&standalone).container] {
        for which in ["livenessProbe", "readinessProbe"] {
            paths.insert(http_probe(c, which).0);
        }
    }
    assert_eq!(paths.len(), 3, "{paths:?}");
    for path in &paths {
        let r = get(&proxy.admin_url(path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The token from the Secret is in force on /admin/*.
    let r = get(&proxy.admin_url("/admin/status")).await;
    assert_eq!(r.status, 401);
    let token = format!("Bearer {}", env["ALP_ADMIN_TOKEN"]);
    let headers = [("authorization", token.as_str())];
    let r = send(
        http::Method::GET,
        &proxy.admin_url("/admin/status"),
        &headers,
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    proxy.stop().await;
}

#[tokio::test]
async fn standalone_runs_on_a_real_redis_started_as_its_statefulset_starts_it() {
    let objects = render("standalone");
    let p = standalone_proxy(&objects);
    let sts = find(&objects, "StatefulSet", "atlantis-lock-proxy-redis");
    let redis = container(&sts["spec"]["template"]["spec"], "redis");
    let mut args: Vec<String> = seq(&redis["args"], "redis args")
        .iter()
        .map(|a| str_of(a, "arg").to_string())
        .collect();
    assert_eq!(args.remove(0), "redis-server");
    // The harness keeps its own port, bind address and directory; the password is set once the
    // harness has seen the server answer (its PING carries no password).
    let password_at = args.iter().position(|a| a == "--requirepass").unwrap();
    args.drain(password_at..password_at + 2);
    let dir_at = args.iter().position(|a| a == "--dir").unwrap();
    args.drain(dir_at..dir_at + 2);
    let mut server = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        RedisServer::start_with(&extra)
    })
    .await
    .unwrap();
    for (key, want) in [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("save", "300 1"),
    ] {
        let got = server.command(&["CONFIG", "GET", key]).unwrap();
        assert!(got.contains(want), "redis {key}: {got}");
    }
    let mut env = env_with_secrets(&p.env);
    let password = env["ALP_REDIS_PASSWORD"].clone();
    server
        .command(&["CONFIG", "SET", "requirepass", &password])
        .unwrap();
    env.insert("ALP_REDIS_ADDR".into(), server.addr.clone());

    let fake = FakeAtlantis::start().await;
    let overrides = CliOverrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(fake.url()),
        admin_listen: Some("127.0.0.1:0".into()),
    };
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let config = Config::load(Some(&p.file), &env, &overrides).unwrap();
    let proxy = spawn_config(config).await;
    let (readiness, _) = http_probe(&p.container, "readinessProbe");
    let r = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(r.status, 200, "the engine must reach Redis: {}", r.text());
    assert_eq!(r.json()["checks"]["engine"], "ok");

    // Redis goes away: the engine is down, yet the readiness probe keeps the replica in service
    // (requests fall back to Atlantis); plain /readyz would take every replica out.
    tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let r = get(&proxy.admin_url("/readyz")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let r = get(&proxy.admin_url(&readiness)).await;
    assert_eq!(r.status, 200, "{readiness}: {}", r.text());
    assert_ne!(r.json()["checks"]["engine"], "ok");
    proxy.stop().await;
}
