//! Readers for the Kubernetes deployment: the kustomize overlays as `kubectl kustomize` renders
//! them (the real renderer, as `kubectl apply -k` uses it) and the Helm sidecar values.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::files::{read, repo};

pub const HELM_VALUES: &str = "deploy/helm/atlantis-values-sidecar.yaml";
/// The proxy's container name in every pod that runs it.
pub const PROXY: &str = "atlantis-lock-proxy";

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Every object of a multi-document YAML text.
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize deploy/kubernetes/<overlay>`.
pub fn render(overlay: &str) -> Vec<Value> {
    let dir = repo().join("deploy/kubernetes").join(overlay);
    let kubectl = kubectl();
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{kubectl} kustomize` ({e}): these tests render the overlays with \
                 kubectl (Debian: apt-get install kubernetes-client; or set KUBECTL)"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = documents(&String::from_utf8_lossy(&out.stdout));
    assert!(!objects.is_empty(), "{overlay} renders nothing");
    objects
}

pub fn helm_values() -> Value {
    serde_norway::from_str(&read(HELM_VALUES)).unwrap_or_else(|e| panic!("{HELM_VALUES}: {e}"))
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

pub fn seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what} is not a list: {v:?}"))
}

pub fn name(o: &Value) -> &str {
    str_of(&o["metadata"]["name"], "metadata.name")
}

pub fn kind(o: &Value) -> &str {
    str_of(&o["kind"], "kind")
}

pub fn of_kind<'a>(objects: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| kind(o) == k)
}

pub fn find<'a>(objects: &'a [Value], k: &str, n: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("no {k}/{n} in the render"))
}

/// A `labels` / `matchLabels` / `selector` map.
pub fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        str_of(k, "label").to_string(),
                        str_of(v, "label value").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A non-empty selector matches when each of its pairs is among the labels.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn pod_labels(workload: &Value) -> BTreeMap<String, String> {
    labels(&workload["spec"]["template"]["metadata"]["labels"])
}

pub fn container<'a>(pod_spec: &'a Value, n: &str) -> &'a Value {
    seq(&pod_spec["containers"], "containers")
        .iter()
        .find(|c| c["name"].as_str() == Some(n))
        .unwrap_or_else(|| panic!("no container {n}"))
}

/// A container's port, given by number or by the name of one of its ports.
pub fn port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).expect("port number");
    }
    let wanted = str_of(port, "port");
    let p = seq(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(wanted))
        .unwrap_or_else(|| {
            panic!(
                "container {} has no port named {wanted}",
                container["name"].as_str().unwrap_or("?")
            )
        });
    u16::try_from(p["containerPort"].as_u64().expect("containerPort")).expect("port number")
}

/// A container port's number by its name.
pub fn named_port(container: &Value, n: &str) -> u16 {
    port(container, &Value::String(n.to_string()))
}

pub fn container_ports(container: &Value) -> Vec<u16> {
    seq(&container["ports"], "ports")
        .iter()
        .map(|p| u16::try_from(p["containerPort"].as_u64().expect("containerPort")).expect("port"))
        .collect()
}

/// One environment variable of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    /// `valueFrom.secretKeyRef`: (Secret name, key).
    Secret(String, String),
}

pub fn env(container: &Value) -> BTreeMap<String, EnvValue> {
    seq(&container["env"], "env")
        .iter()
        .map(|e| {
            let n = str_of(&e["name"], "env name").to_string();
            let v = if let Some(v) = e.get("value") {
                EnvValue::Plain(str_of(v, &n).to_string())
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                EnvValue::Secret(
                    str_of(&r["name"], &n).to_string(),
                    str_of(&r["key"], &n).to_string(),
                )
            };
            (n, v)
        })
        .collect()
}

/// The environment as the process sees it, with each Secret reference standing for a value.
pub fn env_with_secrets(env: &BTreeMap<String, EnvValue>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let v = match v {
                EnvValue::Plain(s) => s.clone(),
                EnvValue::Secret(n, key) => format!("from-secret-{n}-{key}"),
            };
            (k.clone(), v)
        })
        .collect()
}

/// `(path, port)` of a container's httpGet probe.
pub fn http_probe(container: &Value, which: &str) -> (String, u16) {
    let get = &container[which]["httpGet"];
    assert!(
        get.is_mapping(),
        "{} has no {which} httpGet",
        container["name"].as_str().unwrap_or("?")
    );
    (
        str_of(&get["path"], "probe path").to_string(),
        port(container, &get["port"]),
    )
}

/// A pod spec as the official chart's statefulset builds it from the sidecar values:
/// extraContainers after the chart's own container, extraVolumes among its volumes.
pub fn helm_pod_spec(values: &Value) -> Value {
    let mut spec = Mapping::new();
    spec.insert("containers".into(), values["extraContainers"].clone());
    spec.insert("volumes".into(), values["extraVolumes"].clone());
    spec.insert(
        "terminationGracePeriodSeconds".into(),
        values["terminationGracePeriodSeconds"].clone(),
    );
    Value::Mapping(spec)
}
