//! Readers for the deployment files: docker-compose.yml (with compose's `${VAR}` interpolation
//! from .env.example), the Dockerfile's instructions, and the small config files they mount.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// The repository root (where docker-compose.yml and the Dockerfile live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

pub fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

/// `KEY=value` lines of an env file.
pub fn env_file(rel: &str) -> BTreeMap<String, String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: not KEY=value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// Compose interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}`, `${VAR?message}`. Every variable without a default must be in `env`.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text}"))?;
            let expr = &body[..end];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = env.get(name).filter(|v| !v.is_empty());
            out.push_str(&match (value, op) {
                (Some(v), _) => v.clone(),
                (None, op) if op.starts_with(":-") || op.starts_with('-') => {
                    op.trim_start_matches(':')[1..].to_string()
                }
                (None, _) => return Err(format!("{name} is not set (needed by {text})")),
            });
            rest = &body[end + 1..];
        } else {
            let name_end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..name_end];
            out.push_str(env.get(name).ok_or_else(|| format!("{name} is not set"))?);
            rest = &after[name_end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One compose service, with its strings interpolated.
pub struct Service {
    pub name: String,
    pub raw: Value,
    pub environment: BTreeMap<String, String>,
    /// `(host ip, published port, container port)`.
    pub ports: Vec<(Option<String>, u16, u16)>,
    /// Ports reachable inside the compose network without publishing.
    pub expose: BTreeSet<u16>,
    /// `(source, target)`; bind mounts have a source starting with `.` or `/`.
    pub volumes: Vec<(String, String)>,
}

impl Service {
    pub fn image(&self) -> Option<&str> {
        self.raw.get("image").and_then(Value::as_str)
    }

    /// Where a repository file is mounted in the container.
    pub fn mount_target_of(&self, rel: &str) -> Option<&str> {
        self.volumes
            .iter()
            .find(|(src, _)| Path::new(src) == Path::new(".").join(rel))
            .map(|(_, dst)| dst.as_str())
    }

    /// The repository file mounted at a container path.
    pub fn mount_source_at(&self, target: &str) -> Option<PathBuf> {
        self.volumes
            .iter()
            .find(|(_, dst)| dst == target)
            .map(|(src, _)| repo().join(src))
    }
}

/// docker-compose.yml, interpolated with .env.example.
pub fn compose() -> BTreeMap<String, Service> {
    let env = env_file(".env.example");
    let text = interpolate(&read("docker-compose.yml"), &env)
        .unwrap_or_else(|e| panic!("docker-compose.yml with .env.example: {e}"));
    let doc: Value = serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    let services = doc["services"].as_mapping().expect("a services: map");
    services
        .iter()
        .map(|(name, raw)| {
            let name = name.as_str().expect("service name").to_string();
            (name.clone(), service(name, raw.clone()))
        })
        .collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn service(name: String, raw: Value) -> Service {
    let environment = match raw.get("environment") {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = scalar(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let list = |key: &str| -> Vec<Value> {
        raw.get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let ports = list("ports")
        .iter()
        .map(|p| match p {
            Value::Mapping(_) => (
                p.get("host_ip").map(scalar),
                scalar(&p["published"]).parse().expect("published port"),
                scalar(&p["target"]).parse().expect("target port"),
            ),
            _ => {
                let s = scalar(p);
                let s = s.split('/').next().unwrap_or_default();
                let parts: Vec<&str> = s.rsplitn(3, ':').collect();
                let container = parts[0].parse().expect("container port");
                let published = parts.get(1).map_or(container, |h| h.parse().expect("port"));
                (parts.get(2).map(|ip| ip.to_string()), published, container)
            }
        })
        .collect();
    let expose = list("expose")
        .iter()
        .map(|p| scalar(p).parse().expect("exposed port"))
        .collect();
    let volumes = list("volumes")
        .iter()
        .map(|v| {
            let s = scalar(v);
            let mut parts = s.split(':');
            let src = parts.next().unwrap_or_default().to_string();
            let dst = parts.next().unwrap_or_else(|| panic!("volume {s}"));
            (src, dst.to_string())
        })
        .collect();
    Service {
        name,
        raw,
        environment,
        ports,
        expose,
        volumes,
    }
}

/// One Dockerfile instruction: keyword and its (continuation-joined) arguments.
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

pub fn dockerfile() -> Vec<Instruction> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    out
}

/// `ENV K=V K2=V2` pairs of every ENV instruction.
pub fn dockerfile_env(instructions: &[Instruction]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace().map(str::to_string))
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV uses K=V");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// The JSON exec form after a keyword (`["a", "b"]`).
pub fn exec_form(args: &str) -> Vec<String> {
    let start = args
        .find('[')
        .unwrap_or_else(|| panic!("no exec form in {args}"));
    serde_json::from_str(&args[start..]).unwrap_or_else(|e| panic!("bad exec form {args}: {e}"))
}
