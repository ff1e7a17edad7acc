//! The Helm sidecar values against the official chart they are written for (the value names
//! and Secret keys of chart `atlantis` 6.9.3) and against the sidecar overlay they mirror.

use std::collections::BTreeMap;

use atlantis_lock_proxy::config::Backend;

use super::files::read;
use super::host_port;
use super::kube::{EnvValue, HELM_VALUES, helm_values, render, seq, str_of};
use super::kubernetes::{
    assert_only_proxy_ports, assert_scrape_annotations, helm_proxy, sidecar_proxy, upstream,
};

/// Value names of the official chart (runatlantis/helm-charts, chart `atlantis` 6.9.3,
/// charts/atlantis/values.yaml): the top-level keys, and the nested ones the sidecar sets.
const CHART_TOP_LEVEL: &[&str] = &[
    "fullnameOverride",
    "nameOverride",
    "atlantisUrl",
    "orgAllowlist",
    "orgWhitelist",
    "logLevel",
    "github",
    "githubApp",
    "gitea",
    "gitlab",
    "bitbucket",
    "azuredevops",
    "vcsSecretName",
    "gitconfig",
    "gitconfigReadOnly",
    "gitconfigSecretName",
    "netrc",
    "netrcSecretName",
    "aws",
    "awsSecretName",
    "serviceAccountSecrets",
    "containerPort",
    "image",
    "imagePullSecrets",
    "config",
    "repoConfig",
    "allowForkPRs",
    "allowDraftPRs",
    "hidePrevPlanComments",
    "hideUnchangedPlanComments",
    "defaultTFDistribution",
    "defaultTFVersion",
    "disableApply",
    "disableApplyAll",
    "disableRepoLocking",
    "enableDiffMarkdownFormat",
    "basicAuth",
    "basicAuthSecretName",
    "api",
    "apiSecretName",
    "command",
    "commonLabels",
    "livenessProbe",
    "readinessProbe",
    "service",
    "podTemplate",
    "statefulSet",
    "ingress",
    "webhook_ingress",
    "route",
    "customPem",
    "resources",
    "atlantisDataDirectory",
    "volumeClaim",
    "dataStorage",
    "storageClassName",
    "replicaCount",
    "test",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "serviceAccount",
    "enableKubernetesBackend",
    "tlsSecretName",
    "extraPath",
    "environment",
    "environmentSecrets",
    "environmentRaw",
    "loadEnvFromSecrets",
    "loadEnvFromConfigMaps",
    "googleServiceAccountSecrets",
    "extraVolumes",
    "extraVolumeMounts",
    "extraManifests",
    "initContainers",
    "initConfig",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "hostNetwork",
    "secret",
    "extraAnnotations",
    "extraArgs",
    "extraContainers",
    "containerSecurityContext",
    "servicemonitor",
    "podMonitor",
    "lockingDbType",
    "redis",
    "redisSecretName",
    "redisSecretPasswordKey",
    "terminationGracePeriodSeconds",
    "lifecycle",
];
const CHART_NESTED: &[(&str, &[&str])] = &[
    ("github", &["user", "token", "secret", "hostname", "org"]),
    (
        "service",
        &[
            "type",
            "annotations",
            "port",
            "portName",
            "nodePort",
            "targetPort",
            "extraPorts",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalTrafficPolicy",
            "internalTrafficPolicy",
            "sessionAffinity",
            "sessionAffinityConfig",
        ],
    ),
    ("podTemplate", &["annotations", "labels"]),
];
/// Key names inside the chart's Secrets (templates/secret-webhook.yaml, secret-api.yaml).
const CHART_SECRET_KEYS: &[(&str, &str)] = &[
    ("vcsSecretName", "github_token"),
    ("vcsSecretName", "github_secret"),
    ("apiSecretName", "apisecret"),
];

#[test]
fn helm_values_use_the_chart_names_and_agree_with_the_sidecar_overlay() {
    let values = helm_values();
    for (k, v) in values.as_mapping().expect("a values map") {
        let k = str_of(k, "key");
        assert!(
            CHART_TOP_LEVEL.contains(&k),
            "{HELM_VALUES}: the chart has no value `{k}`"
        );
        if let Some((_, known)) = CHART_NESTED.iter().find(|(top, _)| *top == k) {
            for (sub, _) in v.as_mapping().expect("a map") {
                let sub = str_of(sub, "key");
                assert!(
                    known.contains(&sub),
                    "{HELM_VALUES}: the chart has no `{k}.{sub}`"
                );
            }
        }
    }
    let p = helm_proxy(&values);
    // The chart sets ATLANTIS_PORT and Atlantis's probes from containerPort, and points the
    // Service at service.targetPort: Atlantis on the inner port, the Service on the proxy.
    let (host, up) = upstream(&p);
    assert_eq!(host, "127.0.0.1");
    assert_eq!(values["containerPort"].as_u64(), Some(u64::from(up)));
    assert_eq!(
        values["service"]["targetPort"].as_u64(),
        Some(u64::from(p.config.listen.port()))
    );
    assert_eq!(values["replicaCount"].as_u64(), Some(1));
    assert_eq!(p.config.enhanced.backend, Backend::Memory);
    assert_eq!(
        host_port(str_of(&values["atlantisUrl"], "atlantisUrl")).0,
        "atlantis.example.com"
    );

    // The proxy reads the very Secret keys the chart gives Atlantis.
    for (value, key) in CHART_SECRET_KEYS {
        let secret = str_of(&values[*value], value);
        assert!(
            p.env
                .values()
                .any(|e| *e == EnvValue::Secret(secret.into(), (*key).into())),
            "{HELM_VALUES}: the proxy does not read {key} from {value} ({secret})"
        );
    }

    // Same config as the overlays, same container as the sidecar overlay's.
    let cm = seq(&values["extraManifests"], "extraManifests")
        .iter()
        .find(|m| m["kind"] == "ConfigMap")
        .unwrap();
    assert_eq!(
        str_of(&cm["data"]["config.yaml"], "config.yaml"),
        read("deploy/kubernetes/base/config.yaml"),
        "the Helm values' config.yaml differs from deploy/kubernetes/base/config.yaml"
    );
    let overlay = sidecar_proxy(&render("sidecar"));
    for field in [
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(p.container[field], overlay.container[field], "{field}");
    }
    assert_eq!(p.env, overlay.env);

    // Other pods reach only the proxy's listeners.
    let np = seq(&values["extraManifests"], "extraManifests")
        .iter()
        .find(|m| m["kind"] == "NetworkPolicy")
        .expect("a NetworkPolicy");
    let chart_pod = BTreeMap::from([
        ("app".to_string(), "atlantis".to_string()),
        ("release".to_string(), "{{ .Release.Name }}".to_string()),
    ]);
    assert_only_proxy_ports(&np["spec"], &chart_pod, &p, up);
    let scrape = &values["podTemplate"]["annotations"];
    assert_scrape_annotations(scrape, &p);
}
